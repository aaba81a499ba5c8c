"""Latent sampling: encode the reference images, call the pixel :class:`Sampler` in latent space, decode.

The autoencoder is met through :class:`echo_monai.data.LatentAutoencoder` (``encode(x) -> z``,
``decode(z, **condition)``): a MONAI 2D ``AutoencoderKL`` is applied frame by frame to videos
(:class:`echo_monai.data.FramewiseAutoencoder`), a video autoencoder whose decoder needs the first frame gets it as a
decoder condition.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.inferers import Inferer

from echo_monai.data.latent_autoencoder import as_latent_autoencoder
from echo_monai.data.latent_cache import LatentCacheDataset
from echo_monai.data.latents import LatentScaler
from echo_monai.engines.conditioning import Condition
from echo_monai.inferers.sampler import Sampler

__all__ = ["LatentSampler"]


class LatentSampler(Inferer):
    """Wrap a :class:`Sampler` for a latent model: encode references → sample latents → decode.

    Args:
        sampler: the pixel-space sampler, used unchanged on latents; its ``clip_range`` applies to decoded pixels.
        autoencoder: a :class:`echo_monai.data.LatentAutoencoder`, or a MONAI ``AutoencoderKL`` (anything with
            MONAI's ``encode``/``decode``), which runs frame by frame on videos.
        scaler: latent normalisation shared with the training latent cache, or the path of that cache (its
            ``latent_stats.json`` is read at first use, so a config can build the sampler before the cache exists).
        encode_concat: encode the concatenated reference images of the condition (pixels in) before sampling; False
            when they are already latents.
        decode: decode the sample; False returns the latent.
        frame_chunk: frames per autoencoder call for videos (a wrapped 2D autoencoder).

    Example:
        >>> latent_sampler = LatentSampler(Sampler(RFlowScheduler(1000), 25), autoencoder, LatentScaler(0.18))
        >>> video = latent_sampler(torch.randn(1, 4, 16, 28, 28), denoiser, condition=Condition(concat=[frame0]))
    """

    def __init__(
        self,
        sampler: Sampler,
        autoencoder: torch.nn.Module,
        scaler: LatentScaler | str | os.PathLike | None = None,
        encode_concat: bool = True,
        decode: bool = True,
        frame_chunk: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(sampler, Sampler):
            raise TypeError(f"LatentSampler: sampler must be an echo_monai Sampler, got {type(sampler).__name__}.")
        self.sampler = sampler
        self.autoencoder = autoencoder
        self.latent_autoencoder = as_latent_autoencoder(autoencoder, frame_chunk=frame_chunk)
        self._scaler = scaler if scaler is not None else LatentScaler()
        self.encode_concat = encode_concat
        self.decode_output = decode

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, C, [T,] H, W)`` in [-1, 1] → normalised latents (the posterior mean, deterministic)."""
        return self.scaler.normalize(self.latent_autoencoder.encode(images))

    @property
    def scaler(self) -> LatentScaler:
        """The latent normalisation (read from the cache's statistics on first use when given as a path)."""
        if not isinstance(self._scaler, LatentScaler):
            self._scaler = LatentCacheDataset(self._scaler, stage="encode").scaler
        return self._scaler

    @scaler.setter
    def scaler(self, value: LatentScaler) -> None:
        self._scaler = value

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, **condition: torch.Tensor) -> torch.Tensor:
        """Normalised latents → pixels; ``condition`` holds the decoder's conditions (e.g. ``first_frame``)."""
        return self.latent_autoencoder.decode(self.scaler.denormalize(latents), **condition)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
        decoder_condition: Mapping[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Sample latents from the latent noise ``inputs`` and decode them (with ``decoder_condition``)."""
        condition = condition if condition is not None else Condition()
        if self.encode_concat and condition.concat:
            condition = Condition(kwargs=condition.kwargs, concat=[self.encode(c) for c in condition.concat])
        latents = self.sampler(inputs, network, condition=condition, generator=generator, clip=False, **kwargs)
        if not self.decode_output:
            return latents
        images = self.decode(latents, **dict(decoder_condition or {}))
        return images.clamp(*self.sampler.clip_range) if self.sampler.clip_range is not None else images
