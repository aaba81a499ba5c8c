"""Animate still images with an image-to-video latent model (LDDM): first frames in, K stochastic videos each out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.utils import pixelunshuffle

from echo_monai.engines.conditioning import Condition
from echo_monai.inferers.latent_sampler import LatentSampler
from echo_monai.inferers.sampler import seeded_noise

__all__ = ["ImageAnimator"]


class ImageAnimator:
    """First frames ``(N, 1, H, W)`` -> videos ``(N, K, 1, T, H, W)``, as the bundle's generation pipeline makes them.

    LDDM (Chen et al., "Ultrasound Image-to-Video Synthesis via Latent Dynamic Diffusion Models", MICCAI 2024):
    the dynamics latent of a video is sampled given the image (here: the image folded onto the latent grid by pixel
    unshuffle, :class:`echo_monai.transforms.SpaceToDepthd`, concatenated to the noisy latent) and decoded together
    with the image (the decoder condition ``first_frame``). Video ``k`` of image ``n`` starts from the noise seeded
    ``seed + n * K + k``, so every video is reproducible whatever the batching.

    Args:
        sampler: the trained :class:`LatentSampler` (``encode_concat=False``: the reference is pixels on the
            latent grid).
        network: the trained latent video denoiser.
        latent_shape: ``(C, t, h, w)`` of one video's latent.
        reference_factor: the autoencoder's spatial downsampling factor ``f`` (``H = f * h``).
        batch_size: videos sampled together.
        device: where sampling runs.

    Example:
        >>> animate = ImageAnimator(latent_sampler, denoiser, (4, 4, 28, 28), reference_factor=4)
        >>> videos = animate(first_frames, samples=2, seed=0)      # (N, 2, 1, 16, 112, 112)
    """

    def __init__(
        self,
        sampler: LatentSampler,
        network: torch.nn.Module,
        latent_shape: Sequence[int],
        reference_factor: int,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(latent_shape) != 4 or any(int(s) < 1 for s in latent_shape):
            raise ValueError(f"ImageAnimator: latent_shape must be (C, t, h, w) of positive ints, got {latent_shape}.")
        if int(reference_factor) < 1 or int(batch_size) < 1:
            raise ValueError(
                f"ImageAnimator: reference_factor and batch_size must be >= 1, got {reference_factor}, {batch_size}."
            )
        self.sampler, self.network = sampler, network
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.factor, self.batch_size, self.device = int(reference_factor), int(batch_size), torch.device(device)

    @torch.no_grad()
    def __call__(self, first_frames: torch.Tensor, samples: int = 1, seed: int = 0) -> torch.Tensor:
        """Animate each image ``samples`` times.

        Args:
            first_frames: ``(N, 1, H, W)`` in [-1, 1], ``(H, W) = f * (h, w)``.
            samples: videos per image (K).
            seed: base seed of the noise.

        Returns:
            ``(N, K, 1, T, H, W)`` in [-1, 1] on the CPU.
        """
        _, _, h, w = self.latent_shape
        expected = (h * self.factor, w * self.factor)
        if first_frames.ndim != 4 or tuple(first_frames.shape[2:]) != expected:
            raise ValueError(
                f"ImageAnimator: first_frames must be (N, C, {expected[0]}, {expected[1]}), got "
                f"{tuple(first_frames.shape)}."
            )
        if samples < 1:
            raise ValueError(f"ImageAnimator: samples must be >= 1, got {samples}.")
        self.network.eval()
        jobs = [(n, k) for n in range(first_frames.shape[0]) for k in range(samples)]
        videos = []
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            frames = torch.stack([first_frames[n] for n, _ in batch]).float().to(self.device)
            noise = torch.stack([seeded_noise(self.latent_shape, seed + n * samples + k) for n, k in batch])
            noise = noise.to(self.device)
            reference = pixelunshuffle(frames, spatial_dims=2, scale_factor=self.factor)
            generator = torch.Generator(device=self.device).manual_seed(seed + batch[0][0] * samples + batch[0][1])
            video = self.sampler(
                noise,
                self.network,
                condition=Condition(concat=[reference]),
                generator=generator,
                decoder_condition={"first_frame": frames},
            )
            videos.append(video.float().cpu())
        out = torch.cat(videos)
        return out.reshape(first_frames.shape[0], samples, *out.shape[1:])
