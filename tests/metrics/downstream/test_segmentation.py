from __future__ import annotations

import math

import pytest
import torch

from echo_monai.metrics.downstream.segmentation import CAMUS_STRUCTURES, SegmentationEvaluator, structure_dice

from ..threads import single_thread  # noqa: F401 (autouse fixture)
from .phantoms import segmentation_samples


def _tiny(**kwargs) -> SegmentationEvaluator:
    options = dict(
        channels=(8, 16, 32), strides=(2, 2), num_res_units=1, max_epochs=8, batch_size=8, learning_rate=1e-2
    )
    return SegmentationEvaluator(**{**options, **kwargs})


def test_learns_the_phantom_structures_well_above_chance():
    evaluator = _tiny()
    evaluator.fit(segmentation_samples(48, seed=1))
    scores = evaluator.evaluate(segmentation_samples(16, seed=2))
    assert set(scores) == {"dice_lv_endo", "dice_lv_epi", "dice_la", "dice_mean"}
    assert scores["dice_lv_endo"] > 0.7 and scores["dice_lv_epi"] > 0.7 and scores["dice_la"] > 0.5
    assert evaluator.losses[-1] < evaluator.losses[0]


def test_structure_dice_closed_form():
    reference = torch.tensor([[[0, 1, 1, 2], [2, 2, 0, 0]]])  # (1, 2, 4)
    predicted = torch.tensor([[[0, 1, 0, 2], [2, 1, 0, 0]]])
    scores = structure_dice(predicted, reference, CAMUS_STRUCTURES)
    assert scores["lv_endo"][0] == pytest.approx(2 * 1 / (2 + 2))
    assert scores["lv_epi"][0] == pytest.approx(2 * 4 / (4 + 5))
    assert math.isnan(scores["la"][0])  # absent from both


def test_rejects_bad_arguments_and_samples():
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        SegmentationEvaluator(num_classes=1)
    with pytest.raises(ValueError, match="strides must have"):
        SegmentationEvaluator(channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match="structure 'la'"):
        SegmentationEvaluator(num_classes=3, channels=(8, 16), strides=(2,))
    evaluator = _tiny(max_epochs=1)
    with pytest.raises(ValueError, match="train_data\\[0\\] must be a dict with keys 'image' and 'label'"):
        evaluator.fit([{"image": torch.zeros(1, 32, 32)}])
    with pytest.raises(ValueError, match="test_data must be a non-empty"):
        evaluator.evaluate([])
