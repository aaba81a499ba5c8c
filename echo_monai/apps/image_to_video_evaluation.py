"""The evaluation of still-image-to-video animation (LDDM: Chen et al., "Ultrasound Image-to-Video Synthesis via
Latent Dynamic Diffusion Models", MICCAI 2024), with the two baselines the paper does not report.

A breast-ultrasound still image (BUSI) is animated into a video (BUSV-like). The paper judges the model twice:

- **continuation** (:func:`continuation_metrics`): the first frame of each held-out real clip is animated and the
  continuation compared with the real one: SSIM, PSNR, an LPIPS-style distance, Fréchet/kernel distances of video
  features (FVD only with the standard I3D file, otherwise ``FD_<encoder>``) and of their frame differences (the
  dynamics, ``DT_FD_<encoder>`` / ``DT_FVD``), plus the diversity of the samples of one image and the motion energy
  of real and generated clips (a still video shows at a glance as ``motion_energy_generated = 0``);
- **downstream utility** (:func:`video_classification_study`): a benign-vs-malignant video classifier trained on a
  fraction of the real videos, with and without added videos, over several seeds, tested on held-out real videos.
  Besides the synthetic set, two baselines built from the same still images are added the same way: the image
  repeated (``still``) and the image moved by a smooth random affine "probe" motion (``jitter``, see
  :mod:`echo_monai.transforms.baseline_videos`), so that a gain can be attributed to the learned dynamics rather
  than to the extra appearances.

:func:`evaluate_image_to_video` runs both and writes ``metrics.json``, ``report.md`` and a sample figure.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric

from echo_monai.data.atomic import write_json, write_png, write_text
from echo_monai.metrics import (
    FeatureEncoder,
    ImageClassificationEvaluator,
    PerceptualDistance,
    VideoClassificationEvaluator,
    distribution_metrics,
    i3d_encoder,
    markdown_tables,
    ms_ssim_diversity,
    paired_difference,
    reconstruction_metrics,
    sample_grid,
    summarise_runs,
    to_json_compatible,
)
from echo_monai.transforms.baseline_videos import affine_jitter_video, still_video

__all__ = ["continuation_metrics", "evaluate_image_to_video", "study_table", "video_classification_study"]

logger = logging.getLogger(__name__)

#: the classifier scores summarised by the study, with their table headers
STUDY_SCORES = (("accuracy", "accuracy"), ("f1", "F1"), ("auc", "AUC"))


# --------------------------------------------------------------------------------------------- continuation
def _check_continuation(real: torch.Tensor, generated: torch.Tensor, value_range: tuple[float, float]) -> None:
    if not isinstance(real, torch.Tensor) or real.ndim != 5:
        shape = tuple(real.shape) if isinstance(real, torch.Tensor) else type(real).__name__
        raise ValueError(f"continuation_metrics: real must be a (N, C, T, H, W) tensor, got {shape}.")
    if not isinstance(generated, torch.Tensor) or generated.ndim != 6:
        shape = tuple(generated.shape) if isinstance(generated, torch.Tensor) else type(generated).__name__
        raise ValueError(f"continuation_metrics: generated must be a (N, K, C, T, H, W) tensor, got {shape}.")
    if generated.shape[0] != real.shape[0] or generated.shape[2:] != real.shape[1:]:
        raise ValueError(
            "continuation_metrics: generated must be (N, K, C, T, H, W) with (N, C, T, H, W) of real = "
            f"{tuple(real.shape)}, got {tuple(generated.shape)}."
        )
    if real.shape[0] < 1 or generated.shape[1] < 1:
        raise ValueError(f"continuation_metrics: need N >= 1 clips and K >= 1 samples, got {tuple(generated.shape)}.")
    if real.shape[2] < 2:
        raise ValueError(f"continuation_metrics: clips need T >= 2 frames (frame 0 is given), got T = {real.shape[2]}.")
    if not value_range[1] > value_range[0]:
        raise ValueError(f"continuation_metrics: value_range must satisfy high > low, got {tuple(value_range)}.")


def _frames(videos: torch.Tensor) -> torch.Tensor:
    """`(B, C, T, H, W) -> (B * T, C, H, W)`."""
    return videos.transpose(1, 2).reshape(-1, videos.shape[1], *videos.shape[-2:])


def _motion_energy(videos: torch.Tensor) -> float:
    """Mean absolute difference of consecutive frames of `(B, C, T, H, W)`."""
    return float((videos[:, :, 1:] - videos[:, :, :-1]).abs().double().mean())


def _dynamics(videos: torch.Tensor, pad: bool) -> torch.Tensor:
    """Halved frame differences `(B, C, T - 1, H, W)` (in [-1, 1] for clips in [-1, 1]); `pad` repeats the last."""
    differences = (videos[:, :, 1:] - videos[:, :, :-1]) / 2
    return torch.cat([differences, differences[:, :, -1:]], dim=2) if pad else differences


def continuation_metrics(
    real: torch.Tensor,
    generated: torch.Tensor,
    encoder: FeatureEncoder | None = None,
    perceptual: PerceptualDistance | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    pad_dynamics: bool = False,
    kid_subset_size: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """How well the videos animated from the first frames of real clips continue them.

    For held-out clip ``i``, ``generated[i, k]`` is the ``k``-th video animated from its first frame ``real[i, :, 0]``
    (so ``generated[i, k, :, 0]`` is that frame). Frame-wise scores compare frames ``1..T-1`` of every sample with the
    real clip's (frames are folded into the batch; both are clipped to `value_range` first) and average over clips,
    frames and samples.

    Args:
        real: held-out real clips `(N, C, T, H, W)` in `value_range`, `T >= 2`.
        generated: animated clips `(N, K, C, T, H, W)`.
        encoder: video encoder for the distribution metrics (e.g. a real-trained video classifier's features, or the
            standard I3D for FVD); None skips them.
        perceptual: LPIPS-style distance on a 2D image network, applied frame by frame; None skips it.
        value_range: intensity range of the clips.
        pad_dynamics: the dynamics clips (halved frame differences, so they stay in [-1, 1]) have `T - 1` frames;
            True repeats the last difference to get `T` frames, for an encoder that needs the clips' length.
        kid_subset_size: rows per kernel-distance subset (clipped to the set sizes).
        batch_size: clips per encoder call.
        seed: seed of the kernel-distance subsets and the diversity pairs.

    Returns:
        ``ssim`` (MONAI ``SSIMMetric``, 2D, window ``min(11, side)``), ``psnr`` (MONAI ``PSNRMetric``, dB; inf for
        identical clips), ``lpips_style`` (with `perceptual`), with `encoder` named ``<e>`` the keys of
        :func:`~echo_monai.metrics.distribution_metrics` on ``real`` vs all ``N * K`` generated clips (``FD_<e>``,
        ``KD_<e>``, ...) and the same with a ``DT_`` prefix on the dynamics clips (``DT_FD_<e>``), when ``N >= 2``;
        ``diversity_ms_ssim`` (mean over clips of the mean pairwise MS-SSIM of frames ``1..T-1`` of its ``K`` samples;
        lower = more diverse; only for ``K >= 2``) and ``motion_energy_real`` / ``motion_energy_generated`` (mean
        absolute difference of consecutive frames; 0 for a still video).

    Raises:
        ValueError: when the shapes do not match the layouts above, `T < 2` or `value_range` is empty.

    Example:
        >>> generated = animate(real[:, :, 0], samples=4, seed=0)  # (N, 4, 1, T, H, W)
        >>> continuation_metrics(real, generated, encoder=judge.feature_encoder("video_classifier"))["ssim"]
    """
    _check_continuation(real, generated, value_range)
    low, high = (float(v) for v in value_range)
    real = real.detach().float().cpu().clamp(low, high)
    generated = generated.detach().float().cpu().clamp(low, high)
    num, samples, _, _, height, width = generated.shape
    side = min(height, width)
    window = min(11, side if side % 2 else side - 1)
    ssim = SSIMMetric(spatial_dims=2, data_range=high - low, win_size=window)
    psnr = PSNRMetric(max_val=high - low)
    ssim_values, psnr_values, lpips_values = [], [], []
    for i in range(num):  # one clip at a time: (K * (T - 1), C, H, W) frames
        predicted = _frames(generated[i, :, :, 1:])
        target = _frames(real[i, None, :, 1:].expand(samples, -1, -1, -1, -1))
        ssim_values.append(ssim(predicted, target).flatten())
        psnr_values.append(psnr(predicted, target).flatten())
        if perceptual is not None:
            lpips_values.append(perceptual(predicted, target).flatten())
    metrics: dict[str, float] = {
        "ssim": float(torch.cat(ssim_values).double().mean()),
        "psnr": float(torch.cat(psnr_values).double().mean()),
    }
    if perceptual is not None:
        metrics["lpips_style"] = float(torch.cat(lpips_values).double().mean())
    if encoder is not None and num >= 2:
        fake = generated.flatten(0, 1)
        subset = max(2, min(kid_subset_size, num, len(fake)))
        options = dict(kid_subset_size=subset, batch_size=batch_size, seed=seed)
        metrics.update(distribution_metrics(real, fake, encoder, **options))
        dynamics = distribution_metrics(
            _dynamics(real, pad_dynamics), _dynamics(fake, pad_dynamics), encoder, **options
        )
        metrics.update({f"DT_{key}": value for key, value in dynamics.items()})
    elif encoder is not None:
        logger.warning("continuation_metrics: distribution metrics need N >= 2 held-out clips, got %d; skipped.", num)
    if samples >= 2:
        diversity = [ms_ssim_diversity(generated[i, :, :, 1:], value_range, seed=seed) for i in range(num)]
        metrics["diversity_ms_ssim"] = float(np.mean(diversity))
    metrics["motion_energy_real"] = _motion_energy(real)
    metrics["motion_energy_generated"] = _motion_energy(generated.flatten(0, 1))
    return metrics


# --------------------------------------------------------------------------------------------- data checks
def _tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(value).as_subclass(torch.Tensor).float()


def _label(item: Mapping[str, Any], label_key: str, caller: str, name: str, index: int) -> int:
    label = torch.as_tensor(item[label_key])
    if label.numel() != 1 or float(label) not in (0.0, 1.0):
        raise ValueError(f"{caller}: {name}[{index}][{label_key!r}] must be a 0/1 class label, got {label.tolist()}.")
    return int(label)


def _videos(
    data: Sequence[Mapping[str, Any]], name: str, caller: str, video_key: str = "video", label_key: str = "label"
) -> list[dict[str, Any]]:
    """``[{video_key: (C, T, H, W) float, label_key: 0/1}]``, every clip of one shape; ValueError naming `name`."""
    if data is None or len(data) == 0:
        raise ValueError(f"{caller}: {name} must be a non-empty sequence of {{{video_key!r}, {label_key!r}}} dicts.")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or video_key not in item or label_key not in item:
            found = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(
                f"{caller}: {name}[{index}] must be a dict with {video_key!r} and {label_key!r}, got {found}."
            )
        video = _tensor(item[video_key])
        if video.ndim != 4 or (items and video.shape != items[0][video_key].shape):
            expected = f"{tuple(items[0][video_key].shape)} like {name}[0]" if items else "(C, T, H, W)"
            raise ValueError(f"{caller}: {name}[{index}][{video_key!r}] must be {expected}, got {tuple(video.shape)}.")
        items.append({video_key: video, label_key: _label(item, label_key, caller, name, index)})
    return items


def _same_shape(sets: Mapping[str, Sequence[Mapping[str, Any]]], key: str, caller: str) -> None:
    (first_name, first), *others = sets.items()
    for name, items in others:
        if items[0][key].shape != first[0][key].shape:
            raise ValueError(
                f"{caller}: {name} clips must have the shape of the {first_name} clips, "
                f"{tuple(first[0][key].shape)}, got {tuple(items[0][key].shape)}."
            )


def _both_classes(items: Sequence[Mapping[str, Any]], name: str, label_key: str, caller: str) -> None:
    present = sorted({int(item[label_key]) for item in items})
    if present != [0, 1]:
        raise ValueError(f"{caller}: {name} must hold videos of both classes 0 and 1, got only class {present}.")


# --------------------------------------------------------------------------------------------- utility study
def _stratified_order(labels: Sequence[int], seed: int) -> dict[int, list[int]]:
    """Per class, the indices of its videos in a seed-dependent random order (the study takes prefixes)."""
    rng = np.random.default_rng(seed)
    return {c: [int(i) for i in rng.permutation(np.flatnonzero(np.asarray(labels) == c))] for c in (0, 1)}


def _subset_indices(order: Mapping[int, Sequence[int]], fraction: float) -> list[int]:
    """The first ``max(1, round(fraction * n_c))`` videos of each class ``c``: nested across fractions."""
    return sorted(i for indices in order.values() for i in indices[: max(1, round(fraction * len(indices)))])


def _summary(values: Sequence[float], reference: Sequence[float] | None = None) -> dict[str, float]:
    """:func:`summarise_runs` (or :func:`paired_difference` against `reference`) as a dict; NaNs without a value."""
    finite = [
        v for i, v in enumerate(values) if math.isfinite(v) and (reference is None or math.isfinite(reference[i]))
    ]
    if not finite:
        return {"mean": math.nan, "standard_error": math.nan, "low": math.nan, "high": math.nan, "runs": 0}
    summary = summarise_runs(values) if reference is None else paired_difference(values, reference)
    return summary.to_dict()


def video_classification_study(
    real_train: Sequence[Mapping[str, Any]],
    real_test: Sequence[Mapping[str, Any]],
    augmentations: Mapping[str, Sequence[Mapping[str, Any]]],
    fractions: Sequence[float] = (0.25, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    evaluator_kwargs: Mapping[str, Any] | None = None,
    video_key: str = "video",
    label_key: str = "label",
) -> dict[str, Any]:
    """The downstream test of LDDM: does adding videos to a few real ones help a benign-vs-malignant classifier?

    For each fraction and seed, a class-stratified subset of `real_train` is drawn (``max(1, round(fraction * n_c))``
    videos of class ``c``, in a seed-dependent order, so smaller fractions are subsets of larger ones); one
    :class:`~echo_monai.metrics.VideoClassificationEvaluator` per seed (``num_classes=2``, initial weights seeded by
    it) is trained from the same initial weights on ``real`` (the subset alone) and on ``real+<name>`` (the subset
    plus all of ``augmentations[name]``), and tested on `real_test`. Runs of one seed are paired: same initial
    weights, same subset. With ``max_epochs`` a larger mix gets more optimisation steps; pass ``max_steps`` in
    `evaluator_kwargs` to give every mix the same number.

    Args:
        real_train: real training videos ``{video_key: (1, T, H, W) in [-1, 1], label_key: 0/1}``, both classes.
        real_test: held-out real videos, same layout.
        augmentations: name (e.g. ``"synthetic"``, ``"still"``, ``"jitter"``) -> videos added to the real subset.
        fractions: shares of `real_train` to use, each in (0, 1].
        seeds: one run per seed (the subset, the initial weights and the batch order).
        evaluator_kwargs: further arguments of the evaluator (``max_epochs``, ``max_steps``, ``batch_size``,
            ``block_inplanes``, ``learning_rate``, ``device``, ...).
        video_key: sample key of the clips.
        label_key: sample key of the 0/1 labels.

    Returns:
        ``{"fractions": {"<fraction>": {mix: row}}, "mixes", "seeds", "num_test_videos"}`` where each row holds
        ``num_train_videos``, ``num_real_videos``, ``accuracy`` / ``f1`` / ``auc`` summaries over the seeds
        (``mean``, ``standard_error``, ``low``, ``high``, ``runs``: see :func:`~echo_monai.metrics.summarise_runs`),
        ``runs`` (the per-seed values) and, for ``real+<name>``, ``delta_vs_real``: the paired differences to ``real``.

    Raises:
        ValueError: for an empty set, a `real_train` without both classes, clips of different shapes, a fraction
            outside (0, 1], no seeds, or an augmentation named ``real`` or empty.

    Example:
        >>> study = video_classification_study(train, test, {"synthetic": lddm, "still": still}, seeds=(0, 1, 2))
        >>> study["fractions"]["0.25"]["real+synthetic"]["delta_vs_real"]["auc"]["mean"]
    """
    caller = "video_classification_study"
    train = _videos(real_train, "real_train", caller, video_key, label_key)
    test = _videos(real_test, "real_test", caller, video_key, label_key)
    _both_classes(train, "real_train", label_key, caller)
    extra = {}
    for name, data in augmentations.items():
        if not name or name == "real":
            raise ValueError(f"{caller}: augmentations must be named, and not 'real', got {name!r}.")
        extra[str(name)] = _videos(data, f"augmentations[{name!r}]", caller, video_key, label_key)
    named = {f"augmentations[{name!r}]": items for name, items in extra.items()}
    _same_shape({"real_train": train, "real_test": test, **named}, video_key, caller)
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"{caller}: fractions must be a non-empty sequence of values in (0, 1], got {fractions}.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError(f"{caller}: seeds must hold at least one seed, got {seeds}.")
    kwargs = {**dict(evaluator_kwargs or {}), "input_key": video_key, "target_key": label_key}
    mixes = ["real", *(f"real+{name}" for name in extra)]
    labels = [item[label_key] for item in train]

    runs = {f: {mix: {score: [] for score, _ in STUDY_SCORES} for mix in mixes} for f in fractions}
    sizes: dict[float, dict[str, int]] = {f: {} for f in fractions}
    for seed in seeds:
        evaluator = VideoClassificationEvaluator(num_classes=2, seed=seed, **kwargs)
        order = _stratified_order(labels, seed)
        for fraction in fractions:
            subset = [train[i] for i in _subset_indices(order, fraction)]
            for mix in mixes:
                data = subset + (extra[mix.removeprefix("real+")] if mix != "real" else [])
                evaluator.fit(data)
                scores = evaluator.evaluate(test)
                for score, _ in STUDY_SCORES:
                    runs[fraction][mix][score].append(float(scores[score]))
                sizes[fraction][mix] = len(data)
                sizes[fraction]["real_only"] = len(subset)
            logger.info("%s: seed %d, fraction %g done (%d real videos)", caller, seed, fraction, len(subset))

    table: dict[str, dict[str, Any]] = {}
    for fraction in fractions:
        rows: dict[str, Any] = {}
        reference = runs[fraction]["real"]
        for mix in mixes:
            values = runs[fraction][mix]
            row: dict[str, Any] = {
                "num_train_videos": sizes[fraction][mix],
                "num_real_videos": sizes[fraction]["real_only"],
                **{score: _summary(values[score]) for score, _ in STUDY_SCORES},
                "runs": {score: list(values[score]) for score, _ in STUDY_SCORES},
            }
            if mix != "real":
                row["delta_vs_real"] = {s: _summary(values[s], reference[s]) for s, _ in STUDY_SCORES}
            rows[mix] = row
        table[f"{fraction:g}"] = rows
    return {"fractions": table, "mixes": mixes, "seeds": seeds, "num_test_videos": len(test)}


def _cell(summary: Mapping[str, Any] | None, signed: bool = False) -> str:
    if summary is None:
        return "—"
    mean, error = float(summary["mean"]), float(summary["standard_error"])
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return text + (f" ± {error:.3f}" if math.isfinite(error) else "")


def study_table(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`video_classification_study`: a row per fraction and mix.

    Args:
        result: the study's return value (or its JSON round trip).

    Returns:
        a table with the real fraction, the mix, the training videos, accuracy / F1 / AUC as ``mean ± se`` over the
        seeds and their paired differences to the real-only mix (``Δ``; ``—`` for the real-only row).

    Raises:
        ValueError: when `result` has no ``fractions`` table.
    """
    if not isinstance(result, Mapping) or not isinstance(result.get("fractions"), Mapping):
        raise ValueError("study_table: result must be the dict returned by video_classification_study.")
    header = ["real fraction", "mix", "videos", *(h for _, h in STUDY_SCORES), *(f"Δ {h}" for _, h in STUDY_SCORES)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fraction, rows in result["fractions"].items():
        for mix, row in rows.items():
            deltas = row.get("delta_vs_real", {})
            cells = [fraction, mix, str(row["num_train_videos"])]
            cells += [_cell(row[score]) for score, _ in STUDY_SCORES]
            cells += [_cell(deltas.get(score), signed=True) if deltas else "—" for score, _ in STUDY_SCORES]
            lines.append("| " + " | ".join(cells) + " |")
    seeds = result.get("seeds", [])
    return "\n".join(lines) + f"\n\nmean ± standard error over {len(seeds)} seed(s) {list(seeds)}; Δ: paired by seed."


# --------------------------------------------------------------------------------------------- entry point
def _baselines(
    images: Sequence[dict[str, Any]], count: int, num_frames: int, jitter_kwargs: Mapping[str, Any], seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` still and jittered videos: video ``j`` from ``images[j % len(images)]`` (jitter seed ``seed + j``)."""
    still, jitter = [], []
    for j in range(count):
        image, label = images[j % len(images)]["image"], images[j % len(images)]["label"]
        still.append({"video": still_video(image, num_frames), "label": label})
        jitter.append({"video": affine_jitter_video(image, num_frames, seed=seed + j, **jitter_kwargs), "label": label})
    return still, jitter


def _images(data: Sequence[Mapping[str, Any]], caller: str) -> list[dict[str, Any]]:
    if data is None or len(data) == 0:
        raise ValueError(f"{caller}: images must be a non-empty sequence of {{'image', 'label'}} dicts.")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or "image" not in item or "label" not in item:
            found = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(f"{caller}: images[{index}] must be a dict with 'image' and 'label', got {found}.")
        image = _tensor(item["image"])
        if image.ndim != 3:
            raise ValueError(f"{caller}: images[{index}]['image'] must be (C, H, W), got {tuple(image.shape)}.")
        items.append({"image": image, "label": _label(item, "label", caller, "images", index)})
    return items


def _frame_samples(videos: Sequence[Mapping[str, Any]], frames_per_video: int) -> list[dict[str, Any]]:
    """``frames_per_video`` evenly spaced frames `(C, H, W)` of each clip, labelled as their clip."""
    samples = []
    for item in videos:
        steps = item["video"].shape[1]
        for t in sorted({int(round(float(x))) for x in np.linspace(0, steps - 1, min(frames_per_video, steps))}):
            samples.append({"image": item["video"][:, t], "label": item["label"]})
    return samples


def evaluate_image_to_video(
    animate: Callable[[torch.Tensor, int, int], torch.Tensor],
    held_out: Sequence[Mapping[str, Any]],
    real_train: Sequence[Mapping[str, Any]],
    synthetic: Sequence[Mapping[str, Any]],
    images: Sequence[Mapping[str, Any]],
    report_dir: str | os.PathLike,
    samples_per_image: int = 2,
    num_frames: int = 16,
    encoder_factory: Callable[[], FeatureEncoder] | None = None,
    i3d_path: str | os.PathLike | None = None,
    perceptual_layers: Sequence[str] | None = ("layer1", "layer2", "layer3"),
    fractions: Sequence[float] = (0.25, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    evaluator_kwargs: Mapping[str, Any] | None = None,
    jitter_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    frames_per_video: int = 4,
    title: str = "us_image_to_video evaluation",
    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The evaluate stage of ``us_image_to_video``: continuation metrics, the utility study, the report.

    1. **Judges**, trained on `real_train` with `evaluator_kwargs` (global seed `seed`): a 3D video classifier
       (benign vs malignant) whose penultimate features are the video encoder (``FD_video_classifier``,
       ``DT_FD_video_classifier``), unless `encoder_factory` gives another (e.g. ``partial(i3d_encoder, path)``: FVD,
       DT-FVD); and a 2D image classifier on ``frames_per_video`` frames of each clip whose `perceptual_layers` give
       the LPIPS-style distance (a 2D network, because the distance is per frame, as LPIPS is; None or empty skips).
    2. **Continuation**: ``animate`` turns the first frames of `held_out` into `samples_per_image` videos each,
       scored by :func:`continuation_metrics`.
    3. **Utility**: :func:`video_classification_study` with the augmentations ``synthetic``, ``still`` and
       ``jitter``. The two baselines have ``len(synthetic)`` videos each: video ``j`` is built from
       ``images[j % len(images)]`` and carries its label (so when `synthetic` holds the animations of `images`, in
       order, each synthetic, still and jitter video shares its source image).
    4. **Report**: ``metrics.json``, ``report.md`` (the tables plus :func:`study_table`) and
       ``samples_held_out_vs_generated.png``, each written atomically into `report_dir`.

    Args:
        animate: the trained model, ``animate(first_frames (N, 1, H, W) in [-1, 1], samples, seed)`` returning
            ``(N, samples, 1, T, H, W)`` in [-1, 1].
        held_out: held-out real clips ``{"video": (1, T, H, W) in [-1, 1], "label": 0/1}``.
        real_train: real training clips (the judges' and the study's real data), both classes.
        synthetic: the generated dataset read back, same layout.
        images: the animated stills ``{"image": (1, H, W) in [-1, 1], "label": 0/1}``.
        report_dir: output folder (created if missing).
        samples_per_image: videos per held-out first frame (>= 2 adds ``diversity_ms_ssim``).
        num_frames: frames per clip, ``T`` of every set and of `animate`'s output (>= 2).
        encoder_factory: zero-argument callable giving the video encoder; None: the real-trained video classifier.
        i3d_path: a local TorchScript file of the standard I3D: the video encoder is I3D (FVD, DT-FVD), on the
            judges' device; ignored when ``encoder_factory`` is given. Nothing is downloaded.
        perceptual_layers: layers of the 2D judge for the LPIPS-style distance.
        fractions: real fractions of the study.
        seeds: seeds of the study.
        evaluator_kwargs: arguments of every classifier (``max_epochs``, ``max_steps``, ``batch_size``, ...).
        jitter_kwargs: bounds of :func:`~echo_monai.transforms.affine_jitter_video` (not ``seed``).
        seed: seed of `animate`, of the judges and of the jitter motions.
        reconstruct: the stage-1 autoencoder's deterministic reconstruction of clips ``(N, 1, T, H, W)`` (e.g.
            ``FirstFrameVideoAutoencoder.reconstruct``); None skips the ``reconstruction`` section (SSIM, PSNR and L1
            on frames 1..T-1, next to the first frame held still).
        frames_per_video: frames of each real clip the 2D judge is trained on.
        title: report title.

    Returns:
        the metrics written to ``metrics.json``: ``data``, ``judges``, ``continuation`` and ``classification``.

    Raises:
        ValueError: naming the argument, for an empty set, a `real_train` with one class only, clips or images whose
            size differs from `held_out`'s, or an `animate` output of the wrong shape.

    Example:
        >>> metrics = evaluate_image_to_video(animate, held_out, real_train, synthetic, busi, "eval", seeds=(0, 1))
        >>> metrics["continuation"]["DT_FD_video_classifier"], metrics["classification"]["fractions"]["0.25"]
    """
    caller = "evaluate_image_to_video"
    if samples_per_image < 1:
        raise ValueError(f"{caller}: samples_per_image must be >= 1, got {samples_per_image}.")
    if frames_per_video < 1:
        raise ValueError(f"{caller}: frames_per_video must be >= 1, got {frames_per_video}.")
    sets = {name: _videos(data, name, caller) for name, data in [("held_out", held_out), ("real_train", real_train)]}
    sets["synthetic"] = _videos(synthetic, "synthetic", caller)
    _both_classes(sets["real_train"], "real_train", "label", caller)
    _same_shape(sets, "video", caller)
    channels, steps, height, width = sets["held_out"][0]["video"].shape
    if num_frames != steps or steps < 2:
        raise ValueError(f"{caller}: num_frames must equal the clips' T = {steps} (>= 2), got {num_frames}.")
    stills = _images(images, caller)
    if any(item["image"].shape != (channels, height, width) for item in stills):
        bad = next(item["image"].shape for item in stills if item["image"].shape != (channels, height, width))
        raise ValueError(
            f"{caller}: images must be {(channels, height, width)} like the clips' frames, got {tuple(bad)}."
        )
    options = dict(evaluator_kwargs or {})
    if encoder_factory is None and i3d_path:
        encoder_factory = functools.partial(i3d_encoder, i3d_path, options.get("device", "cpu"))

    # 1. the judges, trained on real videos only
    judges: dict[str, Any] = {}
    if encoder_factory is None:
        video_judge = VideoClassificationEvaluator(num_classes=2, seed=seed, **options)
        video_judge.fit(sets["real_train"])
        judges["video_classifier_on_held_out"] = video_judge.evaluate(sets["held_out"])
        encoder = video_judge.feature_encoder("video_classifier")
    else:
        encoder = encoder_factory()
    perceptual = None
    if perceptual_layers:
        image_judge = ImageClassificationEvaluator(num_classes=2, seed=seed, **options)
        image_judge.fit(_frame_samples(sets["real_train"], frames_per_video))
        judges["image_classifier_on_held_out_frames"] = image_judge.evaluate(
            _frame_samples(sets["held_out"], frames_per_video)
        )
        perceptual = PerceptualDistance(
            copy.deepcopy(image_judge.network), list(perceptual_layers), device=image_judge.device
        )

    # 2. continuation of the held-out first frames
    real = torch.stack([item["video"] for item in sets["held_out"]])
    with torch.no_grad():
        generated = torch.as_tensor(animate(real[:, :, 0], samples_per_image, seed)).as_subclass(torch.Tensor).float()
    expected = (len(real), samples_per_image, channels, steps, height, width)
    if tuple(generated.shape) != expected:
        raise ValueError(
            f"{caller}: animate must return {expected} for these first frames, got {tuple(generated.shape)}."
        )
    continuation = continuation_metrics(real, generated, encoder=encoder, perceptual=perceptual, seed=seed)
    # the same scores of the first frame held still: what a model that learnt no motion would get
    held_still = real[:, :, :1].expand_as(real)[:, None]
    continuation_still = continuation_metrics(real, held_still, encoder=encoder, perceptual=perceptual, seed=seed)
    reconstruction: dict[str, float] = {}
    if reconstruct is not None:
        with torch.no_grad():
            rebuilt = torch.as_tensor(reconstruct(real)).as_subclass(torch.Tensor).float().cpu()
        if rebuilt.shape != real.shape:
            raise ValueError(f"{caller}: reconstruct must return {tuple(real.shape)}, got {tuple(rebuilt.shape)}.")
        reconstruction = _reconstruction(real, rebuilt)

    # 3. utility: real vs real + synthetic / still / jitter
    still, jitter = _baselines(stills, len(sets["synthetic"]), steps, dict(jitter_kwargs or {}), seed)
    study = video_classification_study(
        sets["real_train"],
        sets["held_out"],
        {"synthetic": sets["synthetic"], "still": still, "jitter": jitter},
        fractions=fractions,
        seeds=seeds,
        evaluator_kwargs=options,
    )

    metrics: dict[str, Any] = {
        "data": {
            "held_out_videos": len(sets["held_out"]),
            "real_train_videos": len(sets["real_train"]),
            "synthetic_videos": len(sets["synthetic"]),
            "still_images": len(stills),
            "samples_per_image": samples_per_image,
            "frames": steps,
            "frame_size": [height, width],
        },
        "judges": judges,
        "reconstruction": reconstruction,
        "continuation": continuation,
        "continuation_still_baseline": continuation_still,
        "classification": study,
    }
    _write(Path(report_dir), metrics, real, generated, title)
    return metrics


def _reconstruction(real: torch.Tensor, rebuilt: torch.Tensor) -> dict[str, float]:
    """SSIM, PSNR and L1 of the autoencoder's reconstruction on frames 1..T-1, and of the first frame held still."""
    later = slice(1, None)
    still = real[:, :, :1].expand_as(real)
    out = {}
    for name, video in (("autoencoder", rebuilt), ("first_frame_held_still", still)):
        window = min(7, real.shape[-1], real.shape[-2])
        scores = reconstruction_metrics(video[:, :, later], real[:, :, later], win_size=window - (1 - window % 2))
        out[f"{name}_ssim"], out[f"{name}_psnr"] = scores["ssim"], scores["psnr"]
        out[f"{name}_l1"] = float((video[:, :, later] - real[:, :, later]).abs().mean())
    out["first_frame_exact"] = float(torch.equal(rebuilt[:, :, 0], real[:, :, 0]))
    return out


def _write(folder: Path, metrics: Mapping[str, Any], real: torch.Tensor, generated: torch.Tensor, title: str) -> None:
    """``metrics.json``, ``report.md`` and the sample figure, each atomically."""
    clean = to_json_compatible(metrics)
    write_json(folder / "metrics.json", clean)
    figure = "samples_held_out_vs_generated.png"
    write_png(folder / figure, sample_grid(real, generated[:, 0]))
    sections = ("data", "judges", "reconstruction", "continuation", "continuation_still_baseline")
    tables = markdown_tables({key: clean[key] for key in sections if clean.get(key)})
    text = (
        f"# {title}\n\n{tables}\n\n## Video classification: real vs real + added videos\n\n"
        f"{study_table(clean['classification'])}\n\n## Figures\n\n**Held-out real (top) vs generated from its first "
        f"frame (bottom), middle frame**\n\n![samples]({figure})\n"
    )
    write_text(folder / "report.md", text)
