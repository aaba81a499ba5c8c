from __future__ import annotations

import math

import pytest
import torch

from echo_monai.metrics.downstream.classification import (
    ClassificationEvaluator,
    ImageClassificationEvaluator,
    VideoClassificationEvaluator,
    classification_metrics,
    roc_auc,
)
from echo_monai.metrics.encoders import InputKind

from ..threads import single_thread  # noqa: F401 (autouse fixture)
from .phantoms import brightness_samples

TINY = dict(block_inplanes=(4, 8, 8, 8), max_epochs=6, batch_size=8)


def test_image_classifier_learns_bright_vs_dark_and_yields_an_encoder():
    evaluator = ImageClassificationEvaluator(2, class_names=["dark", "bright"], **TINY)
    evaluator.fit(brightness_samples(48, seed=1))
    scores = evaluator.evaluate(brightness_samples(32, seed=2))
    assert set(scores) == {"accuracy", "precision", "recall", "f1", "auc"} and scores["accuracy"] > 0.75
    encoder = evaluator.feature_encoder("brightness")
    assert encoder.input_kind == InputKind.IMAGE
    assert encoder.encode(brightness_samples(1, seed=3)[0]["image"][None]).shape == (1, 8)


def test_video_classifier_learns_bright_vs_dark():
    evaluator = VideoClassificationEvaluator(2, **TINY)
    evaluator.fit(brightness_samples(48, seed=1, video=True))
    assert evaluator.evaluate(brightness_samples(32, seed=2, video=True))["accuracy"] > 0.75


def test_classification_metrics_closed_form():
    scores = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    # class 0: P 1/2 R 1/2; class 1: P 1 R 2/3; class 2: P 0 R 0 (never true)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["precision"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert scores["recall"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert scores["f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_auc_closed_form_binary_and_from_compute_metrics():
    # scores of class 1: positives 0.9, 0.4; negatives 0.6, 0.1 -> 3 of the 4 (pos, neg) pairs are ordered: AUC 3/4
    p1 = torch.tensor([0.9, 0.4, 0.6, 0.1])
    logits = torch.stack([torch.zeros(4), torch.log(p1 / (1 - p1))], dim=1)  # softmax(logits)[:, 1] == p1
    targets = torch.tensor([1, 1, 0, 0])
    assert roc_auc(logits, targets) == pytest.approx(0.75)
    evaluator = ClassificationEvaluator(2, block_inplanes=(4, 8, 8, 8))
    scores = evaluator.compute_metrics(logits, targets)
    assert scores["auc"] == pytest.approx(0.75)
    assert scores["accuracy"] == pytest.approx(0.5)  # unchanged: argmax predicts 1, 0, 1, 0


def test_auc_multiclass_is_macro_one_vs_rest_and_nan_for_one_class():
    # one-hot-like logits: class c's score is high only on its own samples, except sample 3 (class 2) scored as 1
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    targets = torch.tensor([0, 1, 2, 2])
    # class 0: perfect (1); class 1: positive 1 vs negatives {0, 2, 3}: beats 0 and 2, ties 3 -> 2.5/3;
    # class 2: positives {2, 3} vs negatives {0, 1}: sample 2 beats both, sample 3 ties both -> 3/4
    assert roc_auc(logits, targets) == pytest.approx((1.0 + 2.5 / 3 + 3 / 4) / 3)
    assert math.isnan(roc_auc(logits[:2], torch.tensor([1, 1])))
    assert math.isnan(ClassificationEvaluator(2).compute_metrics(torch.randn(3, 2), torch.zeros(3))["auc"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes must be >= 2"),
        ({"num_classes": 2, "spatial_dims": 1}, "spatial_dims must be 2"),
        ({"num_classes": 2, "block_inplanes": (4, 8)}, "block_inplanes must have 4"),
        ({"num_classes": 2, "class_names": ["a"]}, "class_names must have"),
        ({"num_classes": 2, "max_epochs": 0}, "max_epochs must be >= 1"),
        ({"num_classes": 2, "batch_size": 0}, "batch_size must be >= 1"),
        ({"num_classes": 2, "learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"num_classes": 2, "weight_decay": -1.0}, "weight_decay must be >= 0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationEvaluator(**kwargs)
