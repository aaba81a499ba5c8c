"""Segmentation utility evaluator: a MONAI UNet trained on real/synthetic label maps, Dice on held-out real images.

As in "Echo from noise" (Stojanovski et al., ASMUS 2023): a UNet is trained on (synthetic) CAMUS-style images and their
label maps and judged by the Dice of the LV endocardium (cavity, label 1), the LV epicardium (cavity ∪ myocardium,
labels 1 and 2) and the left atrium (label 3) on real test images. CAMUS convention: 0 background, 1 LV cavity,
2 myocardium, 3 left atrium.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from echo_monai.metrics.downstream.base import DownstreamEvaluator, seeded_initialisation

__all__ = ["SegmentationEvaluator", "CAMUS_STRUCTURES", "structure_dice"]

CAMUS_STRUCTURES: dict[str, tuple[int, ...]] = {"lv_endo": (1,), "lv_epi": (1, 2), "la": (3,)}


def structure_dice(
    predicted_labels: torch.Tensor, label_map: torch.Tensor, structures: Mapping[str, Sequence[int]]
) -> dict[str, np.ndarray]:
    """Per-sample Dice of each structure, a structure being the union of some labels.

    Args:
        predicted_labels: integer label maps `(N, H, W)` (or `(N, 1, H, W)`).
        label_map: reference label maps, same shape.
        structures: name -> labels whose union forms the structure.

    Returns:
        name -> Dice per sample `(N,)`; NaN where the structure is absent from both maps.
    """
    predicted = predicted_labels.reshape(predicted_labels.shape[0], -1).long()
    reference = label_map.reshape(label_map.shape[0], -1).long()
    scores: dict[str, np.ndarray] = {}
    for name, labels in structures.items():
        labels_t = torch.as_tensor(list(labels))
        p, r = torch.isin(predicted, labels_t), torch.isin(reference, labels_t)
        overlap = (p & r).sum(dim=1).double()
        total = p.sum(dim=1).double() + r.sum(dim=1).double()
        dice = torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), torch.full_like(total, float("nan")))
        scores[name] = dice.numpy()
    return scores


class SegmentationEvaluator(DownstreamEvaluator):
    """Train a MONAI UNet (Dice + cross-entropy) and report Dice per cardiac structure on real test images.

    Samples are dicts ``{"image": (C, H, W) float, "label": (1, H, W) int}``; `H` and `W` must divide by the product
    of `strides`.

    Args:
        network: a segmentation network with `num_classes` output channels (default: a MONAI ``UNet`` built from the
            arguments below).
        num_classes: label count including background (4 for CAMUS).
        in_channels: image channels.
        channels: UNet channels per level.
        strides: UNet down-sampling strides (one fewer than `channels`).
        num_res_units: residual units per UNet block.
        structures: name -> labels scored by Dice (default :data:`CAMUS_STRUCTURES`).
        kwargs: training options of :class:`DownstreamEvaluator` (``max_epochs``, ``batch_size``, ``learning_rate``,
            ``device``, ``seed``, ...); keys default to ``"image"`` and ``"label"``.

    Raises:
        ValueError: when `num_classes < 2`, `channels`/`strides` do not match, or a structure names a label outside
            ``1..num_classes-1``.

    Example:
        >>> evaluator = SegmentationEvaluator(channels=(16, 32, 64, 128), strides=(2, 2, 2), max_epochs=50)
        >>> results = evaluator.run(test_data=real_test, real=real_train, synthetic=synthetic_train)
        >>> results["synthetic"]["dice_lv_endo"]
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        num_classes: int = 4,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        num_res_units: int = 2,
        structures: Mapping[str, Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"SegmentationEvaluator: num_classes must be >= 2, got {num_classes}.")
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"SegmentationEvaluator: strides must have len(channels) - 1 = {len(channels) - 1} entries, "
                f"got {len(strides)}."
            )
        structures = dict(CAMUS_STRUCTURES if structures is None else structures)
        for name, labels in structures.items():
            if not labels or any(not 1 <= int(label) < num_classes for label in labels):
                raise ValueError(
                    f"SegmentationEvaluator: structure {name!r} must list labels in 1..{num_classes - 1}, got {labels}."
                )
        if network is None:
            with seeded_initialisation(kwargs.get("seed", 0)):
                network = UNet(
                    spatial_dims=2,
                    in_channels=in_channels,
                    out_channels=num_classes,
                    channels=tuple(channels),
                    strides=tuple(strides),
                    num_res_units=num_res_units,
                )
        kwargs.setdefault("input_key", "image")
        kwargs.setdefault("target_key", "label")
        super().__init__(
            network,
            DiceCELoss(to_onehot_y=True, softmax=True),
            target_transform=self._as_label_map,
            **kwargs,
        )
        self.num_classes = num_classes
        self.structures = structures

    @staticmethod
    def _as_label_map(label: torch.Tensor) -> torch.Tensor:
        """Collated labels `(B, H, W)` or `(B, 1, H, W)` -> `(B, 1, H, W)` float (DiceCELoss one-hots it)."""
        if label.ndim == 3:
            label = label[:, None]
        return label.float()

    def compute_metrics(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Mean Dice per structure and their mean.

        Args:
            predictions: logits `(N, num_classes, H, W)`.
            targets: label maps `(N, 1, H, W)`.

        Returns:
            ``dice_<structure>`` for each structure (NaN-aware mean over samples) and ``dice_mean``.
        """
        scores = structure_dice(predictions.argmax(dim=1), targets, self.structures)
        with np.errstate(all="ignore"):
            metrics = {
                f"dice_{name}": float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
                for name, values in scores.items()
            }
        finite = [value for value in metrics.values() if np.isfinite(value)]
        metrics["dice_mean"] = float(np.mean(finite)) if finite else float("nan")
        return metrics
