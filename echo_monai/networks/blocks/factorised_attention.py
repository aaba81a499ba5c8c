"""Factorised spatio-temporal attention for videos ``(B, C, T, H, W)``: spatial self- and cross-attention per
frame, then temporal self- and cross-attention per pixel.

Both halves are built from MONAI blocks: the spatial half is MONAI's ``SpatialTransformer`` (``SABlock`` +
``CrossAttentionBlock`` + GEGLU MLP) on the ``B * T`` frames; the temporal half (:class:`TemporalTransformer`) runs
MONAI's ``DiffusionUNetTransformerBlock`` on the ``B * H * W`` pixel sequences of length ``T``, with a sinusoidal
frame-position embedding. With ``use_flash_attention=True`` both use PyTorch's fused
``scaled_dot_product_attention``.

The temporal output projection is zero-initialised (Blattmann et al. 2023, arXiv:2311.15127): at initialisation the
block is the per-frame image attention.
"""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import (
    DiffusionUNetTransformerBlock,
    SpatialTransformer,
    get_timestep_embedding,
    zero_module,
)
from torch import nn

from echo_monai.networks.blocks.spatiotemporal_resblock import apply_per_frame

__all__ = ["TemporalTransformer", "FactorisedAttentionBlock"]


def _check(owner: str, channels: int, num_head_channels: int, norm_num_groups: int) -> None:
    if channels <= 0 or channels % norm_num_groups != 0:
        raise ValueError(
            f"{owner}: channels ({channels}) must be positive and divisible by norm_num_groups ({norm_num_groups})."
        )
    if num_head_channels <= 0 or channels % num_head_channels != 0:
        raise ValueError(
            f"{owner}: num_head_channels ({num_head_channels}) must be positive and divide channels ({channels})."
        )


def _repeat_tokens(context: torch.Tensor | None, repeats: int) -> torch.Tensor | None:
    """``(B, N, D)`` -> ``(B * repeats, N, D)``, sample-major (matching the frame / pixel flattening)."""
    return None if context is None else context.repeat_interleave(repeats, dim=0)


class TemporalTransformer(nn.Module):
    """Transformer over frames, per pixel: self-attention along ``T`` and cross-attention to context tokens.

    Args:
        channels: input and output channels.
        num_head_channels: channels per attention head (``channels // num_head_channels`` heads).
        norm_num_groups: GroupNorm groups of the input normalisation.
        norm_eps: GroupNorm epsilon.
        cross_attention_dim: token size of ``context`` ``(B, N, cross_attention_dim)``; None: the second attention
            is a self-attention (MONAI's convention).
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        dropout: attention and MLP dropout.

    Example:
        >>> block = TemporalTransformer(16, num_head_channels=8, norm_num_groups=8, cross_attention_dim=4)
        >>> y = block(torch.randn(2, 16, 8, 4, 4), context=torch.randn(2, 1, 4))  # (2, 16, 8, 4, 4), == x at init
    """

    def __init__(
        self,
        channels: int,
        num_head_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        cross_attention_dim: int | None = None,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check("TemporalTransformer", channels, num_head_channels, norm_num_groups)
        self.channels = channels
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.proj_in = nn.Linear(channels, channels)
        self.frame_embed = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.block = DiffusionUNetTransformerBlock(
            num_channels=channels,
            num_attention_heads=channels // num_head_channels,
            num_head_channels=num_head_channels,
            dropout=dropout,
            cross_attention_dim=cross_attention_dim,
            use_flash_attention=use_flash_attention,
        )
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, T, H, W), ``context`` (B, N, D) or None -> (B, C, T, H, W)."""
        b, c, t, h, w = x.shape
        tokens = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # one sequence of T frames per pixel
        positions = get_timestep_embedding(torch.arange(t, device=x.device), c).to(x.dtype)
        tokens = self.proj_in(tokens) + self.frame_embed(positions)[None]
        tokens = self.block(tokens, context=_repeat_tokens(context, h * w))
        out = self.proj_out(tokens).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + out


class FactorisedAttentionBlock(nn.Module):
    """Spatial attention per frame (MONAI ``SpatialTransformer``) then temporal attention per pixel
    (:class:`TemporalTransformer`), each with cross-attention to generic context tokens.

    Context tokens ``(B, N, cross_attention_dim)`` can be anything (an ejection fraction as one token, motion
    features as many); they are shared by every frame and every pixel.

    Args:
        channels: input and output channels.
        num_head_channels: channels per attention head.
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        cross_attention_dim: token size of ``context``; None for self-attention only.
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        dropout: attention and MLP dropout.

    Example:
        >>> block = FactorisedAttentionBlock(16, num_head_channels=8, norm_num_groups=8, cross_attention_dim=1)
        >>> y = block(torch.randn(2, 16, 4, 8, 8), context=torch.randn(2, 1, 1))  # (2, 16, 4, 8, 8)
    """

    def __init__(
        self,
        channels: int,
        num_head_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        cross_attention_dim: int | None = None,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check("FactorisedAttentionBlock", channels, num_head_channels, norm_num_groups)
        self.spatial = SpatialTransformer(
            spatial_dims=2,
            in_channels=channels,
            num_attention_heads=channels // num_head_channels,
            num_head_channels=num_head_channels,
            dropout=dropout,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            cross_attention_dim=cross_attention_dim,
            use_flash_attention=use_flash_attention,
        )
        self.temporal = TemporalTransformer(
            channels, num_head_channels, norm_num_groups, norm_eps, cross_attention_dim, use_flash_attention, dropout
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, T, H, W), ``context`` (B, N, D) or None -> (B, C, T, H, W)."""
        frame_context = _repeat_tokens(context, x.shape[2])
        if frame_context is None:
            x = apply_per_frame(self.spatial, x)
        else:
            x = apply_per_frame(self.spatial, x, frame_context)
        return self.temporal(x, context)
