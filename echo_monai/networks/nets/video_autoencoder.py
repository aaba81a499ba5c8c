"""LDDM's video autoencoder: a compact "dynamics" latent, decoded together with the first frame.

Chen et al., "Ultrasound Image-to-Video Synthesis via Latent Dynamic Diffusion Models", MICCAI 2024
(arXiv:2503.14966). A clip ``x`` is encoded into a small latent ``z``; the decoder reconstructs the clip from ``z``
*and* its first frame ``x_0``, so the latent only has to carry the motion and the diffusion model of the second stage
generates dynamics given an image. Shapes, with ``L = len(channels)`` and ``f = 2 ** (L - 1)``::

    x        (B, C, T, H, W)            video in
    z        (B, latent_channels, T/f, H/f, W/f)    MONAI 3D Encoder (over T, H, W) + quant convs -> (z_mu, z_sigma)
    x_0      (B, C, H, W)               first frame, x[:, :, 0]
    e_0      (B, F, H/f, W/f)           MONAI 2D Encoder of x_0 (same levels, so the same grid as z)
    decoder  cat([post_quant_conv(z), e_0 repeated over T/f], channels) -> MONAI 3D Decoder -> (B, C_out, T, H, W)
    residual_first_frame=True: x_hat = x_0 repeated over T + decoder output (the decoder predicts x - x_0)
    exact_first_frame=True:    x_hat[:, :, 0] = x_0 (the first frame is reproduced exactly, by construction)

The paper propagates the first frame into the decoder at several scales (AdaIN); here it enters once, concatenated
at the latent grid, so MONAI's ``Encoder``/``Decoder`` are reused unchanged; ``residual_first_frame`` carries the
first frame's full-resolution detail. With ``exact_first_frame`` the reconstruction's first frame *is* the
conditioning frame (by construction, not by a loss term), so an animated image starts from the image itself and the
reconstruction loss is spent on the motion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.autoencoderkl import Decoder, Encoder
from torch import nn
from torch.utils.checkpoint import checkpoint

from echo_monai.data.latent_autoencoder import LatentAutoencoder

__all__ = ["FirstFrameVideoAutoencoder"]


def _conv1x1(spatial_dims: int, in_channels: int, out_channels: int) -> Convolution:
    return Convolution(spatial_dims, in_channels, out_channels, strides=1, kernel_size=1, padding=0, conv_only=True)


class FirstFrameVideoAutoencoder(LatentAutoencoder):
    """KL video autoencoder whose decoder is conditioned on the first frame (Chen et al., MICCAI 2024, LDDM).

    MONAI's ``Encoder``/``Decoder`` downsample every spatial dimension of their input by 2 per level after the
    first, so with ``f = 2 ** (len(channels) - 1)`` a video ``(B, C, T, H, W)`` (T, H, W divisible by ``f``) has the
    latent ``(B, latent_channels, T/f, H/f, W/f)`` (see :meth:`latent_shape`). ``decoder_condition(x)`` is
    ``{"first_frame": x[:, :, 0]}``.

    Args:
        in_channels: channels of the video (1 for B-mode).
        out_channels: channels of the reconstruction; None for ``in_channels``.
        channels: block widths per level of the 3D encoder/decoder; ``len(channels) - 1`` halvings of T, H and W.
        num_res_blocks: residual blocks per level (an int for every level).
        attention_levels: self-attention per level; None for none (3D attention over T*H*W tokens is costly).
        latent_channels: channels of the dynamics latent ``z``.
        first_frame_channels: block widths of the 2D first-frame encoder; None for ``channels``. Must have as many
            levels as ``channels`` so that its features land on the latent grid.
        first_frame_features: channels of the first-frame features concatenated to the latent; None for
            ``latent_channels``.
        norm_num_groups: GroupNorm groups; must divide every entry of ``channels`` and ``first_frame_channels``.
        norm_eps: GroupNorm epsilon.
        with_encoder_nonlocal_attn: add MONAI's non-local attention block at the bottom of both encoders.
        with_decoder_nonlocal_attn: add it at the top of the decoder.
        residual_first_frame: the decoder predicts the difference to the first frame repeated over time (needs
            ``out_channels == in_channels``).
        exact_first_frame: replace the decoded first frame by the conditioning frame, so frame 0 of every
            reconstruction and every generated video is the given image exactly (needs
            ``out_channels == in_channels``).
        use_flash_attention: use PyTorch's scaled-dot-product attention in the attention blocks.
        use_checkpoint: activation checkpointing of the encoder and decoder, to save memory.

    Example:
        >>> ae = FirstFrameVideoAutoencoder(in_channels=1, channels=(8, 16), latent_channels=4, norm_num_groups=8)
        >>> z = ae.encode(video)                                   # (B, 1, 8, 32, 32) -> (B, 4, 4, 16, 16)
        >>> recon = ae.decode(z, first_frame=video[:, :, 0])       # (B, 1, 8, 32, 32)
    """

    decoder_condition_keys: tuple[str, ...] = ("first_frame",)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        channels: Sequence[int] = (32, 64, 128),
        num_res_blocks: Sequence[int] | int = 2,
        attention_levels: Sequence[bool] | None = None,
        latent_channels: int = 4,
        first_frame_channels: Sequence[int] | None = None,
        first_frame_features: int | None = None,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        with_encoder_nonlocal_attn: bool = False,
        with_decoder_nonlocal_attn: bool = False,
        residual_first_frame: bool = False,
        exact_first_frame: bool = False,
        use_flash_attention: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        name = "FirstFrameVideoAutoencoder"
        out_channels = in_channels if out_channels is None else out_channels
        channels = tuple(channels)
        first_frame_channels = channels if first_frame_channels is None else tuple(first_frame_channels)
        first_frame_features = latent_channels if first_frame_features is None else first_frame_features
        for arg, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("latent_channels", latent_channels),
            ("first_frame_features", first_frame_features),
            ("norm_num_groups", norm_num_groups),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}.")
        if not channels:
            raise ValueError(f"{name}: channels must list at least one level, got {channels}.")
        if len(first_frame_channels) != len(channels):
            raise ValueError(
                f"{name}: first_frame_channels {list(first_frame_channels)} must have as many levels as channels "
                f"{list(channels)} (len {len(channels)}), so the first-frame features match the latent grid."
            )
        if any(c % norm_num_groups for c in (*channels, *first_frame_channels)):
            raise ValueError(
                f"{name}: norm_num_groups {norm_num_groups} must divide every entry of channels {list(channels)} "
                f"and first_frame_channels {list(first_frame_channels)}."
            )
        attention_levels = (False,) * len(channels) if attention_levels is None else tuple(attention_levels)
        if len(attention_levels) != len(channels):
            raise ValueError(
                f"{name}: attention_levels {list(attention_levels)} must have one entry per level of channels "
                f"{list(channels)}."
            )
        num_res_blocks = (num_res_blocks,) * len(channels) if isinstance(num_res_blocks, int) else tuple(num_res_blocks)
        if len(num_res_blocks) != len(channels) or any(n < 1 for n in num_res_blocks):
            raise ValueError(
                f"{name}: num_res_blocks must be a positive int or one positive int per level of channels "
                f"{list(channels)}, got {num_res_blocks}."
            )
        for arg, value in (("residual_first_frame", residual_first_frame), ("exact_first_frame", exact_first_frame)):
            if value and out_channels != in_channels:
                raise ValueError(
                    f"{name}: {arg}=True needs out_channels == in_channels, got out_channels {out_channels} and "
                    f"in_channels {in_channels}."
                )

        common = {
            "num_res_blocks": num_res_blocks,
            "norm_num_groups": norm_num_groups,
            "norm_eps": norm_eps,
            "attention_levels": attention_levels,
            "use_flash_attention": use_flash_attention,
        }
        self.encoder = Encoder(
            spatial_dims=3,
            in_channels=in_channels,
            channels=channels,
            out_channels=latent_channels,
            with_nonlocal_attn=with_encoder_nonlocal_attn,
            **common,
        )
        self.quant_conv_mu = _conv1x1(3, latent_channels, latent_channels)
        self.quant_conv_log_sigma = _conv1x1(3, latent_channels, latent_channels)
        self.post_quant_conv = _conv1x1(3, latent_channels, latent_channels)
        self.first_frame_encoder = Encoder(
            spatial_dims=2,
            in_channels=in_channels,
            channels=first_frame_channels,
            out_channels=first_frame_features,
            with_nonlocal_attn=with_encoder_nonlocal_attn,
            **common,
        )
        self.decoder = Decoder(
            spatial_dims=3,
            channels=channels,
            in_channels=latent_channels + first_frame_features,
            out_channels=out_channels,
            with_nonlocal_attn=with_decoder_nonlocal_attn,
            **common,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.latent_channels = latent_channels
        self.first_frame_features = first_frame_features
        self.downsample_factor = 2 ** (len(channels) - 1)
        self.residual_first_frame = bool(residual_first_frame)
        self.exact_first_frame = bool(exact_first_frame)
        self.use_checkpoint = bool(use_checkpoint)

    def latent_shape(self, video_shape: Sequence[int]) -> tuple[int, int, int, int, int]:
        """The latent shape of a video shape, checking that T, H and W divide by the downsampling factor.

        Args:
            video_shape: ``(B, C, T, H, W)``.

        Returns:
            ``(B, latent_channels, T/f, H/f, W/f)`` with ``f = 2 ** (len(channels) - 1)``.
        """
        shape = tuple(int(s) for s in video_shape)
        f = self.downsample_factor
        if len(shape) != 5 or shape[1] != self.in_channels:
            raise ValueError(
                f"FirstFrameVideoAutoencoder: expected a video (B, {self.in_channels}, T, H, W), got shape {shape}."
            )
        if any(s % f for s in shape[2:]):
            raise ValueError(
                f"FirstFrameVideoAutoencoder: T, H and W of the video shape {shape} must be divisible by the "
                f"downsampling factor {f} (2 ** (len(channels) - 1))."
            )
        b, _, t, h, w = shape
        return b, self.latent_channels, t // f, h // f, w // f

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(module, x, use_reentrant=False) if self.use_checkpoint else module(x)

    def encode_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian posterior of a video, as MONAI's ``AutoencoderKL.encode``: log-variance clamped to [-30, 20].

        Args:
            x: video ``(B, C, T, H, W)``, T, H, W divisible by ``downsample_factor``.

        Returns:
            ``(z_mu, z_sigma)``, each ``(B, latent_channels, T/f, H/f, W/f)``.
        """
        self.latent_shape(x.shape)
        h = self._run(self.encoder, x)
        z_mu = self.quant_conv_mu(h)
        z_log_var = torch.clamp(self.quant_conv_log_sigma(h), -30.0, 20.0)
        return z_mu, torch.exp(z_log_var / 2)

    def decoder_condition(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The first frame of a video.

        Args:
            x: video ``(B, C, T, H, W)``.

        Returns:
            ``{"first_frame": x[:, :, 0]}``, the frame ``(B, C, H, W)``.
        """
        if x.ndim != 5:
            raise ValueError(
                f"FirstFrameVideoAutoencoder: expected a video (B, C, T, H, W) to take the first frame from, got "
                f"shape {tuple(x.shape)}."
            )
        return {"first_frame": x[:, :, 0]}

    def _check_first_frame(self, z: torch.Tensor, first_frame: torch.Tensor | None) -> torch.Tensor:
        if first_frame is None:
            raise ValueError(
                "FirstFrameVideoAutoencoder: decode needs the decoder condition 'first_frame' (B, C, H, W), e.g. "
                "decode(z, **autoencoder.decoder_condition(video)) or decode(z, first_frame=video[:, :, 0])."
            )
        f = self.downsample_factor
        expected = (z.shape[0], self.in_channels, z.shape[3] * f, z.shape[4] * f)
        if tuple(first_frame.shape) != expected:
            raise ValueError(
                f"FirstFrameVideoAutoencoder: first_frame must have shape (B, C, H, W) = {expected} for a latent of "
                f"shape {tuple(z.shape)}, got {tuple(first_frame.shape)}."
            )
        return first_frame

    def decode(  # type: ignore[override]
        self, z: torch.Tensor, first_frame: torch.Tensor | None = None, **condition: torch.Tensor
    ) -> torch.Tensor:
        """Reconstruct a video from its dynamics latent and its first frame.

        Args:
            z: latent ``(B, latent_channels, t, h, w)``.
            first_frame: the first frame ``(B, C, h*f, w*f)``; required.
            condition: must be empty (the only decoder condition is ``first_frame``).

        Returns:
            video ``(B, out_channels, t*f, h*f, w*f)``.
        """
        if condition:
            raise ValueError(
                f"FirstFrameVideoAutoencoder: unexpected decoder conditions {sorted(condition)}; expected only "
                f"{list(self.decoder_condition_keys)}."
            )
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"FirstFrameVideoAutoencoder: expected a latent (B, {self.latent_channels}, t, h, w), got shape "
                f"{tuple(z.shape)}."
            )
        first_frame = self._check_first_frame(z, first_frame).to(z.dtype)
        features = self._run(self.first_frame_encoder, first_frame)  # (B, F, h, w)
        features = features.unsqueeze(2).expand(-1, -1, z.shape[2], -1, -1)  # (B, F, t, h, w)
        video = self._run(self.decoder, torch.cat([self.post_quant_conv(z), features], dim=1))
        if self.residual_first_frame:
            video = video + first_frame.unsqueeze(2)  # broadcast over T
        if self.exact_first_frame:
            video = torch.cat([first_frame.unsqueeze(2).to(video.dtype), video[:, :, 1:]], dim=2)
        return video
