"""load_stage_checkpoint: restores modules outside an engine; errors name the stage."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedEvaluator

from echo_monai.handlers import StageCheckpointLoader, load_stage_checkpoint


def test_restores_and_returns_the_first_module(tmp_path):
    source, target = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    torch.save({"model": source.state_dict()}, tmp_path / "model.pt")
    assert load_stage_checkpoint(tmp_path / "model.pt", {"model": target}, "demo train") is target
    assert torch.equal(target.weight, source.weight)
    torch.save(source.state_dict(), tmp_path / "bare.pt")  # CheckpointSaver's single-object layout
    other = torch.nn.Linear(2, 3)
    assert torch.equal(load_stage_checkpoint(tmp_path / "bare.pt", {"model": other}, "demo train").bias, source.bias)


def test_missing_file_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the demo train stage first"):
        load_stage_checkpoint(tmp_path / "missing.pt", {"model": torch.nn.Linear(2, 3)}, "demo train")


def test_checkpoint_of_another_network_is_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(4, 4).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit the network"):
        load_stage_checkpoint(tmp_path / "other.pt", {"model": torch.nn.Linear(2, 3)}, "demo train")
    with pytest.raises(ValueError, match="does not fit the network"):
        load_stage_checkpoint(tmp_path / "other.pt", {"autoencoder": torch.nn.Linear(4, 4)}, "demo train")
    with pytest.raises(ValueError, match="at least one module"):
        load_stage_checkpoint(tmp_path / "other.pt", {}, "demo train")


def _evaluator(network):
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[{"image": torch.zeros(1, 2)}], network=network
    )


def test_stage_checkpoint_loader_errors(tmp_path):
    net = torch.nn.Linear(2, 2)
    missing = StageCheckpointLoader(str(tmp_path / "model.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(FileNotFoundError, match="run the my_bundle train stage first"):
        missing(_evaluator(net))
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, tmp_path / "other.pt")
    other = StageCheckpointLoader(str(tmp_path / "other.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(ValueError, match="does not fit the network"):
        other(_evaluator(net))
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "good.pt")
    StageCheckpointLoader(str(tmp_path / "good.pt"), {"model": net})(_evaluator(net))
