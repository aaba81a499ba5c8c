"""Per-level modules of the spatio-temporal UNet: down, middle and up blocks for videos ``(B, C, T, H, W)``.

The video counterparts of MONAI's ``DownBlock`` / ``AttnDownBlock`` / ``CrossAttnDownBlock``, ``AttnMidBlock`` /
``CrossAttnMidBlock`` and ``UpBlock`` / ``AttnUpBlock`` / ``CrossAttnUpBlock`` (``monai.networks.nets.
diffusion_model_unet``), with the same call signatures, so that a UNet and a ControlNet are assembled from them as
MONAI assembles ``DiffusionModelUNet`` and ``ControlNet``. Each level owns its (2+1)D residual blocks
(:class:`SpatioTemporalResBlock`), its optional factorised attention (:class:`FactorisedAttentionBlock`, self- and,
with ``cross_attention_dim``, cross-attention) and its resampler: MONAI's ``DiffusionUnetDownsample`` (stride-2
convolution) and ``WrappedUpsample`` (nearest x2 then a 3x3 convolution), applied to every frame. Frames are resampled
spatially only; ``T`` is kept.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.diffusion_model_unet import DiffusionUnetDownsample, WrappedUpsample
from torch import nn
from torch.utils.checkpoint import checkpoint

from echo_monai.networks.blocks.factorised_attention import FactorisedAttentionBlock
from echo_monai.networks.blocks.spatiotemporal_resblock import SpatioTemporalResBlock, apply_per_frame

__all__ = ["SpatioTemporalDownBlock", "SpatioTemporalMidBlock", "SpatioTemporalUpBlock"]


def _check_num_res_blocks(owner: str, num_res_blocks: int) -> None:
    if num_res_blocks < 1:
        raise ValueError(f"{owner}: num_res_blocks must be >= 1, got {num_res_blocks}.")


class _CheckpointedLevel(nn.Module):
    """Runs each residual / attention block under gradient checkpointing when ``use_checkpointing`` and training."""

    use_checkpointing: bool

    def _run(self, block: nn.Module, hidden_states: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if self.use_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, hidden_states, extra, use_reentrant=False)
        return block(hidden_states, extra)


def _attentions(
    channels: int,
    count: int,
    num_head_channels: int,
    norm_num_groups: int,
    norm_eps: float,
    cross_attention_dim: int | None,
    use_flash_attention: bool,
    dropout: float,
) -> nn.ModuleList:
    return nn.ModuleList(
        FactorisedAttentionBlock(
            channels,
            num_head_channels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            cross_attention_dim=cross_attention_dim,
            use_flash_attention=use_flash_attention,
            dropout=dropout,
        )
        for _ in range(count)
    )


class SpatioTemporalDownBlock(_CheckpointedLevel):
    """One encoder level: ``num_res_blocks`` (2+1)D residual blocks, each optionally followed by factorised attention,
    then an optional stride-2 downsampling of every frame (MONAI's ``DiffusionUnetDownsample``).

    The video version of MONAI's ``DownBlock`` / ``AttnDownBlock`` / ``CrossAttnDownBlock`` (the UNet of Ho et al.
    2020, arXiv:2006.11239, with the factorised layers of Blattmann et al. 2023, arXiv:2311.15127).

    Args:
        in_channels: input channels.
        out_channels: channels of every residual block's output.
        temb_channels: channels of the timestep embedding ``(B, temb_channels)``.
        num_res_blocks: residual blocks.
        norm_num_groups: GroupNorm groups (must divide both channel counts).
        norm_eps: GroupNorm epsilon.
        add_downsample: end with a stride-2 convolution of every frame (all levels but the last).
        with_attn: follow each residual block with a :class:`FactorisedAttentionBlock`.
        num_head_channels: channels per attention head (must divide ``out_channels`` when ``with_attn``).
        cross_attention_dim: token size of ``context`` ``(B, N, cross_attention_dim)``; None: self-attention only.
        temporal_kernel_size: kernel size of the temporal convolutions.
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        dropout: attention and MLP dropout.
        use_checkpointing: gradient checkpointing of every residual and attention block in training.

    Example:
        >>> block = SpatioTemporalDownBlock(8, 16, 32, norm_num_groups=8, with_attn=True, num_head_channels=8)
        >>> h, res_samples = block(torch.randn(2, 8, 4, 16, 16), torch.randn(2, 32))
        >>> h.shape, [r.shape[-1] for r in res_samples]  # (2, 16, 4, 8, 8), [16, 8]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_res_blocks: int = 1,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        add_downsample: bool = True,
        with_attn: bool = False,
        num_head_channels: int = 32,
        cross_attention_dim: int | None = None,
        temporal_kernel_size: int = 3,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        _check_num_res_blocks("SpatioTemporalDownBlock", num_res_blocks)
        self.use_checkpointing = use_checkpointing
        self.resnets = nn.ModuleList(
            SpatioTemporalResBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                temb_channels,
                norm_num_groups=norm_num_groups,
                norm_eps=norm_eps,
                temporal_kernel_size=temporal_kernel_size,
            )
            for i in range(num_res_blocks)
        )
        self.attentions: nn.ModuleList | None = None
        if with_attn:
            self.attentions = _attentions(
                out_channels, num_res_blocks, num_head_channels, norm_num_groups, norm_eps, cross_attention_dim,
                use_flash_attention, dropout,
            )  # fmt: skip
        self.downsampler: nn.Module | None = None
        if add_downsample:
            self.downsampler = DiffusionUnetDownsample(2, out_channels, use_conv=True, out_channels=out_channels)

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode one level.

        Args:
            hidden_states: ``(B, in_channels, T, H, W)``.
            temb: timestep embedding ``(B, temb_channels)``.
            context: tokens ``(B, N, cross_attention_dim)`` or None.

        Returns:
            ``(B, out_channels, T, H', W')`` (``H' = H / 2`` with ``add_downsample``) and the skip tensors of this
            level, in order: every residual (+ attention) block's output, then the downsampled output.
        """
        output_states = []
        for i, resnet in enumerate(self.resnets):
            hidden_states = self._run(resnet, hidden_states, temb)
            if self.attentions is not None:
                hidden_states = self._run(self.attentions[i], hidden_states, context)
            output_states.append(hidden_states)
        if self.downsampler is not None:
            hidden_states = apply_per_frame(self.downsampler, hidden_states)
            output_states.append(hidden_states)
        return hidden_states, output_states


class SpatioTemporalMidBlock(_CheckpointedLevel):
    """The bottleneck: residual block, factorised attention, residual block (MONAI's ``AttnMidBlock`` /
    ``CrossAttnMidBlock`` for videos; Blattmann et al. 2023, arXiv:2311.15127).

    Args:
        in_channels: input and output channels.
        temb_channels: channels of the timestep embedding ``(B, temb_channels)``.
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        num_head_channels: channels per attention head (must divide ``in_channels``).
        cross_attention_dim: token size of ``context``; None: self-attention only.
        temporal_kernel_size: kernel size of the temporal convolutions.
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        dropout: attention and MLP dropout.
        use_checkpointing: gradient checkpointing of each of the three blocks in training.

    Example:
        >>> block = SpatioTemporalMidBlock(16, temb_channels=32, norm_num_groups=8, num_head_channels=8)
        >>> h = block(torch.randn(2, 16, 4, 8, 8), torch.randn(2, 32))  # (2, 16, 4, 8, 8)
    """

    def __init__(
        self,
        in_channels: int,
        temb_channels: int,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        num_head_channels: int = 32,
        cross_attention_dim: int | None = None,
        temporal_kernel_size: int = 3,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.use_checkpointing = use_checkpointing
        norm = {"norm_num_groups": norm_num_groups, "norm_eps": norm_eps}
        self.resnet_1 = SpatioTemporalResBlock(
            in_channels, in_channels, temb_channels, temporal_kernel_size=temporal_kernel_size, **norm
        )
        self.attention = FactorisedAttentionBlock(
            in_channels, num_head_channels, cross_attention_dim=cross_attention_dim,
            use_flash_attention=use_flash_attention, dropout=dropout, **norm,
        )  # fmt: skip
        self.resnet_2 = SpatioTemporalResBlock(
            in_channels, in_channels, temb_channels, temporal_kernel_size=temporal_kernel_size, **norm
        )

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``hidden_states`` (B, C, T, H, W), ``temb`` (B, temb_channels), ``context`` (B, N, D) -> (B, C, T, H, W)."""
        hidden_states = self._run(self.resnet_1, hidden_states, temb)
        hidden_states = self._run(self.attention, hidden_states, context)
        return self._run(self.resnet_2, hidden_states, temb)


class SpatioTemporalUpBlock(_CheckpointedLevel):
    """One decoder level: ``num_res_blocks`` (2+1)D residual blocks, each on its input concatenated with one skip
    (popped from the end of the list) and optionally followed by factorised attention, then an optional nearest x2
    upsampling + 3x3 convolution of every frame (MONAI's ``WrappedUpsample``, built as in MONAI's ``UpBlock``).

    The video version of MONAI's ``UpBlock`` / ``AttnUpBlock`` / ``CrossAttnUpBlock``, with MONAI's channel
    convention: the first residual block takes ``prev_output_channel`` (the deeper level's output), the last skip has
    ``in_channels`` (the shallower level's width), every other skip ``out_channels``.

    Args:
        in_channels: channels of the last skip consumed (the shallower level's, or this level's at the top).
        prev_output_channel: channels of ``hidden_states`` entering the block.
        out_channels: channels of every residual block's output.
        temb_channels: channels of the timestep embedding ``(B, temb_channels)``.
        num_res_blocks: residual blocks (= skips consumed; MONAI's UNet uses the encoder's count + 1).
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        add_upsample: end with a x2 upsampling of every frame (all levels but the top one).
        with_attn: follow each residual block with a :class:`FactorisedAttentionBlock`.
        num_head_channels: channels per attention head (must divide ``out_channels`` when ``with_attn``).
        cross_attention_dim: token size of ``context``; None: self-attention only.
        temporal_kernel_size: kernel size of the temporal convolutions.
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        dropout: attention and MLP dropout.
        use_checkpointing: gradient checkpointing of every residual and attention block in training.

    Example:
        >>> block = SpatioTemporalUpBlock(8, 16, 8, temb_channels=32, num_res_blocks=2, norm_num_groups=8)
        >>> skips = [torch.randn(2, 8, 4, 8, 8), torch.randn(2, 8, 4, 8, 8)]
        >>> h = block(torch.randn(2, 16, 4, 8, 8), skips, torch.randn(2, 32))  # (2, 8, 4, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        temb_channels: int,
        num_res_blocks: int = 1,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        add_upsample: bool = True,
        with_attn: bool = False,
        num_head_channels: int = 32,
        cross_attention_dim: int | None = None,
        temporal_kernel_size: int = 3,
        use_flash_attention: bool = False,
        dropout: float = 0.0,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        _check_num_res_blocks("SpatioTemporalUpBlock", num_res_blocks)
        self.use_checkpointing = use_checkpointing
        self.resnets = nn.ModuleList(
            SpatioTemporalResBlock(
                (prev_output_channel if i == 0 else out_channels)
                + (in_channels if i == num_res_blocks - 1 else out_channels),
                out_channels,
                temb_channels,
                norm_num_groups=norm_num_groups,
                norm_eps=norm_eps,
                temporal_kernel_size=temporal_kernel_size,
            )
            for i in range(num_res_blocks)
        )
        self.attentions: nn.ModuleList | None = None
        if with_attn:
            self.attentions = _attentions(
                out_channels, num_res_blocks, num_head_channels, norm_num_groups, norm_eps, cross_attention_dim,
                use_flash_attention, dropout,
            )  # fmt: skip
        self.upsampler: nn.Module | None = None
        if add_upsample:
            post_conv = Convolution(
                spatial_dims=2,
                in_channels=out_channels,
                out_channels=out_channels,
                strides=1,
                kernel_size=3,
                padding=1,
                conv_only=True,
            )
            self.upsampler = WrappedUpsample(
                spatial_dims=2,
                mode="nontrainable",
                in_channels=out_channels,
                out_channels=out_channels,
                interp_mode="nearest",
                scale_factor=2.0,
                post_conv=post_conv,
                align_corners=None,
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_list: list[torch.Tensor],
        temb: torch.Tensor,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode one level.

        Args:
            hidden_states: ``(B, prev_output_channel, T, H, W)``.
            res_hidden_states_list: this level's skips ``(B, C_i, T, H, W)``, consumed from the end.
            temb: timestep embedding ``(B, temb_channels)``.
            context: tokens ``(B, N, cross_attention_dim)`` or None.

        Returns:
            ``(B, out_channels, T, H', W')`` (``H' = 2 H`` with ``add_upsample``).
        """
        for i, resnet in enumerate(self.resnets):
            res_hidden_states = res_hidden_states_list[-1]
            res_hidden_states_list = res_hidden_states_list[:-1]
            hidden_states = self._run(resnet, torch.cat([hidden_states, res_hidden_states], dim=1), temb)
            if self.attentions is not None:
                hidden_states = self._run(self.attentions[i], hidden_states, context)
        if self.upsampler is not None:
            hidden_states = apply_per_frame(self.upsampler, hidden_states)
        return hidden_states
