from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from echo_monai.handlers import StageCheckpointLoader, TrainedOn, check_trained_on, trained_on_path


def test_recorded_fingerprints_refuse_weights_of_another_autoencoder(tmp_path):
    torch.manual_seed(0)
    autoencoder, denoiser = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    weights = tmp_path / "model.pt"
    engine = Engine(lambda e, b: None)
    TrainedOn(weights, {"autoencoder": autoencoder}, stage="my train").attach(engine)
    engine.run([0], max_epochs=1)
    assert trained_on_path(weights).is_file()
    torch.save({"model": denoiser.state_dict()}, weights)
    check_trained_on(weights, {"autoencoder": autoencoder})  # the same weights: fine
    loader = StageCheckpointLoader(weights, {"model": torch.nn.Linear(2, 2)}, stage="my train",
                                   requires={"autoencoder": autoencoder})  # fmt: skip
    assert torch.equal(loader.load().weight, denoiser.weight)
    with torch.no_grad():
        autoencoder.weight.add_(1.0)  # a retrained stage 1
    stale = StageCheckpointLoader(weights, {"model": torch.nn.Linear(2, 2)}, stage="my train",
                                  requires={"autoencoder": autoencoder})  # fmt: skip
    with pytest.raises(ValueError, match=r"model\.pt' was trained on the latents of another autoencoder.*my train"):
        stale.load()
    check_trained_on(tmp_path / "unrecorded.pt", {"autoencoder": autoencoder})  # no record: nothing to check
    trained_on_path(weights).write_text("{")
    with pytest.raises(ValueError, match="cannot be read"):
        check_trained_on(weights, {"autoencoder": autoencoder})
    with pytest.raises(ValueError, match="at least one network"):
        TrainedOn(weights, {})
