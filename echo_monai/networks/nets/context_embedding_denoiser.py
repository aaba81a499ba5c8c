"""A denoiser whose raw conditions are embedded into tokens first, with both trained as one network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ContextEmbeddingDenoiser"]


class ContextEmbeddingDenoiser(nn.Module):
    """``denoiser(x, timesteps, context=tokens, **kwargs)``: raw conditions in, tokens to cross-attention.

    The sampler and the PrepareBatch objectives pass conditions as they come from the batch (an ejection fraction
    in percent becomes a ``(B, 1, 1)`` token, see :class:`echo_monai.engines.Conditioning`); this wrapper owns the
    learnt embeddings, so one checkpoint holds them and the denoiser, and the call convention stays
    ``net(x, timesteps, context=...)``.

    The tokens are ``context_embedding(context)`` followed by ``extra_tokens[name](value)`` for each extra keyword
    argument given, in the order of ``extra_tokens``: MCDM's motion token with the ejection fraction as a second token
    is ``ContextEmbeddingDenoiser(unet, None, {"ejection_fraction": ScalarTokenEmbedding(...)})`` called with
    ``context=motion_tokens, ejection_fraction=ef``.

    Args:
        denoiser: a network called as ``denoiser(x, timesteps, context=None, **kwargs)`` (MONAI's
            ``DiffusionModelUNet``, :class:`SpatioTemporalUNet`).
        context_embedding: maps raw context to ``(B, N, cross_attention_dim)`` tokens, e.g.
            :class:`echo_monai.networks.blocks.ScalarTokenEmbedding`; None passes ``context`` on as tokens already.
        extra_tokens: keyword argument name -> embedding ``(B, ...) -> (B, M, cross_attention_dim)``; each such
            argument is appended to the tokens and not passed to the denoiser.

    Example:
        >>> net = ContextEmbeddingDenoiser(SpatioTemporalUNet(8, 4, with_conditioning=True, cross_attention_dim=32),
        ...                                ScalarTokenEmbedding(32, scale=100.0, null_value=-1.0))
        >>> velocity = net(noisy_with_reference, timesteps, context=ejection_fraction[:, None, None])
    """

    def __init__(
        self,
        denoiser: nn.Module,
        context_embedding: nn.Module | None = None,
        extra_tokens: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        extra = dict(extra_tokens or {})
        reserved = {"x", "timesteps", "context"} & set(extra)
        if reserved:
            raise ValueError(f"ContextEmbeddingDenoiser: extra_tokens cannot be named {sorted(reserved)}.")
        if context_embedding is None and not extra:
            raise ValueError("ContextEmbeddingDenoiser: give a context_embedding, extra_tokens or both.")
        self.denoiser = denoiser
        self.context_embedding = context_embedding
        self.extra_tokens = nn.ModuleDict(extra)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        tokens = []
        if context is not None:
            tokens.append(context if self.context_embedding is None else self.context_embedding(context))
        for name, embedding in self.extra_tokens.items():
            value = kwargs.pop(name, None)
            if value is not None:
                tokens.append(embedding(value).to(tokens[0].dtype if tokens else x.dtype))
        if len({t.shape[-1] for t in tokens}) > 1:
            sizes = ", ".join(str(tuple(t.shape)) for t in tokens)
            raise ValueError(f"ContextEmbeddingDenoiser: tokens of different sizes cannot be joined: {sizes}.")
        joined = torch.cat(tokens, dim=1) if tokens else None
        return self.denoiser(x, timesteps, context=joined, **kwargs)
