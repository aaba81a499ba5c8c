"""Latent-space helpers shared by the latent cache (data) and latent sampling (inferers): per-channel latent
normalisation and frame-by-frame application of 2D autoencoders to videos."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["LatentScaler", "framewise"]


def framewise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Apply a 2D image function to a video ``(B, C, T, H, W)`` frame by frame (images pass straight through).

    Args:
        fn: maps ``(N, C, H, W)`` to ``(N, C', H', W')``.
        x: image ``(B, C, H, W)`` or video ``(B, C, T, H, W)``.
        chunk: frames per call, to bound memory; None for all at once.
    """
    if x.ndim == 4:
        return fn(x)
    if x.ndim != 5:
        raise ValueError(f"framewise: expected (B, C, H, W) or (B, C, T, H, W), got shape {tuple(x.shape)}.")
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    step = chunk or frames.shape[0]
    out = torch.cat([fn(frames[i : i + step]) for i in range(0, frames.shape[0], step)], dim=0)
    return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)


class LatentScaler:
    """Normalise autoencoder latents per channel: ``z_model = (z - shift) * scale`` and back.

    Args:
        scale: scalar or per-channel factor (Rombach et al. 2022 use ``1 / std(z)``).
        shift: scalar or per-channel mean to subtract.
    """

    def __init__(self, scale: float | Sequence[float] = 1.0, shift: float | Sequence[float] = 0.0) -> None:
        self.scale = torch.as_tensor(scale, dtype=torch.float32)
        self.shift = torch.as_tensor(shift, dtype=torch.float32)
        if torch.any(self.scale == 0):
            raise ValueError(f"LatentScaler: scale must be non-zero, got {scale}.")

    def _shape(self, value: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        value = value.to(z.device, z.dtype)
        return value.reshape(1, -1, *([1] * (z.ndim - 2))) if value.ndim == 1 else value

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._shape(self.shift, z)) * self._shape(self.scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z / self._shape(self.scale, z) + self._shape(self.shift, z)
