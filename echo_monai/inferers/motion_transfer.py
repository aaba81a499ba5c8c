"""Motion transfer with a motion-conditioned latent video model (MCDM): reference frames + driving videos -> videos."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from echo_monai.engines.conditioning import Condition, Conditioning
from echo_monai.inferers.latent_sampler import LatentSampler
from echo_monai.inferers.sampler import seeded_noise

__all__ = ["MotionTransfer"]


class MotionTransfer:
    """``(reference_frames (N, 1, H, W), driving (N, 1, T, H, W), seed, ejection_fraction) -> videos (N, 1, T, H, W)``.

    MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound
    Synthesis", 2025): the driving video's motion tokens (from the trained motion extractor) condition the latent
    video model by cross-attention, the reference frame (encoded by the latent sampler's autoencoder) is concatenated
    to the noisy latent. Video ``n`` starts from the noise seeded ``seed + n``, so it does not depend on the batching.
    The same conditioning as the bundle's generation pipeline, for evaluation studies.

    With ``conditioning`` the condition is built as in training: a batch ``{"motion", "reference",
    "ejection_fraction"}`` read by the bundle's :class:`Conditioning`, so a model with MCDM's optional EF token gets
    the driving videos' EF. Without an ``extractor`` the driving video gives only its EF: an EF-conditioned model
    (echo_flow's) animates the reference at the driving video's EF, for side-by-side comparisons.

    Args:
        sampler: the trained :class:`LatentSampler` (``encode_concat=True``: references are pixels).
        network: the trained latent video denoiser.
        extractor: the trained motion extractor (``motion_tokens(video, num_tokens) -> (B, N, D)``); None for a model
            that takes no motion.
        latent_shape: ``(C, T, h, w)`` of one video's latent.
        num_tokens: motion tokens per video.
        batch_size: videos sampled together.
        device: where sampling runs.
        conditioning: the model's conditioning (batch keys ``motion``, ``reference``, ``ejection_fraction``); None:
            motion tokens as ``context`` and the reference concatenated.
        missing_ejection_fraction: the EF given for a driving video without one (NaN): the null value of a model
            trained with EF dropout (-1 in these bundles).

    Example:
        >>> transfer = MotionTransfer(latent_sampler, denoiser, mafe, (4, 64, 28, 28))
        >>> videos = transfer(first_frames, driving_videos, seed=0)
    """

    def __init__(
        self,
        sampler: LatentSampler,
        network: torch.nn.Module,
        extractor: Any | None,
        latent_shape: Sequence[int],
        num_tokens: int = 1,
        batch_size: int = 4,
        device: str | torch.device = "cpu",
        conditioning: Conditioning | None = None,
        missing_ejection_fraction: float = -1.0,
    ) -> None:
        if len(latent_shape) != 4 or any(int(s) < 1 for s in latent_shape):
            raise ValueError(f"MotionTransfer: latent_shape must be (C, T, h, w) of positive ints, got {latent_shape}.")
        if int(num_tokens) < 1 or int(batch_size) < 1:
            raise ValueError(f"MotionTransfer: num_tokens and batch_size must be >= 1, got {num_tokens}, {batch_size}.")
        if extractor is None and conditioning is None:
            raise ValueError("MotionTransfer: without a motion extractor, give the model's conditioning.")
        self.sampler, self.network, self.extractor, self.conditioning = sampler, network, extractor, conditioning
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.num_tokens, self.batch_size, self.device = int(num_tokens), int(batch_size), torch.device(device)
        self.missing_ejection_fraction = float(missing_ejection_fraction)

    def _condition(self, reference: torch.Tensor, driving: torch.Tensor, ef: torch.Tensor) -> Condition:
        batch = {"reference": reference, "ejection_fraction": ef}
        if self.extractor is not None:
            batch["motion"] = self.extractor.motion_tokens(driving, self.num_tokens).float()
        if self.conditioning is None:
            return Condition(kwargs={"context": batch["motion"]}, concat=[reference])
        return self.conditioning.extract(batch, self.device)

    @torch.no_grad()
    def __call__(
        self,
        reference_frames: torch.Tensor,
        driving: torch.Tensor,
        seed: int = 0,
        ejection_fraction: torch.Tensor | Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Generate one video per (reference frame, driving video) pair.

        Args:
            reference_frames: ``(N, C, H, W)`` in the model range.
            driving: ``(N, C, T, H, W)`` with the model's T.
            seed: video ``n`` starts from the noise seeded ``seed + n``.
            ejection_fraction: ``(N,)`` EF in percent of the driving videos (NaN or None: unknown), read only by a
                conditioning that takes it.

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
        count = driving.shape[0]
        ef = torch.full((count,), math.nan) if ejection_fraction is None else torch.as_tensor(ejection_fraction)
        if ef.shape != (count,):
            raise ValueError(f"MotionTransfer: ejection_fraction must be ({count},), got {tuple(ef.shape)}.")
        ef = torch.nan_to_num(ef.float(), nan=self.missing_ejection_fraction)
        self.network.eval()
        if hasattr(self.extractor, "eval"):
            self.extractor.eval()
        videos = []
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            reference = reference_frames[start:stop].float().to(self.device)
            condition = self._condition(reference, driving[start:stop].float().to(self.device), ef[start:stop])
            noise = torch.stack([seeded_noise(self.latent_shape, seed + n) for n in range(start, stop)])
            generator = torch.Generator(device=self.device).manual_seed(seed + start)
            video = self.sampler(noise.to(self.device), self.network, condition=condition, generator=generator)
            videos.append(video.float().cpu())
        return torch.cat(videos)
