"""Memorisation audit: nearest-neighbour similarity of synthetic samples to the training set, calibrated on real data.

The rule follows EchoNet-Synthetic (Reynaud et al., MICCAI 2024): embed every sample (features or a re-identification
network), take for each held-out real sample its best cosine similarity to the training set, and call the 95th
percentile of those values the threshold. A synthetic sample whose best match in the training set is more similar than
that threshold is closer to a training patient than 95 % of genuinely new real patients are: it is flagged as
memorised (and a generation pipeline can drop it).

Notation: ``e(.)`` embedding, ``cos`` cosine similarity::

    s(x)      = max_{t in train} cos(e(x), e(t))
    threshold = percentile_q { s(h) : h in held-out real }
    flagged   = { j : s(synthetic_j) > threshold },  rate = |flagged| / M
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from echo_monai.data.latent_cache import latent_frames

__all__ = ["MemorisationAudit", "MemorisationResult", "PrivacyGate", "nearest_neighbour_similarity", "privacy_filter"]


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_neighbour_similarity(
    queries: torch.Tensor, references: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best cosine similarity of each query to a reference set.

    Args:
        queries: embeddings `(M, D)`.
        references: embeddings `(N, D)`.
        chunk_size: query rows per similarity block.

    Returns:
        `(similarity, index)`: the best similarity `(M,)` (float64) and the index of the matching reference `(M,)`.
    """
    reference_units = _unit_rows(references.double())
    best, where = [], []
    for start in range(0, queries.shape[0], chunk_size):
        similarity = _unit_rows(queries[start : start + chunk_size].double()) @ reference_units.T
        value, index = similarity.max(dim=1)
        best.append(value)
        where.append(index)
    return torch.cat(best), torch.cat(where)


@dataclass
class MemorisationResult:
    """Outcome of :meth:`MemorisationAudit.__call__`.

    Attributes:
        threshold: the calibrated similarity threshold.
        rate: fraction of synthetic samples above the threshold.
        flagged_indices: indices of the offending synthetic samples, most similar first.
        similarity: best similarity of each synthetic sample to the training set, length M.
        nearest_train_index: index of that best training match, length M.
        held_out_similarity: best similarity of each held-out real sample to the training set, length H.
    """

    threshold: float
    rate: float
    flagged_indices: list[int]
    similarity: list[float] = field(repr=False)
    nearest_train_index: list[int] = field(repr=False)
    held_out_similarity: list[float] = field(repr=False)

    def summary(self) -> dict[str, float | int | list[int]]:
        """The scalar part, ready for ``metrics.json``: threshold, rate, count and offending indices."""
        return {
            "memorisation_threshold": self.threshold,
            "memorisation_rate": self.rate,
            "memorised_count": len(self.flagged_indices),
            "memorised_indices": list(self.flagged_indices),
        }

    def to_dict(self) -> dict:
        """Everything, as plain Python types."""
        return asdict(self)


class MemorisationAudit:
    """Flag synthetic samples that copy training samples, with a threshold calibrated on held-out real samples.

    Args:
        embed: callable mapping a batch `(B, ...)` to embeddings `(B, D)` (a :class:`FeatureEncoder`, a
            re-identification network, ...); ``None`` when the inputs already are `(N, D)` features.
        percentile: percentile of held-out best-match similarities used as the threshold (95 in EchoNet-Synthetic).
        batch_size: samples per `embed` call.
        chunk_size: rows per similarity block.

    Raises:
        ValueError: when `percentile` is outside [0, 100] or `batch_size`/`chunk_size` < 1.

    Example:
        >>> audit = MemorisationAudit(embed=reid_network)
        >>> result = audit(synthetic=videos, train=train_videos, held_out=test_videos)
        >>> result.rate, result.flagged_indices
    """

    def __init__(
        self,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        percentile: float = 95.0,
        batch_size: int = 64,
        chunk_size: int = 1024,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"MemorisationAudit: percentile must lie in [0, 100], got {percentile}.")
        if batch_size < 1 or chunk_size < 1:
            raise ValueError(
                f"MemorisationAudit: batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}."
            )
        self.embed = embed
        self.percentile = percentile
        self.batch_size = batch_size
        self.chunk_size = chunk_size

    @torch.no_grad()
    def embeddings(self, samples: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        """Embed `samples` in batches (or validate them as `(N, D)` features when `embed` is None).

        Args:
            samples: raw samples `(N, ...)` or features `(N, D)`.
            name: argument name for error messages.

        Returns:
            embeddings `(N, D)`.

        Raises:
            ValueError: when `samples` is empty, or not `(N, D)` while `embed` is None, or `embed` returns a
                non-2-D result.
        """
        samples = torch.as_tensor(samples)
        if samples.shape[0] == 0:
            raise ValueError(f"MemorisationAudit: {name} must hold at least one sample, got none.")
        if self.embed is None:
            if samples.ndim != 2:
                raise ValueError(
                    f"MemorisationAudit: without embed, {name} must be (N, D) features, got {tuple(samples.shape)}."
                )
            return samples
        parts = [
            torch.as_tensor(self.embed(samples[i : i + self.batch_size]))
            for i in range(0, len(samples), self.batch_size)
        ]
        embedded = torch.cat([part.detach().cpu().reshape(part.shape[0], -1) for part in parts])
        return embedded

    def __call__(
        self,
        synthetic: torch.Tensor | np.ndarray,
        train: torch.Tensor | np.ndarray,
        held_out: torch.Tensor | np.ndarray,
    ) -> MemorisationResult:
        """Audit `synthetic` against `train`, calibrated on `held_out`.

        Args:
            synthetic: synthetic samples `(M, ...)` (or features `(M, D)`).
            train: the generator's real training samples `(N, ...)`.
            held_out: real samples never seen by the generator `(H, ...)`, from different patients.

        Returns:
            a :class:`MemorisationResult`.

        Raises:
            ValueError: when a set is empty or the embedding dimensions differ.
        """
        synthetic_e = self.embeddings(synthetic, "synthetic")
        train_e = self.embeddings(train, "train")
        held_out_e = self.embeddings(held_out, "held_out")
        dims = {synthetic_e.shape[1], train_e.shape[1], held_out_e.shape[1]}
        if len(dims) != 1:
            raise ValueError(
                f"MemorisationAudit: synthetic, train and held_out embeddings must share D, got "
                f"{synthetic_e.shape[1]}, {train_e.shape[1]}, {held_out_e.shape[1]}."
            )
        held_similarity, _ = nearest_neighbour_similarity(held_out_e, train_e, self.chunk_size)
        threshold = float(np.percentile(held_similarity.numpy(), self.percentile))
        similarity, nearest = nearest_neighbour_similarity(synthetic_e, train_e, self.chunk_size)
        above = torch.nonzero(similarity > threshold).flatten()
        flagged = above[torch.argsort(similarity[above], descending=True)]
        return MemorisationResult(
            threshold=threshold,
            rate=float(above.numel()) / float(similarity.numel()),
            flagged_indices=[int(i) for i in flagged],
            similarity=[float(s) for s in similarity],
            nearest_train_index=[int(i) for i in nearest],
            held_out_similarity=[float(s) for s in held_similarity],
        )


def privacy_filter(
    synthetic: torch.Tensor,
    train: torch.Tensor,
    held_out: torch.Tensor,
    embed: Callable[[torch.Tensor], torch.Tensor],
    percentile: float = 95.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Keep the synthetic samples that no training sample re-identifies.

    The threshold is the ``percentile`` of the best train↔held-out similarities of real data (95 in
    EchoNet-Synthetic): a synthetic sample more similar than that to its nearest training sample is dropped.

    Args:
        synthetic: synthetic samples ``(M, ...)`` (latents or images the network embeds).
        train: the generator's real training samples ``(N, ...)``.
        held_out: real samples of other patients ``(H, ...)``.
        embed: the re-identification network (or any embedding callable).
        percentile: threshold percentile.

    Returns:
        ``(keep, report)``: a boolean mask ``(M,)`` and the audit summary (threshold, memorisation rate, flagged
        indices).
    """
    was_training = getattr(embed, "training", False)
    if isinstance(embed, nn.Module):
        embed.eval()
    try:
        result = MemorisationAudit(embed=embed, percentile=percentile)(synthetic, train, held_out)
    finally:
        if isinstance(embed, nn.Module):
            embed.train(was_training)
    keep = torch.ones(synthetic.shape[0], dtype=torch.bool)
    keep[np.asarray(result.flagged_indices, dtype=np.int64)] = False
    return keep, result.summary()


class PrivacyGate:
    """The privacy filter with its threshold calibrated once: ``gate(samples) -> keep mask (B,)``.

    Same rule as :class:`MemorisationAudit` (cosine similarity of embeddings; threshold = the ``percentile`` of the
    best train <-> held-out similarities of real data), with the training embeddings kept so that each new sample
    costs one embedding. EchoNet-Synthetic (Reynaud et al., MICCAI 2024) gates every sampled reference frame this
    way before animating it.

    Generated *videos* ``(B, C, T, H, W)`` given to a gate of frames are judged by every ``frame_stride``-th frame: a
    video passes only when none of those frames is re-identified (MCDM's export: its reference frame is real, so the
    whole generated video is checked against the training patients before it is written).

    Args:
        embed: the re-identification network (or any embedding callable).
        train: the generator's real training samples ``(N, ...)`` (latent frames, say).
        held_out: real samples of other patients ``(H, ...)``.
        percentile: threshold percentile (95 in EchoNet-Synthetic).
        frame_stride: frames between the checked frames of a gated video.

    Example:
        >>> gate = PrivacyGate(reid_network, train_frames, held_out_frames)
        >>> keep = gate(sampled_reference_latents)   # bool (B,)
    """

    def __init__(
        self,
        embed: Any,
        train: torch.Tensor,
        held_out: torch.Tensor,
        percentile: float = 95.0,
        frame_stride: int = 1,
    ) -> None:
        if int(frame_stride) < 1:
            raise ValueError(f"PrivacyGate: frame_stride must be >= 1, got {frame_stride}.")
        self.frame_stride, self.sample_ndim = int(frame_stride), torch.as_tensor(train).ndim
        if isinstance(embed, nn.Module):
            embed.eval()
        self.audit = MemorisationAudit(embed=embed, percentile=percentile)
        self.train_embeddings = self.audit.embeddings(train, "train")
        held_similarity, _ = nearest_neighbour_similarity(
            self.audit.embeddings(held_out, "held_out"), self.train_embeddings, self.audit.chunk_size
        )
        self.threshold = float(np.percentile(held_similarity.numpy(), percentile))

    @classmethod
    def from_latent_videos(
        cls,
        embed: Any,
        train: Any,
        held_out: Any,
        frame_stride: int = 1,
        percentile: float = 95.0,
    ) -> PrivacyGate:
        """A gate calibrated on every ``frame_stride``-th frame of two latent-video datasets (latent caches).

        Args:
            embed: the re-identification network.
            train: the generator's training latents (items with ``"latent"`` ``(C, T, h, w)``).
            held_out: latents of patients the generator never saw.
            frame_stride: frames between real samples.
            percentile: threshold percentile.
        """
        return cls.from_videos(embed, train, held_out, "latent", frame_stride, percentile)

    @classmethod
    def from_videos(
        cls,
        embed: Any,
        train: Any,
        held_out: Any,
        key: str = "video",
        frame_stride: int = 1,
        percentile: float = 95.0,
    ) -> PrivacyGate:
        """A gate of frames calibrated on every ``frame_stride``-th frame of two video datasets, which also judges
        generated videos by every ``frame_stride``-th frame.

        Args:
            embed: the re-identification network (on frames ``(N, C, H, W)``).
            train: the generator's training videos (items with `key` ``(C, T, H, W)``: pixel clips, latents).
            held_out: videos of patients the generator never saw.
            key: the items' video key.
            frame_stride: frames between real samples and between the checked frames of a generated video.
            percentile: threshold percentile.
        """
        train_frames = latent_frames(train, frame_stride, key=key)
        held_out_frames = latent_frames(held_out, frame_stride, key=key)
        return cls(embed, train_frames, held_out_frames, percentile, frame_stride=frame_stride)

    @torch.no_grad()
    def similarity(self, samples: torch.Tensor) -> torch.Tensor:
        """``(B,)`` cosine similarity of each sample to its nearest training sample; for videos ``(B, C, T, H, W)``
        given to a gate of frames, the highest over the checked frames."""
        videos = self.sample_ndim == 4 and samples.ndim == 5  # a gate of frames (N, C, H, W) given videos
        count = samples.shape[0]
        if videos:
            frames = samples[:, :, :: self.frame_stride]
            samples = frames.transpose(1, 2).reshape(-1, *frames.shape[1:2], *frames.shape[3:])
        similarity, _ = nearest_neighbour_similarity(
            self.audit.embeddings(samples, "synthetic"), self.train_embeddings, self.audit.chunk_size
        )
        return similarity.reshape(count, -1).amax(dim=1) if videos else similarity

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """Keep mask ``(B,)``: samples shaped like the calibration frames, or videos ``(B, C, T, H, W)`` of them."""
        return self.similarity(samples) <= self.threshold
