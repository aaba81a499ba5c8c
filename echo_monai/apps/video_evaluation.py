"""Evaluation of a synthetic echo video dataset (EchoFlow / EchoNet-Synthetic protocol), offline and on CPU or GPU.

One EF regressor (the evaluation suite's :class:`~echo_monai.metrics.EjectionFractionEvaluator`) trained on real
videos is the judge of three things at once:

- **EF faithfulness:** the EF it measures on each generated video against the EF the generator was asked for
  (MAE, RMSE, R², Pearson r, bias);
- **video feature distances:** its penultimate features of held-out real clips and of synthetic clips
  (``FD_ef_regressor``, ``KD_ef_regressor``, PRDC, diversity), plus any extra video encoder (I3D → FVD only with the
  standard weights, see :mod:`echo_monai.metrics.encoders`);
- **downstream utility:** the same regressor trained on real only and on synthetic only, tested on held-out real.

Image feature distances use frames of the same clips and any image encoder, e.g. :class:`LatentEmbeddingEncoder`
(the autoencoder + re-identification network, ``FD_reid``) or Inception-v3 from a local file (FID). The
memorisation rate after the privacy filter re-encodes frames of every exported video and applies the same
:class:`~echo_monai.metrics.PrivacyGate`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echo_monai.data.latent_autoencoder import as_latent_autoencoder
from echo_monai.data.latents import LatentScaler
from echo_monai.metrics import (
    EjectionFractionEvaluator,
    FeatureEncoder,
    InputKind,
    TrainingMix,
    distribution_metrics,
    i3d_encoder,
    inception_v3_encoder,
    write_report,
)

__all__ = [
    "LatentEmbeddingEncoder",
    "VideoEvaluation",
    "evaluate_video_dataset",
    "evaluate_video_generation",
    "read_generation_report",
    "stack_videos",
    "synthetic_summary",
    "video_frames",
]

logger = logging.getLogger(__name__)


class LatentEmbeddingEncoder(FeatureEncoder):
    """Images → autoencoder posterior mean → per-channel latent normalisation → an embedding network.

    With the bundle's re-identification network this is the feature space the privacy filter works in (trained on
    the user's real latents), so ``FD_reid`` compares synthetic and real frames where patient identity shows.

    Args:
        autoencoder: a :class:`echo_monai.data.LatentAutoencoder` or MONAI ``AutoencoderKL``.
        scaler: the latent cache's :class:`~echo_monai.data.latents.LatentScaler`.
        embed: network mapping normalised latents ``(N, C, h, w)`` to ``(N, D)``.
        name: encoder name in metric names.
        device: where both networks run.
    """

    input_kind = InputKind.IMAGE

    def __init__(
        self,
        autoencoder: torch.nn.Module,
        scaler: LatentScaler,
        embed: torch.nn.Module,
        name: str = "reid",
        device: str | torch.device = "cpu",
    ) -> None:
        self.autoencoder, self.scaler, self.embed = autoencoder.eval(), scaler, embed.eval()
        self.latent_autoencoder = as_latent_autoencoder(self.autoencoder)
        self.name, self.device = name, torch.device(device)

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised posterior-mean latents ``(N, C, h, w)`` of images ``(N, 1, H, W)`` in [-1, 1]."""
        self.check_input(x)
        return self.scaler.normalize(self.latent_autoencoder.encode(x.to(self.device).float()))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.latents(x)).reshape(x.shape[0], -1).float().cpu()


@dataclass
class VideoEvaluation:
    """Result of :func:`evaluate_video_generation`: ``metrics`` for the report, and the values behind its figures."""

    metrics: dict[str, Any]
    ef_requested: list[float] = field(default_factory=list)
    ef_measured: list[float] = field(default_factory=list)
    real_samples: torch.Tensor | None = None
    synthetic_samples: torch.Tensor | None = None


def stack_videos(data: Sequence[Mapping[str, Any]], key: str = "video", limit: int | None = None) -> torch.Tensor:
    """``(N, C, T, H, W)`` float tensor of the first ``limit`` items' clips (all clips must share a shape).

    Raises:
        ValueError: naming the item whose clip shape differs from the first one's, or an empty set.
    """
    count = len(data) if limit is None else min(len(data), int(limit))
    if count == 0:
        raise ValueError("stack_videos: no videos to stack.")
    clips = []
    for i in range(count):
        clip = torch.as_tensor(data[i][key]).as_subclass(torch.Tensor).float()
        if clips and clip.shape != clips[0].shape:
            raise ValueError(
                f"stack_videos: item {i} has a '{key}' of shape {tuple(clip.shape)}, item 0 {tuple(clips[0].shape)}; "
                "clip and resize them to one shape first."
            )
        clips.append(clip)
    return torch.stack(clips)


def video_frames(videos: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th frame of videos ``(N, C, T, H, W)`` as images ``(N * ceil(T / stride), C, H, W)``."""
    if stride < 1:
        raise ValueError(f"video_frames: stride must be >= 1, got {stride}.")
    frames = videos[:, :, ::stride]
    return frames.transpose(1, 2).reshape(-1, videos.shape[1], *videos.shape[3:])


def _faithfulness(requested: torch.Tensor, measured: torch.Tensor, base: dict[str, float]) -> dict[str, float]:
    r, m = requested.double().flatten(), measured.double().flatten()
    pearson = float(torch.corrcoef(torch.stack([r, m]))[0, 1]) if len(r) > 1 and r.std() > 0 and m.std() > 0 else 0.0
    return {**base, "pearson_r": pearson, "bias": float((m - r).mean()), "num_videos": len(r)}


def _feature_distances(
    real: torch.Tensor, synthetic: torch.Tensor, encoders: Sequence[FeatureEncoder], kid_subset_size: int
) -> dict[str, Any]:
    """Distribution metrics per encoder, or the reason they were skipped (fewer than two samples in a set)."""
    if min(len(real), len(synthetic)) < 2:
        reason = f"needs >= 2 real and >= 2 synthetic samples, got {len(real)} and {len(synthetic)}"
        logger.warning("evaluate_video_generation: feature distances skipped: %s.", reason)
        return {"skipped": reason}
    subset = max(2, min(kid_subset_size, len(real), len(synthetic)))
    section: dict[str, Any] = {}
    for encoder in encoders:
        section.update(distribution_metrics(real, synthetic, encoder, kid_subset_size=subset, batch_size=8))
    return section


def evaluate_video_generation(
    ef_regressor: EjectionFractionEvaluator,
    real_train: Sequence[Mapping[str, Any]],
    real_test: Sequence[Mapping[str, Any]],
    synthetic: Sequence[Mapping[str, Any]],
    mixes: Sequence[str] = ("real", "synthetic"),
    image_encoders: Sequence[FeatureEncoder] = (),
    video_encoders: Sequence[FeatureEncoder] = (),
    frame_stride: int = 8,
    max_videos: int | None = None,
    memorisation: tuple[LatentEmbeddingEncoder, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    kid_subset_size: int = 1000,
) -> VideoEvaluation:
    """EF faithfulness, image and video feature distances, EF regression utility and memorisation after the filter.

    Args:
        ef_regressor: the EF regressor (trained here: first on ``real_train``, then once per mix).
        real_train: real clips ``{"video": (1, T, H, W) in [-1, 1], "ejection_fraction": %}`` (the generator's
            training split).
        real_test: held-out real clips, same layout.
        synthetic: generated clips with the *requested* EF as ``ejection_fraction``.
        mixes: training sets of the utility test, among ``real``, ``synthetic``, ``real+synthetic``.
        image_encoders: image encoders for frame feature distances (every ``frame_stride``-th frame of each clip).
        video_encoders: extra video encoders (the real-trained regressor's features are always used).
        frame_stride: frame step for image features and for the memorisation audit.
        max_videos: cap on the clips of each set held in memory for feature distances (None: all).
        memorisation: ``(latent encoder, gate)``: the gate (e.g. :class:`PrivacyGate`) maps latents to a keep mask;
            a synthetic video counts as memorised when any of its audited frames is flagged.
        kid_subset_size: rows per kernel-distance subset (capped by the set sizes).

    Returns:
        :class:`VideoEvaluation` with ``metrics`` sections ``ef_faithfulness``, ``ef_regression``,
        ``video_features``, ``image_features`` and (with ``memorisation``) ``privacy_after_filter``.

    Raises:
        ValueError: an empty set, or clips of different shapes within a set.
    """
    for name, data in (("real_train", real_train), ("real_test", real_test), ("synthetic", synthetic)):
        if len(data) == 0:
            raise ValueError(f"evaluate_video_generation: {name} is empty.")
    metrics: dict[str, Any] = {}

    # the judge: trained on real clips, tested on held-out real, then measuring the generated clips
    ef_regressor.fit(real_train)
    real_only = {**ef_regressor.evaluate(real_test), "num_train_samples": len(real_train)}
    measured, requested = ef_regressor.predict(synthetic)
    metrics["ef_faithfulness"] = _faithfulness(
        requested, measured, ef_regressor.compute_metrics(measured, requested.float().reshape(-1, 1))
    )
    metrics["ef_faithfulness"]["judge_mae_on_real_test"] = real_only["mae"]

    real_clips = stack_videos(real_test, limit=max_videos)
    synthetic_clips = stack_videos(synthetic, limit=max_videos)
    video_encoders = [ef_regressor.feature_encoder("ef_regressor"), *video_encoders]
    metrics["video_features"] = _feature_distances(real_clips, synthetic_clips, video_encoders, kid_subset_size)
    if image_encoders:
        metrics["image_features"] = _feature_distances(
            video_frames(real_clips, frame_stride),
            video_frames(synthetic_clips, frame_stride),
            image_encoders,
            kid_subset_size,
        )

    if memorisation is not None:
        encoder, gate = memorisation
        flagged = []
        for clip in synthetic_clips:
            keep = gate(encoder.latents(video_frames(clip[None], frame_stride)))
            flagged.append(not bool(torch.as_tensor(keep).all()))
        metrics["privacy_after_filter"] = {
            "videos_audited": len(flagged),
            "videos_flagged": int(sum(flagged)),
            "memorisation_rate": float(np.mean(flagged)),
            "frames_per_video": int(video_frames(synthetic_clips[:1], frame_stride).shape[0]),
        }

    # utility: the regressor trained on each mix, tested on held-out real (the real-only run is the judge's)
    regression: dict[str, dict[str, float]] = {}
    for mix in mixes:
        mix = str(TrainingMix(mix))
        if mix == str(TrainingMix.REAL):
            regression[mix] = real_only
        else:
            regression.update(ef_regressor.run(real_test, real=real_train, synthetic=synthetic, mixes=[mix]))
    metrics["ef_regression"] = regression
    return VideoEvaluation(
        metrics=metrics,
        ef_requested=[float(v) for v in requested.flatten()],
        ef_measured=[float(v) for v in measured.flatten()],
        real_samples=real_clips[:4],
        synthetic_samples=synthetic_clips[:4],
    )


def read_generation_report(root: str | os.PathLike) -> dict[str, Any]:
    """The merged ``generation_report.json`` of an exported dataset.

    Raises:
        FileNotFoundError: naming the file, when the export has not finished (or was never run).
        ValueError: naming the file, when it is not valid JSON.
    """
    path = Path(root) / "generation_report.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: run the export (echo-monai infer echo_flow --output_dir {root}) to the end "
            "first (the last rank writes it)."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}); rerun the export, it resumes.") from error


def synthetic_summary(root: str | os.PathLike) -> dict[str, float | int]:
    """Count, frames and requested-EF statistics of an EchoNet-layout dataset, from its ``FileList.csv`` alone."""
    path = Path(root) / "FileList.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: the export into {str(root)!r} has not finished.")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    efs = np.array([float(r["EF"]) for r in rows], dtype=np.float64)
    nan = float("nan")
    return {
        "videos": len(rows),
        "frames_per_video": int(rows[0]["NumberOfFrames"]) if rows else 0,
        "ef_mean": float(efs.mean()) if len(efs) else nan,
        "ef_std": float(efs.std()) if len(efs) else nan,
        "ef_min": float(efs.min()) if len(efs) else nan,
        "ef_max": float(efs.max()) if len(efs) else nan,
    }


def evaluate_video_dataset(
    synthetic_root: str | os.PathLike,
    report_dir: str | os.PathLike,
    ef_regressor: EjectionFractionEvaluator,
    real_train: Sequence[Mapping[str, Any]],
    real_test: Sequence[Mapping[str, Any]],
    synthetic: Sequence[Mapping[str, Any]],
    latent_encoder: LatentEmbeddingEncoder | None = None,
    gate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mixes: Sequence[str] = ("real", "synthetic"),
    inception_path: str | os.PathLike | None = None,
    i3d_path: str | os.PathLike | None = None,
    frame_stride: int = 8,
    max_videos: int | None = None,
    device: str | torch.device = "cpu",
    title: str = "echo_flow evaluation",
) -> dict[str, Any]:
    """Evaluate an exported synthetic EchoNet-layout dataset and write ``metrics.json``, ``report.md`` and figures.

    The sections of :func:`evaluate_video_generation`, plus ``synthetic`` (from ``FileList.csv``) and
    ``privacy_before_filter`` (the privacy gate's record in ``generation_report.json``). Image feature distances use
    ``latent_encoder`` (``FD_reid``) and, with ``inception_path``, the standard Inception-v3 (FID); video ones the EF
    regressor's features and, with ``i3d_path``, the standard I3D (FVD). Nothing is downloaded.

    Args:
        synthetic_root: the exported dataset (``FileList.csv``, ``generation_report.json``).
        report_dir: where the report goes.
        ef_regressor: the EF regressor (the judge).
        real_train: real training clips (its training data).
        real_test: held-out real clips.
        synthetic: the generated clips, with their requested EF.
        latent_encoder: autoencoder + re-identification encoder of frames; None skips the image features.
        gate: the privacy gate, for the memorisation audit after the filter (needs ``latent_encoder``).
        mixes: training sets of the EF-regression utility test.
        inception_path: local TorchScript file of the standard Inception-v3.
        i3d_path: local TorchScript file of the standard I3D.
        frame_stride: frame step of the image features and the audit.
        max_videos: cap on the clips per set held in memory for feature distances.
        device: where the feature networks run.
        title: report title.

    Returns:
        the metrics written to ``metrics.json``.
    """
    generation = read_generation_report(synthetic_root)
    image_encoders: list[FeatureEncoder] = [latent_encoder] if latent_encoder is not None else []
    if inception_path:
        image_encoders.append(inception_v3_encoder(inception_path, device))
    video_encoders = [i3d_encoder(i3d_path, device)] if i3d_path else []
    evaluation = evaluate_video_generation(
        ef_regressor,
        real_train,
        real_test,
        synthetic,
        mixes=mixes,
        image_encoders=image_encoders,
        video_encoders=video_encoders,
        frame_stride=frame_stride,
        max_videos=max_videos,
        memorisation=(latent_encoder, gate) if latent_encoder is not None and gate is not None else None,
    )
    metrics = {
        "synthetic": synthetic_summary(synthetic_root),
        "privacy_before_filter": {
            "references_rejected": generation["rejected_references"],
            "references_accepted": generation["accepted_references"],
            "gate_rejection_rate": generation["gate_rejection_rate"],
            "requests_failed": len(generation["failed"]),
        },
        **evaluation.metrics,
    }
    write_report(
        report_dir,
        metrics,
        real_samples=evaluation.real_samples,
        synthetic_samples=evaluation.synthetic_samples,
        ef_requested=evaluation.ef_requested,
        ef_measured=evaluation.ef_measured,
        title=title,
    )
    return metrics
