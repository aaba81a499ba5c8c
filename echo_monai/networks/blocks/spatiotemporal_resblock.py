"""Factorised (2+1)D residual block for videos ``(B, C, T, H, W)``: a 2D residual block per frame, then a 1D
temporal convolution per pixel.

The spatial half is MONAI's ``DiffusionUNetResnetBlock`` applied to the ``B * T`` frames; the temporal half
(:class:`TemporalConvBlock`) has its output convolution zero-initialised, so at initialisation the block is exactly
the per-frame image block (the strategy of Blattmann et al. 2023, "Align your Latents" / Stable Video Diffusion, of
inserting temporal layers that start as the identity).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, zero_module
from torch import nn

__all__ = ["apply_per_frame", "TemporalConvBlock", "SpatioTemporalResBlock"]


def apply_per_frame(module: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """Apply a 2D ``module`` to every frame of ``x`` (B, C, T, H, W); extra ``args`` must already be ``(B * T, ...)``.

    Returns:
        ``(B, C', T, H', W')``.
    """
    b, c, t, h, w = x.shape
    y = module(x.transpose(1, 2).reshape(b * t, c, h, w), *args)
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class TemporalConvBlock(nn.Module):
    """Residual 1D convolution over frames, per pixel: ``x + conv2(act(norm(conv1(act(norm(x))) + emb)))``.

    ``conv2`` is zero-initialised, so the block is the identity at initialisation.

    Args:
        channels: input and output channels.
        temb_channels: channels of the timestep embedding ``(B, temb_channels)``; 0 for none.
        norm_num_groups: GroupNorm groups (must divide ``channels``).
        norm_eps: GroupNorm epsilon.
        kernel_size: temporal kernel size (odd; frames are zero-padded to keep ``T``).

    Example:
        >>> block = TemporalConvBlock(16, temb_channels=64, norm_num_groups=8)
        >>> y = block(torch.randn(2, 16, 8, 16, 16), torch.randn(2, 64))  # (2, 16, 8, 16, 16), == x at init
    """

    def __init__(
        self,
        channels: int,
        temb_channels: int = 0,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if channels <= 0 or channels % norm_num_groups != 0:
            raise ValueError(
                f"TemporalConvBlock: channels ({channels}) must be positive and divisible by "
                f"norm_num_groups ({norm_num_groups})."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"TemporalConvBlock: kernel_size must be a positive odd integer, got {kernel_size}.")
        padding = (kernel_size // 2, 0, 0)
        self.norm1 = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels > 0 else None
        self.norm2 = nn.GroupNorm(norm_num_groups, channels, eps=norm_eps)
        self.conv2 = zero_module(nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, T, H, W), ``emb`` (B, temb_channels) -> (B, C, T, H, W)."""
        h = self.conv1(self.act(self.norm1(x)))
        if self.time_emb_proj is not None and emb is not None:
            h = h + self.time_emb_proj(self.act(emb))[:, :, None, None, None]
        return x + self.conv2(self.act(self.norm2(h)))


class SpatioTemporalResBlock(nn.Module):
    """(2+1)D residual block: MONAI's 2D ``DiffusionUNetResnetBlock`` per frame, then a :class:`TemporalConvBlock`.

    The timestep embedding is added in both halves. At initialisation the temporal half is the identity, so frames
    are processed independently (Blattmann et al. 2023, arXiv:2311.15127).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        temb_channels: channels of the timestep embedding ``(B, temb_channels)``.
        norm_num_groups: GroupNorm groups (must divide both channel counts).
        norm_eps: GroupNorm epsilon.
        temporal_kernel_size: kernel size of the temporal convolution.

    Example:
        >>> block = SpatioTemporalResBlock(8, 16, temb_channels=32, norm_num_groups=8)
        >>> y = block(torch.randn(2, 8, 4, 16, 16), torch.randn(2, 32))  # (2, 16, 4, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        temporal_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if in_channels % norm_num_groups != 0:
            raise ValueError(
                f"SpatioTemporalResBlock: in_channels ({in_channels}) must be divisible by "
                f"norm_num_groups ({norm_num_groups})."
            )
        self.spatial = DiffusionUNetResnetBlock(
            spatial_dims=2,
            in_channels=in_channels,
            temb_channels=temb_channels,
            out_channels=out_channels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
        )
        self.temporal = TemporalConvBlock(out_channels, temb_channels, norm_num_groups, norm_eps, temporal_kernel_size)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, T, H, W), ``emb`` (B, temb_channels) -> (B, C_out, T, H, W)."""
        frame_emb = emb.repeat_interleave(x.shape[2], dim=0)  # (B * T, E), frame-major within each sample
        h = apply_per_frame(self.spatial, x, frame_emb)
        return self.temporal(h, emb)
