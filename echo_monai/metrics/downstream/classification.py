"""Classification utility evaluators for images (view, phase, benign/malignant/normal) and videos.

A MONAI ``ResNet`` (ResNet-10 layout, 2D for images, 3D for videos) is trained with cross-entropy on real and/or
synthetic samples and scored on real ones by accuracy, macro precision, recall and F1, and ROC AUC. Its penultimate
features are the project's default image encoder when it is trained as a view/phase classifier on the user's real data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from torch import nn

from echo_monai.metrics.downstream.base import DownstreamEvaluator, seeded_initialisation
from echo_monai.metrics.encoders import InputKind, resnet10

__all__ = [
    "ClassificationEvaluator",
    "ImageClassificationEvaluator",
    "VideoClassificationEvaluator",
    "classification_metrics",
    "roc_auc",
]


def classification_metrics(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1.

    The macro average runs over the classes present in the targets or the predictions; a class never predicted has
    precision 0 (and likewise recall 0 for a class never present but predicted).

    Args:
        predicted: predicted class indices `(N,)`.
        target: true class indices `(N,)`.

    Returns:
        ``{"accuracy", "precision", "recall", "f1"}``.
    """
    p = np.asarray(predicted).reshape(-1).astype(np.int64)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    classes = np.union1d(p, t)
    precision, recall, f1 = [], [], []
    for label in classes:
        true_positive = float(np.sum((p == label) & (t == label)))
        predicted_count, actual_count = float(np.sum(p == label)), float(np.sum(t == label))
        prec = true_positive / predicted_count if predicted_count else 0.0
        rec = true_positive / actual_count if actual_count else 0.0
        precision.append(prec)
        recall.append(rec)
        f1.append(2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0)
    return {
        "accuracy": float(np.mean(p == t)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
    }


def roc_auc(logits: torch.Tensor, target: torch.Tensor) -> float:
    """ROC AUC of class scores with MONAI's :func:`~monai.metrics.compute_roc_auc`.

    Two classes: the AUC of ``softmax(logits)[:, 1]`` against ``target == 1``. More classes: the macro one-vs-rest
    average over the classes present in `target` (a class absent from the test set has no AUC and is skipped).

    Args:
        logits: class scores `(N, C)`, `C >= 2`.
        target: true class indices `(N,)`.

    Returns:
        the AUC in [0, 1]; NaN when `target` holds a single class (no AUC is defined).

    Raises:
        ValueError: when `logits` is not `(N, C)` with `C >= 2` or `target` does not hold `N` indices.

    Example:
        >>> roc_auc(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 0]))
        1.0
    """
    logits = torch.as_tensor(logits).detach().float().cpu()
    target = torch.as_tensor(target).detach().cpu().reshape(-1).long()
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"roc_auc: logits must be (N, C) with C >= 2, got {tuple(logits.shape)}.")
    if target.numel() != logits.shape[0]:
        raise ValueError(f"roc_auc: target must hold N = {logits.shape[0]} class indices, got {target.numel()}.")
    if target.unique().numel() < 2:
        return math.nan
    probabilities = logits.softmax(dim=1)
    with warnings.catch_warnings():  # MONAI warns (and returns NaN) for a class absent from the targets
        warnings.simplefilter("ignore", UserWarning)
        if logits.shape[1] == 2:
            return float(compute_roc_auc(probabilities[:, 1], target))
        one_hot = torch.nn.functional.one_hot(target, logits.shape[1])
        per_class = np.asarray(compute_roc_auc(probabilities, one_hot, average="none"), dtype=np.float64)
    finite = per_class[np.isfinite(per_class)]
    return float(finite.mean()) if finite.size else math.nan


class ClassificationEvaluator(DownstreamEvaluator):
    """Train a MONAI ResNet classifier on real and/or synthetic samples; accuracy, macro P/R/F1 and AUC on real ones.

    Samples are dicts ``{input_key: (C, H, W) or (C, T, H, W) float, "label": int}``.

    Args:
        num_classes: number of classes (>= 2).
        network: a classifier producing logits `(B, num_classes)` (default: MONAI ``ResNet`` from the arguments
            below, whose ``fc`` input is the feature layer).
        spatial_dims: 2 for images, 3 for videos.
        in_channels: input channels.
        block_inplanes: widths of the four ResNet stages.
        class_names: optional names, one per class, kept for reports.
        kwargs: training options of :class:`DownstreamEvaluator`; keys default to ``"image"`` (2D) or ``"video"``
            (3D) and ``"label"``.

    Raises:
        ValueError: when `num_classes < 2`, `spatial_dims` is not 2 or 3, `block_inplanes` does not have four entries
            or `class_names` has the wrong length.

    Example:
        >>> evaluator = ImageClassificationEvaluator(num_classes=2, class_names=["ED", "ES"], max_epochs=20)
        >>> evaluator.run(test_data=real_test, real=real_train, synthetic=synthetic_train)["synthetic"]["f1"]
        >>> encoder = evaluator.feature_encoder("phase_classifier")  # FD_phase_classifier
    """

    def __init__(
        self,
        num_classes: int,
        network: nn.Module | None = None,
        spatial_dims: int = 2,
        in_channels: int = 1,
        block_inplanes: Sequence[int] = (16, 32, 64, 128),
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        if num_classes < 2:
            raise ValueError(f"{name}: num_classes must be >= 2, got {num_classes}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"{name}: spatial_dims must be 2 (images) or 3 (videos), got {spatial_dims}.")
        if len(block_inplanes) != 4:
            raise ValueError(f"{name}: block_inplanes must have 4 entries, got {tuple(block_inplanes)}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"{name}: class_names must have num_classes = {num_classes} entries, got {len(class_names)}."
            )
        feature_layer = None
        if network is None:
            with seeded_initialisation(kwargs.get("seed", 0)):
                network = resnet10(
                    spatial_dims, in_channels, block_inplanes, num_classes, conv1_t_size=3 if spatial_dims == 3 else 7
                )
            feature_layer = "fc"
        kwargs.setdefault("input_key", "image" if spatial_dims == 2 else "video")
        kwargs.setdefault("target_key", "label")
        kwargs.setdefault("feature_layer", feature_layer)
        super().__init__(
            network,
            nn.CrossEntropyLoss(),
            target_transform=lambda label: label.long().reshape(-1),
            input_kind=InputKind.IMAGE if spatial_dims == 2 else InputKind.VIDEO,
            **kwargs,
        )
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None

    def compute_metrics(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Accuracy, macro precision/recall/F1 and ROC AUC.

        Args:
            predictions: logits `(N, num_classes)`.
            targets: class indices `(N,)`.

        Returns:
            ``{"accuracy", "precision", "recall", "f1", "auc"}``; ``auc`` is :func:`roc_auc` (binary: of the softmax
            probability of class 1; more classes: macro one-vs-rest), NaN when the test set holds one class only.
        """
        return {**classification_metrics(predictions.argmax(dim=1), targets), "auc": roc_auc(predictions, targets)}


class ImageClassificationEvaluator(ClassificationEvaluator):
    """:class:`ClassificationEvaluator` on images `(C, H, W)` under key ``"image"`` (2D ResNet)."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, spatial_dims=2, **kwargs)


class VideoClassificationEvaluator(ClassificationEvaluator):
    """:class:`ClassificationEvaluator` on videos `(C, T, H, W)` under key ``"video"`` (3D ResNet)."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, spatial_dims=3, **kwargs)
