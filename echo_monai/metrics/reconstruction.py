"""Reconstruction metrics (SSIM, PSNR) for paired images or videos, through MONAI's SSIMMetric and PSNRMetric.

SSIM: Wang et al., "Image quality assessment: from error visibility to structural similarity", IEEE TIP 2004.
Videos are scored frame by frame (time folded into the batch), as video autoencoder papers report them.
"""

from __future__ import annotations

import torch
from monai.metrics import PSNRMetric, SSIMMetric

__all__ = ["reconstruction_metrics", "frames"]


def frames(x: torch.Tensor) -> torch.Tensor:
    """Fold time into the batch: `(N, C, T, H, W) -> (N * T, C, H, W)`; images `(N, C, H, W)` pass through."""
    if x.ndim == 5:
        return x.transpose(1, 2).reshape(-1, x.shape[1], *x.shape[-2:])
    return x


def reconstruction_metrics(
    prediction: torch.Tensor,
    target: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    win_size: int = 7,
    kernel_sigma: float = 1.5,
) -> dict[str, float]:
    """Mean SSIM and PSNR between paired predictions and targets.

    Args:
        prediction: images `(N, C, H, W)` or videos `(N, C, T, H, W)` in `value_range`.
        target: same shape as `prediction`.
        value_range: intensity range; its width is SSIM's `data_range` and PSNR's `max_val`.
        win_size: SSIM Gaussian window (7 suits 32-112 px frames).
        kernel_sigma: SSIM Gaussian standard deviation.

    Returns:
        ``{"ssim": mean SSIM, "psnr": mean PSNR in dB}`` (PSNR is ``inf`` for identical inputs).

    Raises:
        ValueError: when the shapes differ, the rank is not 4 or 5, the range is empty or frames are smaller than
            `win_size`.

    Example:
        >>> x = torch.rand(4, 1, 32, 32) * 2 - 1
        >>> reconstruction_metrics(x, x)["ssim"]  # 1.0
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"reconstruction_metrics: prediction and target must have the same shape, got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}."
        )
    if prediction.ndim not in (4, 5):
        raise ValueError(
            f"reconstruction_metrics: expected (N, C, H, W) or (N, C, T, H, W), got {tuple(prediction.shape)}."
        )
    low, high = value_range
    if not high > low:
        raise ValueError(f"reconstruction_metrics: value_range must satisfy high > low, got {value_range}.")
    if min(prediction.shape[-2:]) < win_size:
        raise ValueError(
            f"reconstruction_metrics: frames of {tuple(prediction.shape[-2:])} px are smaller than win_size {win_size}."
        )
    pred, ref = frames(prediction.detach().float()), frames(target.detach().float())
    data_range = high - low
    ssim = SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size, kernel_sigma=kernel_sigma)(pred, ref)
    psnr = PSNRMetric(max_val=data_range)(pred, ref)
    return {"ssim": float(ssim.mean()), "psnr": float(psnr.mean())}
