"""A denoiser whose raw conditions are embedded into tokens first, with both trained as one network."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ContextEmbeddingDenoiser"]


class ContextEmbeddingDenoiser(nn.Module):
    """``denoiser(x, timesteps, context=embedding(context), **kwargs)``: raw conditions in, tokens to cross-attention.

    The sampler and the PrepareBatch objectives pass conditions as they come from the batch (an ejection fraction
    in percent becomes a ``(B, 1, 1)`` token, see :class:`echo_monai.engines.Conditioning`); this wrapper owns the
    learnt embedding, so one checkpoint holds both and the call convention stays ``net(x, timesteps, context=...)``.

    Args:
        denoiser: a network called as ``denoiser(x, timesteps, context=None, **kwargs)`` (MONAI's
            ``DiffusionModelUNet``, :class:`SpatioTemporalUNet`).
        context_embedding: maps raw context to ``(B, N, cross_attention_dim)`` tokens, e.g.
            :class:`echo_monai.networks.blocks.ScalarTokenEmbedding`.

    Example:
        >>> net = ContextEmbeddingDenoiser(SpatioTemporalUNet(8, 4, with_conditioning=True, cross_attention_dim=32),
        ...                                ScalarTokenEmbedding(32, scale=100.0, null_value=-1.0))
        >>> velocity = net(noisy_with_reference, timesteps, context=ejection_fraction[:, None, None])
    """

    def __init__(self, denoiser: nn.Module, context_embedding: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.context_embedding = context_embedding

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        tokens = None if context is None else self.context_embedding(context)
        return self.denoiser(x, timesteps, context=tokens, **kwargs)
