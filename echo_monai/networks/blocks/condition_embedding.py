"""Scalar conditions (ejection fraction, heart rate, motion features) as cross-attention tokens."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ScalarTokenEmbedding"]


class ScalarTokenEmbedding(nn.Module):
    """Embed ``(B,)`` or ``(B, N)`` scalars (or ``(B, N, 1)`` tokens) into ``(B, N, dim)`` tokens.

    Each scalar is scaled to about [0, 1] (``(value - offset) / scale``), expanded into Fourier features
    ``[sin(2^k pi v), cos(2^k pi v)]`` and mapped by an MLP, as EchoNet-Synthetic and EchoFlow feed the requested
    ejection fraction to their video denoisers as one cross-attention token. A null condition for classifier-free
    guidance (a blanked value, see :class:`echo_monai.engines.Conditioning`) gets its own learnt token when
    ``null_value`` is set.

    Args:
        dim: token size (the denoiser's ``cross_attention_dim``).
        offset: subtracted before scaling (0 for EF in percent).
        scale: divisor (100 for EF in percent).
        num_frequencies: Fourier frequencies ``2^0 .. 2^(n-1)``.
        null_value: the value that marks a dropped condition (e.g. -1); None for no learnt null token.

    Example:
        >>> embed = ScalarTokenEmbedding(dim=32, scale=100.0, null_value=-1.0)
        >>> embed(torch.tensor([55.0, -1.0])).shape
        torch.Size([2, 1, 32])
    """

    def __init__(
        self,
        dim: int,
        offset: float = 0.0,
        scale: float = 1.0,
        num_frequencies: int = 8,
        null_value: float | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"ScalarTokenEmbedding: dim must be >= 1, got {dim}.")
        if scale == 0:
            raise ValueError("ScalarTokenEmbedding: scale must be non-zero.")
        if num_frequencies < 1:
            raise ValueError(f"ScalarTokenEmbedding: num_frequencies must be >= 1, got {num_frequencies}.")
        self.offset, self.scale, self.null_value = float(offset), float(scale), null_value
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(num_frequencies), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * num_frequencies + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null_token = nn.Parameter(torch.zeros(dim)) if null_value is not None else None

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``(B,)``, ``(B, N)`` or ``(B, N, 1)`` scalars → ``(B, N, dim)`` tokens."""
        if values.ndim == 3 and values.shape[-1] == 1:
            values = values[..., 0]
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(
                f"ScalarTokenEmbedding: expected (B,), (B, N) or (B, N, 1) values, got {tuple(values.shape)}."
            )
        v = (values.float() - self.offset) / self.scale
        angles = v[..., None] * self.frequencies
        tokens = self.mlp(torch.cat([v[..., None], angles.sin(), angles.cos()], dim=-1))
        if self.null_token is not None:
            is_null = (values == self.null_value)[..., None]
            tokens = torch.where(is_null, self.null_token.to(tokens.dtype).expand_as(tokens), tokens)
        return tokens
