"""Ejection-fraction utility evaluator: a 3D CNN regresses EF (%) from a clip; MAE, RMSE and R² on real test clips.

EchoNet-Dynamic (Ouyang et al., Nature 2020) regresses EF with an R(2+1)D video network; the echo video generation
papers (EchoNet-Synthetic, Reynaud et al. 2024; HeartBeat / EchoDiffusion) train this regressor on synthetic clips and
test on real ones. Here the backbone is MONAI's 3D ``ResNet`` (ResNet-10 layout, configurable widths), and the EF scale
lives inside the network (:class:`ScaledRegressor`), so inputs, targets and outputs are in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from echo_monai.metrics.downstream.base import DownstreamEvaluator, seeded_initialisation
from echo_monai.metrics.encoders import InputKind, resnet10

__all__ = ["EjectionFractionEvaluator", "ScaledRegressor", "regression_metrics"]


class ScaledRegressor(nn.Module):
    """``backbone(x) * scale + offset``: the backbone works in standardised units, callers see percent.

    Args:
        backbone: network producing `(B, 1)`.
        offset: output offset (the typical EF, 55 %).
        scale: output scale (the typical EF spread, 10 %).
    """

    def __init__(self, backbone: nn.Module, offset: float = 55.0, scale: float = 10.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("offset", torch.tensor(float(offset)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Map videos `(B, C, T, H, W)` to EF `(B, 1)` in percent."""
        return self.backbone(video) * self.scale + self.offset


def regression_metrics(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> dict[str, float]:
    """MAE, RMSE and coefficient of determination.

    Args:
        predicted: predictions `(N,)`.
        target: references `(N,)`.

    Returns:
        ``{"mae", "rmse", "r2"}``; R² is NaN when the targets are constant.
    """
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    error = p - t
    total = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float((error**2).sum()) / total if total > 0 else float("nan")
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean())), "r2": r2}


class EjectionFractionEvaluator(DownstreamEvaluator):
    """Train an EF regressor on real and/or synthetic clips and report MAE, RMSE and R² (EF in percent) on real clips.

    Samples are dicts ``{"video": (C, T, H, W) float, "ejection_fraction": float (%)}``. The trained backbone's
    penultimate features are the default video encoder (:meth:`feature_encoder`).

    Args:
        network: a network mapping `(B, C, T, H, W)` to EF `(B, 1)` in percent (default: :class:`ScaledRegressor`
            around a MONAI 3D ``ResNet`` built from the arguments below).
        in_channels: video channels.
        block_inplanes: widths of the four ResNet stages.
        ef_offset: output offset of the default network, %.
        ef_scale: output scale of the default network, % (> 0).
        kwargs: training options of :class:`DownstreamEvaluator`; keys default to ``"video"`` and
            ``"ejection_fraction"``.

    Raises:
        ValueError: when `ef_scale <= 0` or `block_inplanes` does not have four entries.

    Example:
        >>> evaluator = EjectionFractionEvaluator(block_inplanes=(16, 32, 64, 128), max_epochs=30)
        >>> results = evaluator.run(test_data=real_test, synthetic=synthetic_clips)
        >>> results["synthetic"]["mae"]
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        in_channels: int = 1,
        block_inplanes: Sequence[int] = (16, 32, 64, 128),
        ef_offset: float = 55.0,
        ef_scale: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if not ef_scale > 0:
            raise ValueError(f"EjectionFractionEvaluator: ef_scale must be > 0, got {ef_scale}.")
        if len(block_inplanes) != 4:
            raise ValueError(
                f"EjectionFractionEvaluator: block_inplanes must have 4 entries, got {tuple(block_inplanes)}."
            )
        feature_layer = None
        if network is None:
            with seeded_initialisation(kwargs.get("seed", 0)):
                backbone = resnet10(3, in_channels, block_inplanes, num_classes=1, conv1_t_size=3)
            network = ScaledRegressor(backbone, ef_offset, ef_scale)
            feature_layer = "backbone.fc"
        kwargs.setdefault("input_key", "video")
        kwargs.setdefault("target_key", "ejection_fraction")
        kwargs.setdefault("feature_layer", feature_layer)
        super().__init__(
            network,
            nn.MSELoss(),
            target_transform=lambda ef: ef.float().reshape(-1, 1),
            input_kind=InputKind.VIDEO,
            **kwargs,
        )

    def compute_metrics(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Regression metrics in EF percent.

        Args:
            predictions: EF `(N, 1)`.
            targets: EF `(N, 1)`.

        Returns:
            ``{"mae", "rmse", "r2"}``.
        """
        return regression_metrics(predictions, targets)
