"""Spatio-temporal UNet: a latent video denoiser with factorised (2+1)D convolutions and attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding, zero_module
from torch import nn

from echo_monai.networks.blocks.spatiotemporal_resblock import apply_per_frame
from echo_monai.networks.blocks.spatiotemporal_unet_blocks import (
    SpatioTemporalDownBlock,
    SpatioTemporalMidBlock,
    SpatioTemporalUpBlock,
)

__all__ = ["SpatioTemporalUNet"]


def _per_level(owner: str, name: str, value: int | Sequence[int], levels: int) -> tuple[int, ...]:
    values = (int(value),) * levels if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != levels:
        raise ValueError(f"{owner}: {name} must be an int or have one entry per level ({levels}), got {value}.")
    if any(v <= 0 for v in values):
        raise ValueError(f"{owner}: {name} must be positive, got {value}.")
    return values


class _SpatioTemporalEncoder(nn.Module):
    """The half shared by :class:`SpatioTemporalUNet` and ``SpatioTemporalControlNet``: argument validation, the
    timestep / class embedding, ``conv_in``, the down blocks and the middle block, and forward steps 1 to 5.

    Error messages name the concrete class. See :class:`SpatioTemporalUNet` for the arguments.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        attention_levels: Sequence[bool],
        num_res_blocks: int | Sequence[int],
        num_head_channels: int | Sequence[int],
        norm_num_groups: int,
        norm_eps: float,
        with_conditioning: bool,
        cross_attention_dim: int | None,
        num_class_embeds: int | None,
        temporal_kernel_size: int,
        use_flash_attention: bool,
        use_checkpointing: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self._encoder_config: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        res_blocks, head_channels = self._validate(**self._encoder_config)
        self.in_channels = in_channels
        self.block_channels = tuple(int(c) for c in channels)
        self.attention_levels = tuple(bool(a) for a in attention_levels)
        self.num_res_blocks, self.num_head_channels = res_blocks, head_channels
        self.with_conditioning = with_conditioning
        self.cross_attention_dim = cross_attention_dim
        self.num_class_embeds = num_class_embeds
        temb = channels[0] * 4
        # settings shared by every level module (the decoder of SpatioTemporalUNet uses them too)
        self._block_kwargs: dict[str, Any] = {
            "temb_channels": temb, "norm_num_groups": norm_num_groups, "norm_eps": norm_eps,
            "cross_attention_dim": cross_attention_dim, "temporal_kernel_size": temporal_kernel_size,
            "use_flash_attention": use_flash_attention, "dropout": dropout,
        }  # fmt: skip

        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.time_embed = nn.Sequential(nn.Linear(channels[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.class_embedding = nn.Embedding(num_class_embeds, temb) if num_class_embeds is not None else None
        self.down_blocks = nn.ModuleList(
            SpatioTemporalDownBlock(
                channels[max(i - 1, 0)],
                channels[i],
                num_res_blocks=res_blocks[i],
                add_downsample=i < len(channels) - 1,
                with_attn=self.attention_levels[i],
                num_head_channels=head_channels[i],
                **self._block_kwargs,
            )
            for i in range(len(channels))
        )
        self.middle_block = SpatioTemporalMidBlock(
            channels[-1], num_head_channels=head_channels[-1], **self._block_kwargs
        )
        self.use_checkpointing = use_checkpointing

    def _validate(
        self,
        in_channels: int,
        channels: Sequence[int],
        attention_levels: Sequence[bool],
        num_res_blocks: int | Sequence[int],
        num_head_channels: int | Sequence[int],
        norm_num_groups: int,
        with_conditioning: bool,
        cross_attention_dim: int | None,
        num_class_embeds: int | None,
        temporal_kernel_size: int,
        dropout: float,
        **_: Any,
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Check the constructor arguments; returns ``num_res_blocks`` and ``num_head_channels`` per level."""
        owner = type(self).__name__
        if in_channels <= 0:
            raise ValueError(f"{owner}: in_channels must be positive, got {in_channels}.")
        if len(channels) == 0 or any(int(c) <= 0 for c in channels):
            raise ValueError(f"{owner}: channels must be a non-empty sequence of positive ints, got {channels}.")
        if len(attention_levels) != len(channels):
            raise ValueError(
                f"{owner}: attention_levels ({len(attention_levels)} entries) must have one entry per level of "
                f"channels ({len(channels)})."
            )
        if norm_num_groups <= 0 or any(int(c) % norm_num_groups != 0 for c in channels):
            raise ValueError(
                f"{owner}: norm_num_groups ({norm_num_groups}) must divide every entry of channels {tuple(channels)}."
            )
        if temporal_kernel_size < 1 or temporal_kernel_size % 2 == 0:
            raise ValueError(
                f"{owner}: temporal_kernel_size must be a positive odd integer, got {temporal_kernel_size}."
            )
        levels = len(channels)
        res_blocks = _per_level(owner, "num_res_blocks", num_res_blocks, levels)
        head_channels = _per_level(owner, "num_head_channels", num_head_channels, levels)
        for i, (ch, attn, hc) in enumerate(zip(channels, attention_levels, head_channels, strict=True)):
            if (attn or i == levels - 1) and ch % hc != 0:
                raise ValueError(
                    f"{owner}: num_head_channels ({hc}) must divide channels[{i}] ({ch}) at a level with attention."
                )
        if with_conditioning and (cross_attention_dim is None or cross_attention_dim <= 0):
            raise ValueError(
                f"{owner}: with_conditioning=True needs a positive cross_attention_dim, got {cross_attention_dim}."
            )
        if not with_conditioning and cross_attention_dim is not None:
            raise ValueError(
                f"{owner}: cross_attention_dim ({cross_attention_dim}) is only used with with_conditioning=True."
            )
        if num_class_embeds is not None and num_class_embeds < 1:
            raise ValueError(f"{owner}: num_class_embeds must be None or >= 1, got {num_class_embeds}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}.")
        return res_blocks, head_channels

    @property
    def use_checkpointing(self) -> bool:
        """Gradient checkpointing of every residual and attention block in training (set on every level module)."""
        return self._use_checkpointing

    @use_checkpointing.setter
    def use_checkpointing(self, value: bool) -> None:
        self._use_checkpointing = bool(value)
        for module in self.modules():
            if isinstance(module, (SpatioTemporalDownBlock, SpatioTemporalMidBlock, SpatioTemporalUpBlock)):
                module.use_checkpointing = self._use_checkpointing

    @property
    def spatial_divisor(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.block_channels) - 1)

    @property
    def down_block_residual_channels(self) -> tuple[int, ...]:
        """Channels of each skip connection, in order: ``conv_in``, every residual block, every downsampling.

        ``down_block_additional_residuals[i]`` is ``(B, down_block_residual_channels[i], T, H / 2**l, W / 2**l)``
        for a skip of level ``l`` (a level's downsampling output is at level ``l + 1``'s size); a ControlNet
        produces one residual per entry.
        """
        channels = [self.block_channels[0]]
        for i, (ch, n) in enumerate(zip(self.block_channels, self.num_res_blocks, strict=True)):
            channels += [ch] * (n + (i < len(self.block_channels) - 1))
        return tuple(channels)

    def _check_inputs(self, x: torch.Tensor, context: torch.Tensor | None, class_labels: torch.Tensor | None) -> None:
        owner = type(self).__name__
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{owner}: x must be (B, {self.in_channels}, T, H, W) (in_channels counts concatenated references), "
                f"got shape {tuple(x.shape)}."
            )
        d = self.spatial_divisor
        if x.shape[-2] % d or x.shape[-1] % d:
            raise ValueError(
                f"{owner}: spatial size (H, W) = {tuple(x.shape[-2:])} of input shape {tuple(x.shape)} must be "
                f"divisible by {d} (2 ** (levels - 1) for {len(self.block_channels)} levels), or the skip "
                "connections do not line up; pad the latent (e.g. 14x14 -> 16x16)."
            )
        if self.with_conditioning:
            if context is None or context.ndim != 3 or context.shape[-1] != self.cross_attention_dim:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"{owner}: with_conditioning=True needs context of shape (B, N, {self.cross_attention_dim}), "
                    f"got {got}."
                )
        elif context is not None:
            raise ValueError(f"{owner}: context given but the network has with_conditioning=False.")
        if self.class_embedding is not None and class_labels is None:
            raise ValueError(f"{owner}: num_class_embeds={self.num_class_embeds} needs class_labels (B,).")
        if self.class_embedding is None and class_labels is not None:
            raise ValueError(f"{owner}: class_labels given but the network has num_class_embeds=None.")

    def _apply_time_embedding(
        self, x: torch.Tensor, timesteps: torch.Tensor | float, class_labels: torch.Tensor | None
    ) -> torch.Tensor:
        """Steps 1 and 2: sinusoidal timestep embedding through ``time_embed``, plus the class embedding; (B, 4 C0)."""
        t = torch.as_tensor(timesteps, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: timesteps must be a scalar or ({x.shape[0]},), got shape {tuple(t.shape)}."
            )
        emb = self.time_embed(get_timestep_embedding(t, self.block_channels[0]).to(x.dtype))
        if self.class_embedding is not None and class_labels is not None:
            emb = emb + self.class_embedding(class_labels.reshape(-1).long()).to(emb.dtype)
        return emb

    def _apply_initial_convolution(self, x: torch.Tensor) -> torch.Tensor:
        """Step 3: ``(B, in_channels, T, H, W)`` -> ``(B, C0, T, H, W)``, a 3x3 convolution per frame."""
        return apply_per_frame(self.conv_in, x)

    def _apply_down_blocks(
        self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Step 4: the encoder; returns the deepest features and the skips (``conv_in`` output first)."""
        down_block_res_samples = [h]
        for down_block in self.down_blocks:
            h, res_samples = down_block(hidden_states=h, temb=emb, context=context)
            down_block_res_samples += res_samples
        return h, down_block_res_samples

    def _apply_mid_block(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Step 5: the middle block, ``(B, C_last, T, H_last, W_last)``."""
        return self.middle_block(hidden_states=h, temb=emb, context=context)


class SpatioTemporalUNet(_SpatioTemporalEncoder):
    """Latent video denoiser ``net(x, timesteps, context=None, class_labels=None)`` on ``x`` (B, C, T, H, W).

    An encoder/decoder UNet over ``H, W`` (frames are down- and up-sampled spatially, ``T`` is kept) whose levels
    are factorised (2+1)D residual blocks (a 2D convolution per frame, then a 1D convolution over frames per pixel,
    GroupNorm, sinusoidal timestep embedding added in every block) and, at ``attention_levels`` and in the middle,
    factorised attention (spatial self-attention per frame and temporal self-attention per pixel, each followed by
    cross-attention to ``context`` tokens). This is the architecture family of Stable Video Diffusion (Blattmann et
    al. 2023, arXiv:2311.15127), used for echocardiography by EchoNet-Synthetic (Reynaud et al., MICCAI 2024,
    arXiv:2406.00808) and EchoFlow (Reynaud et al. 2025, arXiv:2503.22357). It is assembled like MONAI's
    ``DiffusionModelUNet``: ``conv_in``, ``down_blocks`` (:class:`SpatioTemporalDownBlock`), ``middle_block``
    (:class:`SpatioTemporalMidBlock`), ``up_blocks`` (:class:`SpatioTemporalUpBlock`) and ``out``.

    **Initialisation.** Every temporal layer ends in a zero-initialised projection (the temporal convolution's second
    convolution, the temporal transformer's output projection), so at initialisation the network is exactly a
    per-frame image UNet: output frame ``t`` depends only on input frame ``t`` (plus the shared timestep, class and
    context). Training then learns the temporal mixing. As in MONAI's ``DiffusionModelUNet``, the spatial residual
    branches and the output convolution are zero-initialised too.

    **Conditioning.** Reference frames or latents are concatenated to ``x`` on channels by the caller
    (:class:`echo_monai.engines.Conditioning`), so ``in_channels`` counts them. ``context`` holds generic tokens
    ``(B, N, cross_attention_dim)`` (e.g. an ejection fraction as one token, motion features as many), shared by all
    frames; ``class_labels`` ``(B,)`` (e.g. the view) are embedded and added to the timestep embedding. A
    ``SpatioTemporalControlNet`` (Zhang & Agrawala 2023, arXiv:2302.05543) adds its residuals to the skips
    (``down_block_additional_residuals``, channels :attr:`down_block_residual_channels`) and to the middle block's
    output (``mid_block_additional_residual``), exactly as in MONAI's ``DiffusionModelUNet``.

    The spatial size must divide by ``2 ** (len(channels) - 1)``: pad a 14x14 latent to 16x16 as EchoNet-Synthetic
    does. Any number of frames works.

    Args:
        in_channels: input channels (noisy latent plus concatenated reference channels).
        out_channels: output channels (the latent's).
        channels: channels per level.
        attention_levels: per level, whether it has factorised attention (the middle block always has).
        num_res_blocks: residual blocks per level (int or one per level).
        num_head_channels: channels per attention head (int or one per level); must divide the level's channels.
        norm_num_groups: GroupNorm groups; must divide every entry of ``channels``.
        norm_eps: GroupNorm epsilon.
        with_conditioning: enable cross-attention to ``context`` (then ``cross_attention_dim`` is required).
        cross_attention_dim: token size of ``context``.
        num_class_embeds: number of classes for ``class_labels`` (include a "null" class for guidance); None: no
            class conditioning.
        temporal_kernel_size: kernel size of the temporal convolutions (odd).
        use_flash_attention: use PyTorch's fused scaled-dot-product attention (also fast on CPU).
        use_checkpointing: gradient checkpointing of every block in training (less memory, ~30% more time).
        dropout: attention and MLP dropout.

    Example:
        >>> net = SpatioTemporalUNet(8, 4, channels=(32, 64), attention_levels=(False, True), num_head_channels=16,
        ...                          norm_num_groups=8, with_conditioning=True, cross_attention_dim=1)
        >>> x = torch.cat([noisy_latents, reference_latents], dim=1)  # (2, 4 + 4, T=16, 16, 16)
        >>> velocity = net(x, torch.tensor([10.0, 500.0]), context=ejection_fraction.reshape(2, 1, 1) / 100)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (64, 128, 256, 256),
        attention_levels: Sequence[bool] = (False, True, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = 32,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        with_conditioning: bool = False,
        cross_attention_dim: int | None = None,
        num_class_embeds: int | None = None,
        temporal_kernel_size: int = 3,
        use_flash_attention: bool = True,
        use_checkpointing: bool = False,
        dropout: float = 0.0,
    ) -> None:
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"SpatioTemporalUNet: in_channels and out_channels must be positive, got {in_channels}, {out_channels}."
            )
        super().__init__(
            in_channels=in_channels,
            channels=channels,
            attention_levels=attention_levels,
            num_res_blocks=num_res_blocks,
            num_head_channels=num_head_channels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            with_conditioning=with_conditioning,
            cross_attention_dim=cross_attention_dim,
            num_class_embeds=num_class_embeds,
            temporal_kernel_size=temporal_kernel_size,
            use_flash_attention=use_flash_attention,
            use_checkpointing=use_checkpointing,
            dropout=dropout,
        )
        self.out_channels = out_channels
        # decoder, deepest level first: level i consumes num_res_blocks[i] + 1 skips (MONAI's channel convention)
        top = len(channels) - 1
        self.up_blocks = nn.ModuleList(
            SpatioTemporalUpBlock(
                channels[max(i - 1, 0)],
                channels[min(i + 1, top)],
                channels[i],
                num_res_blocks=self.num_res_blocks[i] + 1,
                add_upsample=i > 0,
                with_attn=self.attention_levels[i],
                num_head_channels=self.num_head_channels[i],
                use_checkpointing=use_checkpointing,
                **self._block_kwargs,
            )
            for i in reversed(range(len(channels)))
        )
        self.out = nn.Sequential(
            nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps),
            nn.SiLU(),
            zero_module(nn.Conv2d(channels[0], out_channels, 3, padding=1)),
        )

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | float,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the denoising target.

        Args:
            x: noisy video with concatenated references ``(B, in_channels, T, H, W)``.
            timesteps: ``(B,)`` or a scalar, int or float (e.g. RFlowScheduler's continuous times).
            context: tokens ``(B, N, cross_attention_dim)`` when ``with_conditioning``.
            class_labels: ``(B,)`` class indices when ``num_class_embeds`` is set.
            down_block_additional_residuals: one tensor per skip ``(B, C_i, T, H_i, W_i)``
                (``C_i = down_block_residual_channels[i]``), added to it (a ControlNet's output).
            mid_block_additional_residual: ``(B, channels[-1], T, H_last, W_last)``, added to the middle block's
                output.

        Returns:
            ``(B, out_channels, T, H, W)``.

        Raises:
            ValueError: on inputs of the wrong shape, missing or unexpected conditions, or residuals whose number or
                shapes do not match the skips.
        """
        self._check_inputs(x, context, class_labels)
        # 1. time and 2. class embedding
        emb = self._apply_time_embedding(x, timesteps, class_labels)
        # 3. initial convolution
        h = self._apply_initial_convolution(x)
        # 4. down, then the ControlNet residuals on the skips
        h, down_block_res_samples = self._apply_down_blocks(h, emb, context)
        if down_block_additional_residuals is not None:
            down_block_res_samples = self._add_down_residuals(down_block_res_samples, down_block_additional_residuals)
        # 5. mid, then the ControlNet residual
        h = self._apply_mid_block(h, emb, context)
        if mid_block_additional_residual is not None:
            h = self._add_mid_residual(h, mid_block_additional_residual)
        # 6. up
        h = self._apply_up_blocks(h, down_block_res_samples, emb, context)
        # 7. output block
        return apply_per_frame(self.out, h)

    def _add_down_residuals(
        self, down_block_res_samples: list[torch.Tensor], residuals: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        if len(residuals) != len(down_block_res_samples):
            raise ValueError(
                f"SpatioTemporalUNet: down_block_additional_residuals has {len(residuals)} tensors, expected "
                f"{len(down_block_res_samples)} (one per skip: conv_in, every residual block and every downsampling; "
                f"channels {self.down_block_residual_channels})."
            )
        for i, (sample, residual) in enumerate(zip(down_block_res_samples, residuals, strict=True)):
            if residual.shape != sample.shape:
                raise ValueError(
                    f"SpatioTemporalUNet: down_block_additional_residuals[{i}] must have the shape of skip {i}, "
                    f"{tuple(sample.shape)}, got {tuple(residual.shape)}."
                )
        return [sample + residual for sample, residual in zip(down_block_res_samples, residuals, strict=True)]

    def _add_mid_residual(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        if residual.shape != h.shape:
            raise ValueError(
                f"SpatioTemporalUNet: mid_block_additional_residual must have the middle block's output shape "
                f"{tuple(h.shape)}, got {tuple(residual.shape)}."
            )
        return h + residual

    def _apply_up_blocks(
        self,
        h: torch.Tensor,
        down_block_res_samples: list[torch.Tensor],
        emb: torch.Tensor,
        context: torch.Tensor | None,
    ) -> torch.Tensor:
        """Step 6: the decoder; each up block consumes the last ``len(up_block.resnets)`` skips."""
        for up_block in self.up_blocks:
            idx = -len(up_block.resnets)
            res_samples, down_block_res_samples = down_block_res_samples[idx:], down_block_res_samples[:idx]
            h = up_block(hidden_states=h, res_hidden_states_list=res_samples, temb=emb, context=context)
        return h
