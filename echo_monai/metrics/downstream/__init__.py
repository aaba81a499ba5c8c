from __future__ import annotations

# Downstream-utility evaluators: train on real / synthetic / both with MONAI's Ignite engines, test on real.
from echo_monai.metrics.downstream.base import (
    DownstreamEvaluator,
    KeyedPrepareBatch,
    TrainingMix,
    seeded_initialisation,
    training_set,
)
from echo_monai.metrics.downstream.classification import (
    ClassificationEvaluator,
    ImageClassificationEvaluator,
    VideoClassificationEvaluator,
    classification_metrics,
)
from echo_monai.metrics.downstream.ejection_fraction import (
    EjectionFractionEvaluator,
    ScaledRegressor,
    regression_metrics,
)
from echo_monai.metrics.downstream.segmentation import CAMUS_STRUCTURES, SegmentationEvaluator, structure_dice

__all__ = [
    "CAMUS_STRUCTURES",
    "ClassificationEvaluator",
    "DownstreamEvaluator",
    "EjectionFractionEvaluator",
    "ImageClassificationEvaluator",
    "KeyedPrepareBatch",
    "ScaledRegressor",
    "SegmentationEvaluator",
    "TrainingMix",
    "VideoClassificationEvaluator",
    "classification_metrics",
    "regression_metrics",
    "seeded_initialisation",
    "structure_dice",
    "training_set",
]
