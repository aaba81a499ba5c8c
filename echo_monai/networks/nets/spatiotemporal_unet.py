"""Spatio-temporal UNet: a latent video denoiser with factorised (2+1)D convolutions and attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.diffusion_model_unet import DiffusionUnetDownsample, get_timestep_embedding, zero_module
from torch import nn
from torch.utils.checkpoint import checkpoint

from echo_monai.networks.blocks.factorised_attention import FactorisedAttentionBlock
from echo_monai.networks.blocks.spatiotemporal_resblock import SpatioTemporalResBlock, apply_per_frame

__all__ = ["SpatioTemporalUNet"]


def _per_level(name: str, value: int | Sequence[int], levels: int) -> tuple[int, ...]:
    values = (int(value),) * levels if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != levels:
        raise ValueError(
            f"SpatioTemporalUNet: {name} must be an int or have one entry per level ({levels}), got {value}."
        )
    if any(v <= 0 for v in values):
        raise ValueError(f"SpatioTemporalUNet: {name} must be positive, got {value}.")
    return values


class _Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling of a frame followed by a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class SpatioTemporalUNet(nn.Module):
    """Latent video denoiser ``net(x, timesteps, context=None, class_labels=None)`` on ``x`` (B, C, T, H, W).

    An encoder/decoder UNet over ``H, W`` (frames are down- and up-sampled spatially, ``T`` is kept) whose levels
    are factorised (2+1)D residual blocks (a 2D convolution per frame, then a 1D convolution over frames per pixel,
    GroupNorm, sinusoidal timestep embedding added in every block) and, at ``attention_levels`` and in the middle,
    factorised attention (spatial self-attention per frame and temporal self-attention per pixel, each followed by
    cross-attention to ``context`` tokens). This is the architecture family of Stable Video Diffusion (Blattmann et
    al. 2023, arXiv:2311.15127), used for echocardiography by EchoNet-Synthetic (Reynaud et al., MICCAI 2024,
    arXiv:2406.00808) and EchoFlow (Reynaud et al. 2025, arXiv:2503.22357).

    **Initialisation.** Every temporal layer ends in a zero-initialised projection (the temporal convolution's second
    convolution, the temporal transformer's output projection), so at initialisation the network is exactly a
    per-frame image UNet: output frame ``t`` depends only on input frame ``t`` (plus the shared timestep, class and
    context). Training then learns the temporal mixing. As in MONAI's ``DiffusionModelUNet``, the spatial residual
    branches and the output convolution are zero-initialised too.

    **Conditioning.** Reference frames or latents are concatenated to ``x`` on channels by the caller
    (:class:`echo_monai.engines.Conditioning`), so ``in_channels`` counts them. ``context`` holds generic tokens
    ``(B, N, cross_attention_dim)`` (e.g. an ejection fraction as one token, motion features as many), shared by all
    frames; ``class_labels`` ``(B,)`` (e.g. the view) are embedded and added to the timestep embedding.

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
        super().__init__()
        self._validate(in_channels, out_channels, channels, attention_levels, norm_num_groups, temporal_kernel_size)
        levels = len(channels)
        res_blocks = _per_level("num_res_blocks", num_res_blocks, levels)
        head_channels = _per_level("num_head_channels", num_head_channels, levels)
        for i, (ch, attn, hc) in enumerate(zip(channels, attention_levels, head_channels, strict=True)):
            if (attn or i == levels - 1) and ch % hc != 0:
                raise ValueError(
                    f"SpatioTemporalUNet: num_head_channels ({hc}) must divide channels[{i}] ({ch}) at a level "
                    "with attention."
                )
        if with_conditioning and (cross_attention_dim is None or cross_attention_dim <= 0):
            raise ValueError(
                f"SpatioTemporalUNet: with_conditioning=True needs a positive cross_attention_dim, "
                f"got {cross_attention_dim}."
            )
        if not with_conditioning and cross_attention_dim is not None:
            raise ValueError(
                f"SpatioTemporalUNet: cross_attention_dim ({cross_attention_dim}) is only used with "
                "with_conditioning=True."
            )
        if num_class_embeds is not None and num_class_embeds < 1:
            raise ValueError(f"SpatioTemporalUNet: num_class_embeds must be None or >= 1, got {num_class_embeds}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SpatioTemporalUNet: dropout must be in [0, 1), got {dropout}.")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.block_channels = tuple(channels)
        self.attention_levels = tuple(bool(a) for a in attention_levels)
        self.with_conditioning = with_conditioning
        self.cross_attention_dim = cross_attention_dim
        self.num_class_embeds = num_class_embeds
        self.use_checkpointing = use_checkpointing
        temb = channels[0] * 4
        norm = {"norm_num_groups": norm_num_groups, "norm_eps": norm_eps}

        def res(c_in: int, c_out: int) -> SpatioTemporalResBlock:
            return SpatioTemporalResBlock(c_in, c_out, temb, temporal_kernel_size=temporal_kernel_size, **norm)

        def attn(c: int, hc: int) -> FactorisedAttentionBlock:
            return FactorisedAttentionBlock(
                c, hc, cross_attention_dim=cross_attention_dim, use_flash_attention=use_flash_attention,
                dropout=dropout, **norm,
            )  # fmt: skip

        self.time_embed = nn.Sequential(nn.Linear(channels[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.class_embedding = nn.Embedding(num_class_embeds, temb) if num_class_embeds is not None else None
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)

        # encoder: skip_channels records the channels of every tensor pushed on the skip stack
        skip_channels = [channels[0]]
        self.down_res, self.down_attn, self.downsamplers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c_prev = channels[0]
        for i, ch in enumerate(channels):
            self.down_res.append(nn.ModuleList([res(c_prev if j == 0 else ch, ch) for j in range(res_blocks[i])]))
            use_attn = self.attention_levels[i]
            self.down_attn.append(
                nn.ModuleList([attn(ch, head_channels[i]) if use_attn else nn.Identity() for _ in range(res_blocks[i])])
            )
            skip_channels += [ch] * res_blocks[i]
            last = i == levels - 1
            self.downsamplers.append(nn.Identity() if last else DiffusionUnetDownsample(2, ch, use_conv=True))
            if not last:
                skip_channels.append(ch)
            c_prev = ch

        self.mid_res1 = res(channels[-1], channels[-1])
        self.mid_attn = attn(channels[-1], head_channels[-1])
        self.mid_res2 = res(channels[-1], channels[-1])

        # decoder: level i (deepest first) consumes num_res_blocks[i] + 1 skips
        self.up_res, self.up_attn, self.upsamplers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels)):
            ch = channels[i]
            blocks = []
            for _ in range(res_blocks[i] + 1):
                blocks.append(res(c_prev + skip_channels.pop(), ch))
                c_prev = ch
            self.up_res.append(nn.ModuleList(blocks))
            use_attn = self.attention_levels[i]
            self.up_attn.append(
                nn.ModuleList([attn(ch, head_channels[i]) if use_attn else nn.Identity() for _ in blocks])
            )
            self.upsamplers.append(_Upsample(ch) if i > 0 else nn.Identity())

        self.out = nn.Sequential(
            nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps),
            nn.SiLU(),
            zero_module(nn.Conv2d(channels[0], out_channels, 3, padding=1)),
        )

    @staticmethod
    def _validate(
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        attention_levels: Sequence[bool],
        norm_num_groups: int,
        temporal_kernel_size: int,
    ) -> None:
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"SpatioTemporalUNet: in_channels and out_channels must be positive, got {in_channels}, {out_channels}."
            )
        if len(channels) == 0 or any(int(c) <= 0 for c in channels):
            raise ValueError(
                f"SpatioTemporalUNet: channels must be a non-empty sequence of positive ints, got {channels}."
            )
        if len(attention_levels) != len(channels):
            raise ValueError(
                f"SpatioTemporalUNet: attention_levels ({len(attention_levels)} entries) must have one entry per "
                f"level of channels ({len(channels)})."
            )
        if norm_num_groups <= 0 or any(int(c) % norm_num_groups != 0 for c in channels):
            raise ValueError(
                f"SpatioTemporalUNet: norm_num_groups ({norm_num_groups}) must divide every entry of channels "
                f"{tuple(channels)}."
            )
        if temporal_kernel_size < 1 or temporal_kernel_size % 2 == 0:
            raise ValueError(
                f"SpatioTemporalUNet: temporal_kernel_size must be a positive odd integer, got {temporal_kernel_size}."
            )

    @property
    def spatial_divisor(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.block_channels) - 1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | float,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the denoising target.

        Args:
            x: noisy video with concatenated references ``(B, in_channels, T, H, W)``.
            timesteps: ``(B,)`` or a scalar, int or float (e.g. RFlowScheduler's continuous times).
            context: tokens ``(B, N, cross_attention_dim)`` when ``with_conditioning``.
            class_labels: ``(B,)`` class indices when ``num_class_embeds`` is set.

        Returns:
            ``(B, out_channels, T, H, W)``.
        """
        self._check_inputs(x, context, class_labels)
        emb = self._apply_time_embedding(x, timesteps, class_labels)
        h = apply_per_frame(self.conv_in, x)
        skips = [h]
        for res_blocks, attn_blocks, down in zip(self.down_res, self.down_attn, self.downsamplers, strict=True):
            for res, attn in zip(res_blocks, attn_blocks, strict=True):
                h = self._apply_block(attn, self._apply_block(res, h, emb), context)
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = apply_per_frame(down, h)
                skips.append(h)
        h = self._apply_block(self.mid_res1, h, emb)
        h = self._apply_block(self.mid_attn, h, context)
        h = self._apply_block(self.mid_res2, h, emb)
        for res_blocks, attn_blocks, up in zip(self.up_res, self.up_attn, self.upsamplers, strict=True):
            for res, attn in zip(res_blocks, attn_blocks, strict=True):
                h = self._apply_block(res, torch.cat([h, skips.pop()], dim=1), emb)
                h = self._apply_block(attn, h, context)
            if not isinstance(up, nn.Identity):
                h = apply_per_frame(up, h)
        return apply_per_frame(self.out, h)

    def _check_inputs(self, x: torch.Tensor, context: torch.Tensor | None, class_labels: torch.Tensor | None) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpatioTemporalUNet: x must be (B, {self.in_channels}, T, H, W) (in_channels counts concatenated "
                f"references), got shape {tuple(x.shape)}."
            )
        d = self.spatial_divisor
        if x.shape[-2] % d or x.shape[-1] % d:
            raise ValueError(
                f"SpatioTemporalUNet: spatial size (H, W) = {tuple(x.shape[-2:])} of input shape {tuple(x.shape)} "
                f"must be divisible by {d} (2 ** (levels - 1) for {len(self.block_channels)} levels), or the skip "
                "connections do not line up; pad the latent (e.g. 14x14 -> 16x16)."
            )
        if self.with_conditioning:
            if context is None or context.ndim != 3 or context.shape[-1] != self.cross_attention_dim:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"SpatioTemporalUNet: with_conditioning=True needs context of shape (B, N, "
                    f"{self.cross_attention_dim}), got {got}."
                )
        elif context is not None:
            raise ValueError("SpatioTemporalUNet: context given but the network has with_conditioning=False.")
        if self.class_embedding is not None and class_labels is None:
            raise ValueError(f"SpatioTemporalUNet: num_class_embeds={self.num_class_embeds} needs class_labels (B,).")
        if self.class_embedding is None and class_labels is not None:
            raise ValueError("SpatioTemporalUNet: class_labels given but the network has num_class_embeds=None.")

    def _apply_time_embedding(
        self, x: torch.Tensor, timesteps: torch.Tensor | float, class_labels: torch.Tensor | None
    ) -> torch.Tensor:
        t = torch.as_tensor(timesteps, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"SpatioTemporalUNet: timesteps must be a scalar or ({x.shape[0]},), got shape {tuple(t.shape)}."
            )
        emb = self.time_embed(get_timestep_embedding(t, self.block_channels[0]).to(x.dtype))
        if self.class_embedding is not None and class_labels is not None:
            emb = emb + self.class_embedding(class_labels.reshape(-1).long()).to(emb.dtype)
        return emb

    def _apply_block(self, block: nn.Module, h: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if isinstance(block, nn.Identity):
            return h
        if self.use_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, extra, use_reentrant=False)
        return block(h, extra)
