"""Motion transfer with a motion-conditioned latent video model (MCDM): reference frames + driving videos -> videos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from echo_monai.engines.conditioning import Condition
from echo_monai.inferers.latent_sampler import LatentSampler
from echo_monai.inferers.sampler import seeded_noise

__all__ = ["MotionTransfer"]


class MotionTransfer:
    """``(reference_frames (N, 1, H, W), driving (N, 1, T, H, W), seed) -> videos (N, 1, T, H, W)``.

    MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound
    Synthesis", 2025): the driving video's motion tokens (from the trained motion extractor) condition the latent
    video model by cross-attention, the reference frame (encoded by the latent sampler's autoencoder) is concatenated
    to the noisy latent. Video ``n`` starts from the noise seeded ``seed + n``, so it does not depend on the batching.
    The same conditioning as the bundle's generation pipeline, for evaluation studies.

    Args:
        sampler: the trained :class:`LatentSampler` (``encode_concat=True``: references are pixels).
        network: the trained latent video denoiser.
        extractor: the trained motion extractor (``motion_tokens(video, num_tokens) -> (B, N, D)``).
        latent_shape: ``(C, T, h, w)`` of one video's latent.
        num_tokens: motion tokens per video.
        batch_size: videos sampled together.
        device: where sampling runs.

    Example:
        >>> transfer = MotionTransfer(latent_sampler, denoiser, mafe, (4, 64, 28, 28))
        >>> videos = transfer(first_frames, driving_videos, seed=0)
    """

    def __init__(
        self,
        sampler: LatentSampler,
        network: torch.nn.Module,
        extractor: Any,
        latent_shape: Sequence[int],
        num_tokens: int = 1,
        batch_size: int = 4,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(latent_shape) != 4 or any(int(s) < 1 for s in latent_shape):
            raise ValueError(f"MotionTransfer: latent_shape must be (C, T, h, w) of positive ints, got {latent_shape}.")
        if int(num_tokens) < 1 or int(batch_size) < 1:
            raise ValueError(f"MotionTransfer: num_tokens and batch_size must be >= 1, got {num_tokens}, {batch_size}.")
        self.sampler, self.network, self.extractor = sampler, network, extractor
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.num_tokens, self.batch_size, self.device = int(num_tokens), int(batch_size), torch.device(device)

    @torch.no_grad()
    def __call__(self, reference_frames: torch.Tensor, driving: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Generate one video per (reference frame, driving video) pair.

        Raises:
            ValueError: when the batch sizes differ or the driving videos are not ``(N, C, T, H, W)`` with the
                model's T.
        """
        if driving.ndim != 5 or reference_frames.ndim != 4 or driving.shape[0] != reference_frames.shape[0]:
            raise ValueError(
                f"MotionTransfer: expected reference_frames (N, C, H, W) and driving (N, C, T, H, W) with the same N, "
                f"got {tuple(reference_frames.shape)} and {tuple(driving.shape)}."
            )
        if driving.shape[2] != self.latent_shape[1]:
            raise ValueError(
                f"MotionTransfer: driving videos have {driving.shape[2]} frames; the model makes "
                f"{self.latent_shape[1]}."
            )
        self.network.eval()
        if hasattr(self.extractor, "eval"):
            self.extractor.eval()
        videos = []
        for start in range(0, driving.shape[0], self.batch_size):
            stop = min(start + self.batch_size, driving.shape[0])
            motion = self.extractor.motion_tokens(driving[start:stop].float().to(self.device), self.num_tokens)
            reference = reference_frames[start:stop].float().to(self.device)
            noise = torch.stack([seeded_noise(self.latent_shape, seed + n) for n in range(start, stop)])
            noise = noise.to(self.device)
            generator = torch.Generator(device=self.device).manual_seed(seed + start)
            condition = Condition(kwargs={"context": motion.float()}, concat=[reference])
            videos.append(self.sampler(noise, self.network, condition=condition, generator=generator).float().cpu())
        return torch.cat(videos)
