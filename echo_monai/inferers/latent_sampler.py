"""Latent sampling: encode the reference images, call the pixel :class:`Sampler` in latent space, decode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from echo_monai.engines.conditioning import Condition
from echo_monai.inferers.sampler import Sampler

__all__ = ["LatentSampler", "LatentScaler", "framewise"]


def framewise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Apply a 2D image function to a video ``(B, C, T, H, W)`` frame by frame (images pass straight through).

    Args:
        fn: maps ``(N, C, H, W)`` to ``(N, C', H', W')``.
        x: image ``(B, C, H, W)`` or video ``(B, C, T, H, W)``.
        chunk: frames per call, to bound memory; None for all at once.
    """
    if x.ndim == 4:
        return fn(x)
    if x.ndim != 5:
        raise ValueError(f"framewise: expected (B, C, H, W) or (B, C, T, H, W), got shape {tuple(x.shape)}.")
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    step = chunk or frames.shape[0]
    out = torch.cat([fn(frames[i : i + step]) for i in range(0, frames.shape[0], step)], dim=0)
    return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)


class LatentScaler:
    """Normalise autoencoder latents per channel: ``z_model = (z - shift) * scale`` and back.

    Args:
        scale: scalar or per-channel factor (Rombach et al. 2022 use ``1 / std(z)``).
        shift: scalar or per-channel mean to subtract.
    """

    def __init__(self, scale: float | Sequence[float] = 1.0, shift: float | Sequence[float] = 0.0) -> None:
        self.scale = torch.as_tensor(scale, dtype=torch.float32)
        self.shift = torch.as_tensor(shift, dtype=torch.float32)
        if torch.any(self.scale == 0):
            raise ValueError(f"LatentScaler: scale must be non-zero, got {scale}.")

    def _shape(self, value: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        value = value.to(z.device, z.dtype)
        return value.reshape(1, -1, *([1] * (z.ndim - 2))) if value.ndim == 1 else value

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._shape(self.shift, z)) * self._shape(self.scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z / self._shape(self.scale, z) + self._shape(self.shift, z)


class LatentSampler(Inferer):
    """Wrap a :class:`Sampler` for a latent model: encode references → sample latents → decode.

    Args:
        sampler: the pixel-space sampler, used unchanged on latents; its ``clip_range`` applies to decoded pixels.
        autoencoder: a MONAI ``AutoencoderKL`` (or anything with ``encode_stage_2_inputs``/``decode_stage_2_outputs``,
            or ``encode``/``decode``); 2D autoencoders run frame by frame on videos.
        scaler: latent normalisation shared with the training latent cache.
        encode_concat: encode the concatenated reference images of the condition (pixels in) before sampling; False
            when they are already latents.
        decode: decode the sample; False returns the latent.
        frame_chunk: frames per autoencoder call for videos.

    Example:
        >>> latent_sampler = LatentSampler(Sampler(RFlowScheduler(1000), 25), autoencoder, LatentScaler(0.18))
        >>> video = latent_sampler(torch.randn(1, 4, 16, 28, 28), denoiser, condition=Condition(concat=[frame0]))
    """

    def __init__(
        self,
        sampler: Sampler,
        autoencoder: torch.nn.Module,
        scaler: LatentScaler | None = None,
        encode_concat: bool = True,
        decode: bool = True,
        frame_chunk: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(sampler, Sampler):
            raise TypeError(f"LatentSampler: sampler must be an echo_monai Sampler, got {type(sampler).__name__}.")
        self.sampler = sampler
        self.autoencoder = autoencoder
        self.scaler = scaler if scaler is not None else LatentScaler()
        self.encode_concat = encode_concat
        self.decode_output = decode
        self.frame_chunk = frame_chunk

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, C, [T,] H, W)`` in [-1, 1] → normalised latents (the posterior mean, deterministic)."""
        encoder = getattr(self.autoencoder, "encode", None)
        if encoder is None:
            raise TypeError(f"LatentSampler: {type(self.autoencoder).__name__} has no encode().")

        def _mean(x: torch.Tensor) -> torch.Tensor:
            out = encoder(x)
            return out[0] if isinstance(out, (tuple, list)) else out

        return self.scaler.normalize(framewise(_mean, images, self.frame_chunk))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents → pixels."""
        decoder = getattr(self.autoencoder, "decode_stage_2_outputs", None) or self.autoencoder.decode
        return framewise(decoder, self.scaler.denormalize(latents), self.frame_chunk)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Sample latents from the latent noise ``inputs`` and decode them."""
        condition = condition if condition is not None else Condition()
        if self.encode_concat and condition.concat:
            condition = Condition(kwargs=condition.kwargs, concat=[self.encode(c) for c in condition.concat])
        latents = self.sampler(inputs, network, condition=condition, generator=generator, clip=False, **kwargs)
        if not self.decode_output:
            return latents
        images = self.decode(latents)
        return images.clamp(*self.sampler.clip_range) if self.sampler.clip_range is not None else images
