from __future__ import annotations

import pytest
import torch

from echo_monai.metrics.downstream.base import KeyedPrepareBatch, TrainingMix, seeded_initialisation, training_set
from echo_monai.metrics.downstream.classification import ImageClassificationEvaluator
from echo_monai.metrics.downstream.ejection_fraction import EjectionFractionEvaluator
from echo_monai.metrics.downstream.segmentation import SegmentationEvaluator

from ..threads import single_thread  # noqa: F401 (autouse fixture)
from .phantoms import brightness_samples


def test_training_set_mixes():
    real, synthetic = [{"i": 0}], [{"i": 1}, {"i": 2}]
    assert training_set("real", real, synthetic) == real
    assert training_set(TrainingMix.SYNTHETIC, real, synthetic) == synthetic
    assert training_set("real+synthetic", real, synthetic) == real + synthetic


@pytest.mark.parametrize(
    "mix, real, synthetic, match",
    [
        ("both", [{}], [{}], "mix must be one of"),
        ("real", None, [{}], "needs a non-empty real"),
        ("real+synthetic", [{}], [], "needs a non-empty synthetic"),
    ],
)
def test_training_set_rejects_missing_data(mix, real, synthetic, match):
    with pytest.raises(ValueError, match=match):
        training_set(mix, real, synthetic)


def test_keyed_prepare_batch():
    batch = {"video": torch.zeros(2, 1, 4, 8, 8, dtype=torch.float64), "ejection_fraction": torch.tensor([50.0, 60.0])}
    inputs, targets = KeyedPrepareBatch("video", "ejection_fraction", lambda t: t.reshape(-1, 1))(batch, "cpu")
    assert inputs.dtype == torch.float32 and targets.shape == (2, 1)


def test_run_trains_every_mix_from_the_same_initial_weights():
    evaluator = ImageClassificationEvaluator(2, block_inplanes=(4, 4, 8, 8), max_epochs=4, batch_size=8)
    initial = {key: value.clone() for key, value in evaluator.network.state_dict().items()}
    real, test = brightness_samples(24, seed=1), brightness_samples(24, seed=2)
    synthetic = [{"image": -s["image"], "label": 1 - s["label"]} for s in brightness_samples(24, seed=3)]
    results = evaluator.run(test, real=real, synthetic=synthetic)
    assert list(results) == ["real", "synthetic", "real+synthetic"]
    assert results["real+synthetic"]["num_train_samples"] == 48
    assert results["synthetic"]["accuracy"] > 0.7
    evaluator.reset()
    for key, value in evaluator.network.state_dict().items():
        torch.testing.assert_close(value, initial[key])
    only = evaluator.run(test, synthetic=synthetic, mixes=["synthetic"])
    assert list(only) == ["synthetic"] and only["synthetic"] == results["synthetic"]  # seeded: reproducible


def test_run_and_feature_encoder_reject_missing_pieces():
    evaluator = ImageClassificationEvaluator(2, block_inplanes=(4, 4, 4, 4), max_epochs=1)
    with pytest.raises(ValueError, match="pass real and/or synthetic"):
        evaluator.run(brightness_samples(2, seed=0))
    segmenter = SegmentationEvaluator(channels=(4, 8), strides=(2,), max_epochs=1)
    with pytest.raises(ValueError, match="no feature_layer"):
        segmenter.feature_encoder("unet")


def test_save_load_round_trip_and_train_transform(tmp_path):
    calls = []

    def flip(sample):
        calls.append(1)
        return {**sample, "image": sample["image"].flip(-1)}

    evaluator = ImageClassificationEvaluator(2, block_inplanes=(4, 4, 4, 4), max_epochs=1, train_transform=flip)
    evaluator.fit(brightness_samples(8, seed=0))
    assert len(calls) == 8
    path = evaluator.save_network(tmp_path / "classifier.pt")
    trained = {key: value.clone() for key, value in evaluator.network.state_dict().items()}
    evaluator.reset()
    evaluator.load_network(path)
    for key, value in evaluator.network.state_dict().items():
        torch.testing.assert_close(value, trained[key])
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.pt"]
    with pytest.raises(FileNotFoundError, match="load_network"):
        evaluator.load_network(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: ImageClassificationEvaluator(num_classes=2, block_inplanes=(2, 2, 2, 2), seed=seed),
        lambda seed: SegmentationEvaluator(channels=(4, 8), strides=(2,), seed=seed),
        lambda seed: EjectionFractionEvaluator(block_inplanes=(2, 2, 2, 2), seed=seed),
    ],
    ids=["classification", "segmentation", "ejection_fraction"],
)
def test_default_networks_start_from_the_seed_not_from_the_global_rng(build):
    """PyTorch seeds its global RNG at random in each process: the default judge must not draw its weights there."""
    torch.manual_seed(1)
    first = build(0)
    torch.manual_seed(2)
    state_before = torch.random.get_rng_state()
    second = build(0)
    assert torch.equal(torch.random.get_rng_state(), state_before)  # the global RNG is left as it was
    other = build(1)
    for name, value in first.initial_state.items():
        assert torch.equal(value, second.initial_state[name]), name
    assert any(
        v.is_floating_point() and not torch.equal(v, other.initial_state[k]) for k, v in first.initial_state.items()
    )


def test_seeded_initialisation_restores_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with seeded_initialisation(0):
        inside = torch.nn.Linear(2, 1).weight.detach().clone()
    assert torch.equal(torch.rand(3), expected)
    with seeded_initialisation(0):
        assert torch.equal(torch.nn.Linear(2, 1).weight, inside)
