"""Spatio-temporal ControlNet: the video counterpart of MONAI's ``ControlNet`` for :class:`SpatioTemporalUNet`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.controlnet import ControlNetConditioningEmbedding
from monai.networks.nets.diffusion_model_unet import zero_module
from monai.networks.utils import copy_model_state
from torch import nn
from torch.utils.checkpoint import checkpoint

from echo_monai.networks.blocks.spatiotemporal_resblock import apply_per_frame
from echo_monai.networks.nets.spatiotemporal_unet import SpatioTemporalUNet, _SpatioTemporalEncoder

__all__ = ["SpatioTemporalControlNet"]

_ENCODER_PREFIXES = ("conv_in.", "time_embed.", "class_embedding.", "down_blocks.", "middle_block.")


def _zero_conv(channels: int) -> nn.Module:
    """A zero-initialised 1x1x1 convolution: a 1x1 convolution of every frame of ``(B, C, T, H, W)``."""
    return zero_module(
        Convolution(
            spatial_dims=3,
            in_channels=channels,
            out_channels=channels,
            strides=1,
            kernel_size=1,
            padding=0,
            conv_only=True,
        )
    )


class SpatioTemporalControlNet(_SpatioTemporalEncoder):
    """Control network for :class:`SpatioTemporalUNet`: a trainable copy of the UNet's encoder that reads a control
    video and returns one residual per skip connection plus one for the middle block.

    Zhang & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023 (arXiv:2302.05543),
    for videos, as MONAI's ``monai.networks.nets.ControlNet`` for images: ``conv_in``, the timestep / class embedding,
    the down blocks and the middle block are those of a :class:`SpatioTemporalUNet` of the same arguments (copy a
    trained UNet's weights with :meth:`from_unet` or :meth:`copy_weights_from`). The control video
    ``(B, Cc, T, H_c, W_c)`` is encoded per frame by MONAI's ``ControlNetConditioningEmbedding`` (3x3 convolutions,
    one stride-2 step per entry of ``conditioning_embedding_num_channels`` after the first, zero-initialised last
    convolution) and added to the ``conv_in`` output; each skip and the middle block's output go through a
    zero-initialised 1x1 convolution. At initialisation every residual is therefore zero and the guided UNet is
    exactly the base UNet; training learns the control.

    ``H_c = H * 2 ** (len(conditioning_embedding_num_channels) - 1)``: with the default 4 entries, the control video
    (e.g. a label map) is at 8x the latent resolution, the image resolution of an 8x autoencoder. Pass one entry
    for a control video at the latent resolution.

    Args:
        in_channels: channels of ``x`` (the UNet's ``in_channels``).
        channels: channels per level (the UNet's).
        attention_levels: per level, whether it has factorised attention (the UNet's).
        num_res_blocks: residual blocks per level (the UNet's).
        num_head_channels: channels per attention head (the UNet's).
        norm_num_groups: GroupNorm groups (the UNet's).
        norm_eps: GroupNorm epsilon.
        with_conditioning: cross-attention to ``context`` (the UNet's).
        cross_attention_dim: token size of ``context``.
        num_class_embeds: number of classes for ``class_labels``; None: no class conditioning.
        temporal_kernel_size: kernel size of the temporal convolutions (odd).
        use_flash_attention: use PyTorch's fused scaled-dot-product attention.
        use_checkpointing: gradient checkpointing of every block and of the conditioning embedding in training.
        dropout: attention and MLP dropout.
        conditioning_embedding_in_channels: channels ``Cc`` of the control video.
        conditioning_embedding_num_channels: channels of the conditioning embedding's levels.

    Example:
        >>> controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_in_channels=3)
        >>> down, mid = controlnet(x, timesteps, controlnet_cond=label_maps)  # label maps (B, 3, T, 8 H, 8 W)
        >>> velocity = unet(x, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    """

    def __init__(
        self,
        in_channels: int,
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
        conditioning_embedding_in_channels: int = 1,
        conditioning_embedding_num_channels: Sequence[int] = (16, 32, 96, 256),
    ) -> None:
        if conditioning_embedding_in_channels <= 0:
            raise ValueError(
                "SpatioTemporalControlNet: conditioning_embedding_in_channels must be positive, "
                f"got {conditioning_embedding_in_channels}."
            )
        if len(conditioning_embedding_num_channels) == 0 or any(c <= 0 for c in conditioning_embedding_num_channels):
            raise ValueError(
                "SpatioTemporalControlNet: conditioning_embedding_num_channels must be a non-empty sequence of "
                f"positive ints, got {conditioning_embedding_num_channels}."
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
        self.conditioning_embedding_in_channels = conditioning_embedding_in_channels
        self.conditioning_downsampling = 2 ** (len(conditioning_embedding_num_channels) - 1)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            spatial_dims=2,
            in_channels=conditioning_embedding_in_channels,
            out_channels=channels[0],
            channels=conditioning_embedding_num_channels,
        )
        self.controlnet_down_blocks = nn.ModuleList(_zero_conv(c) for c in self.down_block_residual_channels)
        self.controlnet_mid_block = _zero_conv(channels[-1])

    @classmethod
    def from_unet(
        cls,
        unet: SpatioTemporalUNet,
        conditioning_embedding_in_channels: int = 1,
        conditioning_embedding_num_channels: Sequence[int] = (16, 32, 96, 256),
        copy_weights: bool = True,
    ) -> SpatioTemporalControlNet:
        """A ControlNet with ``unet``'s architecture, its encoder initialised from ``unet``'s weights.

        Args:
            unet: the (trained) base network the ControlNet will guide.
            conditioning_embedding_in_channels: channels ``Cc`` of the control video.
            conditioning_embedding_num_channels: channels of the conditioning embedding's levels.
            copy_weights: copy ``unet``'s ``conv_in``, embeddings, down blocks and middle block (as ControlNet
                training starts); False: random initialisation.

        Returns:
            the ControlNet, on ``unet``'s device and dtype.
        """
        controlnet = cls(
            **{**unet._encoder_config, "use_checkpointing": unet.use_checkpointing},
            conditioning_embedding_in_channels=conditioning_embedding_in_channels,
            conditioning_embedding_num_channels=conditioning_embedding_num_channels,
        )
        parameter = next(unet.parameters())
        controlnet = controlnet.to(device=parameter.device, dtype=parameter.dtype)
        if copy_weights:
            controlnet.copy_weights_from(unet)
        return controlnet

    def copy_weights_from(self, unet: SpatioTemporalUNet) -> list[str]:
        """Copy ``unet``'s ``conv_in``, time / class embedding, down blocks and middle block into this network.

        Returns:
            the names of the copied entries of the state dict.

        Raises:
            ValueError: when an encoder entry has no counterpart of the same name and shape in ``unet`` (it was
                built with other channels, levels or attention settings).
        """
        encoder_keys = [k for k in self.state_dict() if k.startswith(_ENCODER_PREFIXES)]
        _, copied, _ = copy_model_state(self, unet, inplace=True)  # the shared names: conv_in, ..., middle_block
        missing = sorted(set(encoder_keys) - set(copied))
        if missing:
            raise ValueError(
                f"SpatioTemporalControlNet: {len(missing)} encoder weights have no match of the same name and shape "
                f"in the {type(unet).__name__} (e.g. {missing[:3]}); build the ControlNet with the UNet's arguments "
                "(SpatioTemporalControlNet.from_unet)."
            )
        return list(copied)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | float,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The residuals for :class:`SpatioTemporalUNet`'s skips and middle block.

        Args:
            x: the UNet's input ``(B, in_channels, T, H, W)``.
            timesteps: ``(B,)`` or a scalar.
            controlnet_cond: the control video ``(B, Cc, T, H * s, W * s)``, ``s = conditioning_downsampling``.
            conditioning_scale: multiplier of every residual.
            context: tokens ``(B, N, cross_attention_dim)`` when ``with_conditioning``.
            class_labels: ``(B,)`` class indices when ``num_class_embeds`` is set.

        Returns:
            ``down_block_additional_residuals``, one ``(B, C_i, T, H_i, W_i)`` per skip
            (``C_i = down_block_residual_channels[i]``), and ``mid_block_additional_residual``
            ``(B, channels[-1], T, H_last, W_last)``.
        """
        self._check_inputs(x, context, class_labels)
        self._check_control(x, controlnet_cond)
        # 1. time and 2. class embedding
        emb = self._apply_time_embedding(x, timesteps, class_labels)
        # 3. initial convolution plus the embedded control video
        h = self._apply_initial_convolution(x) + self._apply_conditioning_embedding(controlnet_cond)
        # 4. down
        h, down_block_res_samples = self._apply_down_blocks(h, emb, context)
        # 5. mid
        h = self._apply_mid_block(h, emb, context)
        # 6. zero convolutions and 7. scaling
        down_residuals = [
            conv(sample) * conditioning_scale
            for conv, sample in zip(self.controlnet_down_blocks, down_block_res_samples, strict=True)
        ]
        return down_residuals, self.controlnet_mid_block(h) * conditioning_scale

    def _check_control(self, x: torch.Tensor, controlnet_cond: torch.Tensor) -> None:
        s = self.conditioning_downsampling
        b, _, t, h, w = x.shape
        expected = (b, self.conditioning_embedding_in_channels, t, h * s, w * s)
        if tuple(controlnet_cond.shape) != expected:
            raise ValueError(
                f"SpatioTemporalControlNet: controlnet_cond must have shape {expected} (B, Cc, T, H * {s}, W * {s}) "
                f"for x of shape {tuple(x.shape)}, got {tuple(controlnet_cond.shape)}."
            )

    def _apply_conditioning_embedding(self, controlnet_cond: torch.Tensor) -> torch.Tensor:
        """``(B, Cc, T, H * s, W * s)`` -> ``(B, channels[0], T, H, W)``, per frame."""
        if self.use_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(apply_per_frame, self.controlnet_cond_embedding, controlnet_cond, use_reentrant=False)
        return apply_per_frame(self.controlnet_cond_embedding, controlnet_cond)
