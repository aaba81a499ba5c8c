"""The evaluation of motion-conditioned echo video generation (MCDM: Li, Reynaud, Müller, Kainz, "Label-free
Motion-Conditioned Diffusion Model for Cardiac Ultrasound Synthesis", 2025).

MCDM animates a reference frame with the motion features of a *driving* video. Its claim is that the generated video
moves like the driving one, without any EF label. The study scores that claim, for the trained model and for any other
model given the same inputs (e.g. echo_flow's EF-conditioned model, or a still baseline), side by side:

- **motion faithfulness** (:func:`motion_faithfulness`): the Pearson correlation and the end-point error of the dense
  optical flow (:func:`dense_flow`, OpenCV) of the driving and the generated video inside the ultrasound sector, next
  to its chance level (each driving video paired with another video's generation);
- **temporal consistency** (:func:`temporal_consistency`): SSIM of consecutive frames, of the generated and the real
  driving clips;
- **EF faithfulness** (:func:`ef_faithfulness`): the EF a real-trained regressor measures on the generated video
  against the EF it measures on the driving video;
- **feature distances**: :func:`~echo_monai.metrics.distribution_metrics` of generated vs driving clips with the EF
  regressor's features (``FD_ef_regressor``) and any other video or frame encoder.

:func:`evaluate_motion_video` runs them all and writes ``metrics.json`` and ``report.md``;
:func:`ef_conditioned_models` loads trained echo_flow bundles as extra models (the label-conditioned counterpart,
animating the same reference frames at the driving videos' EF labels).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from monai.metrics import SSIMMetric
from monai.utils import StrEnum

from echo_monai.apps.video_evaluation import _faithfulness, _feature_distances, video_frames
from echo_monai.data.atomic import write_json, write_text
from echo_monai.metrics import (
    EjectionFractionEvaluator,
    FeatureEncoder,
    InputKind,
    markdown_tables,
    regression_metrics,
    to_json_compatible,
)
from echo_monai.transforms.label_map import sector_from_image

__all__ = [
    "FlowMethod",
    "dense_flow",
    "ef_conditioned_models",
    "ef_faithfulness",
    "evaluate_motion_video",
    "motion_faithfulness",
    "temporal_consistency",
]

#: the name of the model passed as ``generate`` in the report, and of the real driving clips' reference row
MODEL, REAL = "model", "real_driving"


class FlowMethod(StrEnum):
    """Dense optical flow algorithms of OpenCV."""

    FARNEBACK = "farneback"
    DIS = "dis"


def _farneback(previous: np.ndarray, following: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    settings = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
    settings.update(options)
    return cv2.calcOpticalFlowFarneback(previous, following, None, flags=0, **settings)


def _dis(previous: np.ndarray, following: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    flow = cv2.DISOpticalFlow_create(int(options.get("preset", cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)))
    return flow.calc(previous, following, None)


#: flow method -> ``flow(previous uint8 (H, W), following uint8 (H, W), options) -> (H, W, 2) float32``
FLOW_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], np.ndarray]] = {
    FlowMethod.FARNEBACK: _farneback,
    FlowMethod.DIS: _dis,
}


def _check_videos(videos: Any, name: str, caller: str) -> torch.Tensor:
    """`videos` as a float CPU tensor, or ValueError unless it is `(N, 1, T, H, W)` with N >= 1 and T >= 2."""
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[1] != 1:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"{caller}: {name} must be a (N, 1, T, H, W) tensor in [-1, 1], got {shape}.")
    if videos.shape[0] < 1 or videos.shape[2] < 2:
        raise ValueError(f"{caller}: {name} needs N >= 1 videos of T >= 2 frames, got {tuple(videos.shape)}.")
    return videos.detach().as_subclass(torch.Tensor).float().cpu()


def dense_flow(
    video: torch.Tensor, method: FlowMethod | str = FlowMethod.FARNEBACK, options: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """Frame-to-frame dense optical flow of videos, with OpenCV.

    Frames are clipped to [-1, 1] and mapped to uint8 (``round((x + 1) * 127.5)``); the flow from frame ``t`` to
    ``t + 1`` is ``cv2.calcOpticalFlowFarneback`` (``"farneback"``: pyramid scale 0.5, 3 levels, window 15,
    3 iterations, polynomial 5 / 1.2, each overridable through `options`) or ``cv2.DISOpticalFlow`` (``"dis"``,
    ``options={"preset": cv2.DISOPTICAL_FLOW_PRESET_*}``, medium by default).

    Args:
        video: videos `(N, 1, T, H, W)` in [-1, 1], `T >= 2`.
        method: a :class:`FlowMethod`.
        options: keyword arguments of the method (see above).

    Returns:
        float32 flow `(N, T - 1, 2, H, W)` in pixels per frame: channel 0 is dx (along W), channel 1 dy (along H).

    Raises:
        ValueError: when `video` is not `(N, 1, T, H, W)` with `T >= 2`, `method` is unknown, or OpenCV rejects the
            frames or the options (DIS needs frames of at least 12 px).

    Example:
        >>> flow = dense_flow(torch.rand(2, 1, 8, 32, 32) * 2 - 1)  # (2, 7, 2, 32, 32)
        >>> speed = flow.norm(dim=2).mean()
    """
    video = _check_videos(video, "video", "dense_flow")
    if str(method) not in FLOW_METHODS:
        raise ValueError(f"dense_flow: method must be one of {[str(m) for m in FLOW_METHODS]}, got {method!r}.")
    flow_fn, settings = FLOW_METHODS[str(method)], dict(options or {})
    frames = ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).numpy()[:, 0]  # (N, T, H, W)
    try:
        flows = np.stack(
            [np.stack([flow_fn(clip[t], clip[t + 1], settings) for t in range(len(clip) - 1)]) for clip in frames]
        )  # (N, T - 1, H, W, 2)
    except cv2.error as error:  # e.g. DIS needs frames of >= 12 px, or a bad option
        raise ValueError(
            f"dense_flow: OpenCV's {str(method)!r} flow failed on frames of {tuple(video.shape[-2:])} px with options "
            f"{settings}: {str(error).strip().splitlines()[-1]}"
        ) from error
    return torch.from_numpy(np.ascontiguousarray(flows.transpose(0, 1, 4, 2, 3), dtype=np.float32))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two flat tensors; 0 when either is constant (no motion to share)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    norm = float(a.norm() * b.norm())
    return float((a * b).sum()) / norm if norm > 1e-12 else 0.0


def _sector(mean_frame: torch.Tensor, threshold: float) -> torch.Tensor:
    """The convex hull of the pixels of `(H, W)` above `threshold`; every pixel when there are too few of them."""
    try:
        return torch.from_numpy(sector_from_image(mean_frame.numpy(), threshold=threshold))
    except ValueError:
        return torch.ones(mean_frame.shape, dtype=torch.bool)


def _standard_error(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def motion_faithfulness(
    driving: torch.Tensor,
    generated: torch.Tensor,
    mask: torch.Tensor | np.ndarray | None = None,
    method: FlowMethod | str = FlowMethod.FARNEBACK,
    background_threshold: float = -0.95,
    flow_options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Does each generated video move like its driving video? Flow correlation and end-point error in the sector.

    Per video ``i``, the flows ``(T - 1, 2, H, W)`` of both videos (:func:`dense_flow`) are compared over the pixels
    of its sector and all frame pairs: the Pearson correlation of the two flows with dx and dy stacked (close to
    their cosine similarity for cardiac motion, whose mean flow is near zero; 0 when either video does not move),
    the mean end-point error ``|flow_g - flow_d|`` and the mean flow magnitude of each. The chance level
    ``flow_correlation_shuffled`` pairs driving video ``i`` with generated video ``(i + 1) % N`` instead.

    The sector is `mask` when given (the mask of driving video ``i`` serves every pair it is in); otherwise the
    convex hull of the pixels where either video's mean frame is above `background_threshold` (the hull keeps the
    dark blood pool inside the fan; every pixel when under 5 % of them are above it).

    Args:
        driving: driving videos `(N, 1, T, H, W)` in [-1, 1].
        generated: generated videos, same shape (video ``i`` driven by ``driving[i]``).
        mask: sectors `(N, 1, H, W)` or one for all `(H, W)`, bool; None: found from the videos as above.
        method: a :class:`FlowMethod`.
        background_threshold: intensity in [-1, 1] above which a mean-frame pixel is inside the sector (-0.95:
            2.5 % of the grey range above black).
        flow_options: options of :func:`dense_flow`.

    Returns:
        ``flow_correlation`` (mean over videos) and ``flow_correlation_standard_error`` (NaN for one video),
        ``flow_correlation_shuffled`` (NaN for one video), ``flow_epe`` (pixels per frame),
        ``motion_energy_driving`` and ``motion_energy_generated`` (mean flow magnitude, pixels per frame) and
        ``num_videos``.

    Raises:
        ValueError: when the videos are not `(N, 1, T, H, W)` (`T >= 2`) of one shape, or `mask` does not fit them.

    Example:
        >>> scores = motion_faithfulness(driving, model(driving[:, :, 0], driving, seed=0))
        >>> scores["flow_correlation"], scores["flow_correlation_shuffled"]
    """
    caller = "motion_faithfulness"
    driving = _check_videos(driving, "driving", caller)
    generated = _check_videos(generated, "generated", caller)
    if generated.shape != driving.shape:
        raise ValueError(
            f"{caller}: generated must have the shape of driving, {tuple(driving.shape)}, got {tuple(generated.shape)}."
        )
    num, height, width = driving.shape[0], driving.shape[3], driving.shape[4]
    if mask is not None:
        mask = torch.as_tensor(mask).as_subclass(torch.Tensor).bool().cpu()
        if mask.shape == (height, width):
            mask = mask.expand(num, 1, height, width)
        if mask.shape != (num, 1, height, width):
            raise ValueError(
                f"{caller}: mask must be (N, 1, H, W) = {(num, 1, height, width)} or (H, W), got {tuple(mask.shape)}."
            )
    flow_d = dense_flow(driving, method, flow_options)
    flow_g = dense_flow(generated, method, flow_options)
    mean_d, mean_g = driving.mean(dim=2)[:, 0], generated.mean(dim=2)[:, 0]  # (N, H, W)

    def sector(i: int, j: int) -> torch.Tensor:
        if mask is not None:
            return mask[i, 0]
        return _sector(torch.maximum(mean_d[i], mean_g[j]), background_threshold)

    correlations, errors, energy_d, energy_g, shuffled = [], [], [], [], []
    for i in range(num):
        inside = sector(i, i)
        d, g = flow_d[i][..., inside], flow_g[i][..., inside]  # (T - 1, 2, M)
        correlations.append(_pearson(d, g))
        errors.append(float((g - d).double().norm(dim=1).mean()))
        energy_d.append(float(d.double().norm(dim=1).mean()))
        energy_g.append(float(g.double().norm(dim=1).mean()))
        if num > 1:
            j = (i + 1) % num
            inside = sector(i, j)
            shuffled.append(_pearson(flow_d[i][..., inside], flow_g[j][..., inside]))
    return {
        "flow_correlation": float(np.mean(correlations)),
        "flow_correlation_standard_error": _standard_error(correlations),
        "flow_correlation_shuffled": float(np.mean(shuffled)) if shuffled else math.nan,
        "flow_epe": float(np.mean(errors)),
        "motion_energy_driving": float(np.mean(energy_d)),
        "motion_energy_generated": float(np.mean(energy_g)),
        "num_videos": num,
    }


def temporal_consistency(videos: torch.Tensor, win_size: int = 7) -> dict[str, float]:
    """SSIM of consecutive frames: how smoothly videos change (1 for a still video, near 0 for noise).

    Args:
        videos: videos `(N, 1, T, H, W)` in [-1, 1], `T >= 2` (clipped to [-1, 1]).
        win_size: SSIM Gaussian window (MONAI ``SSIMMetric``, 2D, data range 2), capped at the frame size (odd).

    Returns:
        ``frame_ssim_mean`` (per video the mean over its ``T - 1`` frame pairs, then over videos),
        ``frame_ssim_min`` (per video the worst frame pair, then the mean over videos) and ``num_videos``.

    Raises:
        ValueError: when `videos` is not `(N, 1, T, H, W)` with `T >= 2`, or `win_size < 1`.

    Example:
        >>> temporal_consistency(reference[:, :, None].expand(-1, -1, 8, -1, -1))["frame_ssim_mean"]  # 1.0
    """
    videos = _check_videos(videos, "videos", "temporal_consistency").clamp(-1.0, 1.0)
    if win_size < 1:
        raise ValueError(f"temporal_consistency: win_size must be >= 1, got {win_size}.")
    side = min(win_size, *videos.shape[-2:])
    ssim = SSIMMetric(spatial_dims=2, data_range=2.0, win_size=side if side % 2 else side - 1)
    # consecutive frames folded into the batch: (N * (T - 1), 1, H, W) pairs
    previous, following = (videos[:, :, s].transpose(1, 2).flatten(0, 1) for s in (slice(None, -1), slice(1, None)))
    scores = ssim(following, previous).double().reshape(videos.shape[0], -1)  # (N, T - 1)
    return {
        "frame_ssim_mean": float(scores.mean(dim=1).mean()),
        "frame_ssim_min": float(scores.amin(dim=1).mean()),
        "num_videos": int(videos.shape[0]),
    }


def ef_faithfulness(
    driving_ef: torch.Tensor | Sequence[float], generated_ef: torch.Tensor | Sequence[float]
) -> dict[str, float]:
    """Does the generated video keep the driving video's ejection fraction, as one EF regressor measures both?

    MCDM is label-free: it is asked for the driving video's motion, never for an EF value. The reference is thus the
    EF the regressor measures on the driving video, not the driving video's EF label: the regressor's own error on
    real clips cancels, what is left is what generation changed, and driving clips without a label count too.

    Args:
        driving_ef: EF measured on the driving videos `(N,)`, percent.
        generated_ef: EF measured on the generated videos `(N,)`, percent.

    Returns:
        ``mae``, ``rmse``, ``r2`` (NaN for a constant driving EF), ``pearson_r`` (0 when either is constant),
        ``bias`` (mean generated - driving) and ``num_videos``.

    Raises:
        ValueError: when the two hold different numbers of values, none, or a non-finite one.

    Example:
        >>> ef_faithfulness([40.0, 60.0], [42.0, 57.0])["mae"]  # 2.5
    """
    driving = torch.as_tensor(driving_ef, dtype=torch.float64).flatten()
    generated = torch.as_tensor(generated_ef, dtype=torch.float64).flatten()
    if len(driving) != len(generated) or len(driving) == 0:
        raise ValueError(
            f"ef_faithfulness: driving_ef and generated_ef must hold the same N >= 1 values, got {len(driving)} "
            f"and {len(generated)}."
        )
    if not (bool(torch.isfinite(driving).all()) and bool(torch.isfinite(generated).all())):
        raise ValueError("ef_faithfulness: driving_ef and generated_ef must be finite EF values in percent.")
    return _faithfulness(driving, generated, regression_metrics(generated, driving))


# --------------------------------------------------------------------------------------------- entry point
def ef_conditioned_models(
    bundle_roots: Mapping[str, str | os.PathLike] | None,
    num_frames: int,
    image_size: int,
    fps: float,
    bundle: str = "echo_flow",
    batch_size: int = 4,
) -> dict[str, Callable[..., torch.Tensor]]:
    """Trained EF-conditioned video models (``echo_flow`` bundles) as :func:`evaluate_motion_video` extra models.

    Each ``bundle_root`` is read as ``echo-monai infer <bundle>`` reads it (the preset and settings its checkpoints
    record), and its video model becomes a :class:`echo_monai.inferers.MotionTransfer` without motion: the reference
    frame (encoded by that bundle's autoencoder) is animated at the driving video's EF label over `num_frames` frames
    (overlapping windows when the model was trained on shorter clips), from the same seeded noise scheme. So
    label-free (MCDM) and label-conditioned (EchoFlow) generation are scored on the same inputs.

    Args:
        bundle_roots: model name -> the ``--bundle_root`` the bundle was trained in; None or empty: none.
        num_frames: frames of the evaluated clips.
        image_size: their frame size; the bundle must have been trained at it.
        fps: their frame rate; the bundle must have been trained at it (else its motion runs at another speed).
        bundle: the bundle (``echo_flow``: its ``generation::network``, ``video_sampler``, ``conditioning``).
        batch_size: videos sampled together.

    Raises:
        FileNotFoundError: a bundle root without the trained ``models/``.
        ValueError: a bundle trained at another frame size or frame rate, naming both.
    """
    from echo_monai.apps.cli import bundle_parser
    from echo_monai.inferers import LatentSampler, MotionTransfer

    models: dict[str, Callable[..., torch.Tensor]] = {}
    for name, root in dict(bundle_roots or {}).items():
        if not (Path(root) / "models").is_dir():
            raise FileNotFoundError(
                f"ef_conditioned_models: {name!r}: '{root}' has no models/ folder; train {bundle} there first."
            )
        overrides = {"bundle_root": str(root), "generate_frames": int(num_frames)}
        parser = bundle_parser(bundle, overrides)
        trained = {"image_size": parser.get_parsed_content("image_size"), "fps": parser.get_parsed_content("fps")}
        for key, wanted in (("image_size", int(image_size)), ("fps", float(fps))):
            if float(trained[key]) != float(wanted):
                raise ValueError(
                    f"ef_conditioned_models: {name!r} ({bundle} in '{root}') was trained with {key} {trained[key]}; "
                    f"the evaluated clips have {key} {wanted} (train it with --{key} {wanted})."
                )
        sampler = LatentSampler(
            parser.get_parsed_content("video_sampler"),
            autoencoder=parser.get_parsed_content("checkpoints::autoencoder").load(),
            scaler=parser.get_parsed_content("train_cache"),
            encode_concat=True,  # the references are pixel frames
        )
        models[name] = MotionTransfer(
            sampler,
            parser.get_parsed_content("generation::network"),
            None,
            parser.get_parsed_content("generation::sample_shape"),
            batch_size=batch_size,
            device=parser.get_parsed_content("device"),
            conditioning=parser.get_parsed_content("conditioning"),
        )
    return models


def _stack(data: Any, name: str, key: str, layout: str, caller: str) -> torch.Tensor:
    """``(N, *shape)`` of the items' `key`, every item of one `layout` shape; ValueError naming `name` otherwise."""
    if data is None or isinstance(data, (str, bytes, Mapping)) or len(data) == 0:
        raise ValueError(f"{caller}: {name} must be a non-empty sequence of {{{key!r}: {layout}}} dicts.")
    items: list[torch.Tensor] = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or key not in item:
            found = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(f"{caller}: {name}[{index}] must be a dict with {key!r}, got {found}.")
        value = torch.as_tensor(item[key]).as_subclass(torch.Tensor).float().cpu()
        expected = len(layout.split(","))
        if value.ndim != expected or value.shape[0] != 1 or (items and value.shape != items[0].shape):
            wanted = f"{tuple(items[0].shape)} like {name}[0]" if items else layout
            raise ValueError(f"{caller}: {name}[{index}][{key!r}] must be {wanted}, got {tuple(value.shape)}.")
        items.append(value)
    return torch.stack(items)


def _generate(
    model: Callable, label: str, references: torch.Tensor, driving: torch.Tensor, seed: int, ef: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        videos = model(references, driving, seed, ef.clone())
    if not isinstance(videos, torch.Tensor) or tuple(videos.shape) != tuple(driving.shape):
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(
            f"evaluate_motion_video: {label} must return videos {tuple(driving.shape)} like driving, got {shape}."
        )
    return videos.detach().as_subclass(torch.Tensor).float().cpu().clamp(-1.0, 1.0)


def _predict_ef(evaluator: EjectionFractionEvaluator, videos: torch.Tensor) -> torch.Tensor:
    """EF `(N,)` in percent of videos `(N, 1, T, H, W)` (placeholder targets: the labels are not needed)."""
    predictions, _ = evaluator.predict([{"video": video, "ejection_fraction": math.nan} for video in videos])
    return predictions.double().flatten()


def _extra_encoders(encoder_factory: Callable[[], Any] | None) -> tuple[list[FeatureEncoder], list[FeatureEncoder]]:
    """The video and the image encoders that `encoder_factory` gives (one encoder or a sequence)."""
    extra = encoder_factory() if encoder_factory is not None else []
    extra = [extra] if isinstance(extra, FeatureEncoder) else list(extra)
    if not all(isinstance(encoder, FeatureEncoder) for encoder in extra):
        raise ValueError("evaluate_motion_video: encoder_factory must return a FeatureEncoder or a sequence of them.")
    video = [encoder for encoder in extra if InputKind(encoder.input_kind) == InputKind.VIDEO]
    return video, [encoder for encoder in extra if InputKind(encoder.input_kind) == InputKind.IMAGE]


def _check_models(
    generate: Callable, extra_models: Mapping[str, Callable] | None, caller: str
) -> tuple[dict[str, Callable], dict[str, str]]:
    """``{name: model}`` with ``generate`` first, and the argument each comes from (for error messages)."""
    extra = dict(extra_models or {})
    for name in extra:
        if not isinstance(name, str) or name in ("", MODEL, REAL):
            raise ValueError(
                f"{caller}: extra_models names must be strings other than '', {MODEL!r}, {REAL!r}; got {name!r}."
            )
    models = {MODEL: generate, **extra}
    labels = {name: "generate" if name == MODEL else f"extra_models[{name!r}]" for name in models}
    for name, model in models.items():
        if not callable(model):
            raise ValueError(f"{caller}: {labels[name]} must be callable, got {type(model).__name__}.")
    return models, labels


def _check_real_train(real_train: Any, ef_evaluator: Any, caller: str) -> None:
    if real_train is None:
        return
    if ef_evaluator is None:
        raise ValueError(f"{caller}: real_train is only used to train ef_evaluator; pass ef_evaluator too.")
    if isinstance(real_train, (str, bytes, Mapping)) or len(real_train) == 0:
        raise ValueError(
            f"{caller}: real_train must be a non-empty sequence of {{'video', 'ejection_fraction'}} dicts."
        )
    for index, item in enumerate(real_train):
        if not isinstance(item, Mapping) or not {"video", "ejection_fraction"} <= set(item):
            found = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(f"{caller}: real_train[{index}] must have 'video' and 'ejection_fraction', got {found}.")


def evaluate_motion_video(
    generate: Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], torch.Tensor],
    driving: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]] | None,
    report_dir: str | os.PathLike,
    ef_evaluator: EjectionFractionEvaluator | None = None,
    real_train: Sequence[Mapping[str, Any]] | None = None,
    encoder_factory: Callable[[], FeatureEncoder | Sequence[FeatureEncoder]] | None = None,
    frame_stride: int = 4,
    seed: int = 0,
    title: str = "echo_motion_video evaluation",
    extra_models: Mapping[str, Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], torch.Tensor]] | None = None,
    privacy_gate: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The evaluate stage of ``echo_motion_video``: motion transfer from held-out driving clips, scored per model.

    1. **Generation**: every model (``generate`` as ``"model"``, then `extra_models`) animates the reference frames
       with the driving clips, same `seed`. Without `references` each driving clip's own first frame is the
       reference (the model reconstructs the driving clip from its first frame and its motion); with them,
       ``references[i]["image"]`` is animated with ``driving[i]``'s motion (cross-patient transfer).
    2. **Motion and smoothness**: :func:`motion_faithfulness` against the driving clips and
       :func:`temporal_consistency`, plus the latter on the driving clips themselves (row ``real_driving``).
    3. **EF** (with `ef_evaluator`): trained on `real_train` (None: used as given, already trained or loaded), it
       measures EF on the driving and generated clips; :func:`ef_faithfulness`, and ``judge_mae_on_driving`` against
       the driving clips' ``ejection_fraction`` labels where present.
    4. **Feature distances** of generated vs driving clips (needs N >= 2): the EF regressor's features
       (``FD_ef_regressor``, ...) and the video encoders of `encoder_factory`; its image encoders score every
       `frame_stride`-th frame (``frame_features``).
    5. **Privacy** (with `privacy_gate`, the export's gate): the share of each model's videos the gate drops
       (``gated_rate``) and their highest frame similarity to a training frame, next to the real driving clips
       (held-out patients: about ``1 - percentile / 100`` of them are dropped by construction).
    6. **Report**: ``metrics.json`` and ``report.md`` (a table per section, a row per model), written atomically.

    Args:
        generate: the trained model, ``generate(reference_frames (N, 1, H, W), driving_videos (N, 1, T, H, W),
            seed, ejection_fraction (N,))`` returning videos `(N, 1, T, H, W)` in [-1, 1]. ``ejection_fraction`` holds
            the driving clips' EF labels in percent (NaN where a clip has none): a label-free model ignores it, an
            EF-conditioned one (MCDM's optional EF token, echo_flow through :class:`EFConditionedAnimator`) is
            conditioned on it.
        driving: held-out real clips ``{"video": (1, T, H, W) in [-1, 1], "ejection_fraction": % (optional)}``.
        references: ``{"image": (1, H, W)}``, one per driving clip, or None (the driving clips' first frames).
        report_dir: output folder (created if missing).
        ef_evaluator: the EF regressor (the judge); None skips the EF section and ``FD_ef_regressor``.
        real_train: real training clips ``{"video", "ejection_fraction"}`` the judge is trained on.
        encoder_factory: zero-argument callable giving one or more extra :class:`FeatureEncoder` (video or image).
        frame_stride: frame step of the frame features (>= 1).
        seed: the generation seed.
        title: report title.
        extra_models: name -> a ``generate``-like model scored the same way (e.g. an EF-conditioned model adapted to
            this signature, or a still baseline).
        privacy_gate: the export's privacy gate (:class:`echo_monai.metrics.PrivacyGate` of frames, with its
            ``similarity`` and ``threshold``); None skips the privacy section.

    Returns:
        the metrics written to ``metrics.json``: ``data``, ``motion_faithfulness``, ``temporal_consistency`` and,
        as available, ``judge``, ``ef_faithfulness``, ``video_features``, ``frame_features``, ``privacy`` (rows:
        models).

    Raises:
        ValueError: naming the argument, for an empty or malformed `driving`, `references` or `real_train`,
            references that do not match the driving clips, a bad `frame_stride` or model name, or a model output
            that is not shaped like `driving`.

    Example:
        >>> metrics = evaluate_motion_video(mcdm.transfer, held_out, None, "eval", ef_evaluator=judge, real_train=train)
        >>> metrics["motion_faithfulness"]["model"]["flow_correlation"]
    """
    caller = "evaluate_motion_video"
    if int(frame_stride) < 1:
        raise ValueError(f"{caller}: frame_stride must be >= 1, got {frame_stride}.")
    models, labels = _check_models(generate, extra_models, caller)
    real = _stack(driving, "driving", "video", "(1, T, H, W)", caller)
    if real.shape[2] < 2:
        raise ValueError(f"{caller}: driving clips need T >= 2 frames, got {tuple(real.shape[1:])}.")
    if references is None:
        reference_frames, reference_mode = real[:, :, 0].clone(), "first frame of each driving clip (reconstruction)"
    else:
        reference_frames = _stack(references, "references", "image", "(1, H, W)", caller)
        if reference_frames.shape != (len(real), 1, *real.shape[3:]):
            raise ValueError(
                f"{caller}: references must hold {len(real)} images (1, H, W) = {(1, *real.shape[3:])}, one per "
                f"driving clip, got {len(reference_frames)} of {tuple(reference_frames.shape[1:])}."
            )
        reference_mode = "references[i] animated with driving[i]'s motion (cross-patient transfer)"
    _check_real_train(real_train, ef_evaluator, caller)
    video_encoders, frame_encoders = _extra_encoders(encoder_factory)

    labels_ef = torch.tensor(
        [math.nan if item.get("ejection_fraction") is None else float(item["ejection_fraction"]) for item in driving],
        dtype=torch.float64,
    )
    generated = {
        name: _generate(model, labels[name], reference_frames, real, seed, labels_ef) for name, model in models.items()
    }
    metrics: dict[str, Any] = {
        "data": {
            "driving_videos": len(real),
            "frames": int(real.shape[2]),
            "frame_size": list(real.shape[3:]),
            "references": reference_mode,
            "models": list(models),
            "seed": seed,
        },
        "motion_faithfulness": {name: motion_faithfulness(real, video) for name, video in generated.items()},
        "temporal_consistency": {
            REAL: temporal_consistency(real),
            **{name: temporal_consistency(video) for name, video in generated.items()},
        },
    }

    if ef_evaluator is not None:
        judge: dict[str, Any] = {"trained_here": real_train is not None}
        if real_train is not None:
            ef_evaluator.fit(real_train)
            judge["num_train_samples"] = len(real_train)
        driving_ef = _predict_ef(ef_evaluator, real)
        labelled = [i for i, item in enumerate(driving) if item.get("ejection_fraction") is not None]
        if labelled:
            ef_labels = [float(driving[i]["ejection_fraction"]) for i in labelled]
            scores = regression_metrics(driving_ef[labelled], ef_labels)
            judge.update({f"judge_{key}_on_driving": value for key, value in scores.items()})
            judge["labelled_driving_videos"] = len(labelled)
        judge["driving_ef_measured_mean"] = float(driving_ef.mean())
        metrics["judge"] = judge
        metrics["ef_faithfulness"] = {
            name: ef_faithfulness(driving_ef, _predict_ef(ef_evaluator, video)) for name, video in generated.items()
        }
        video_encoders.insert(0, ef_evaluator.feature_encoder("ef_regressor"))  # the trained judge's features

    if video_encoders:
        metrics["video_features"] = {
            name: _feature_distances(real, video, video_encoders, kid_subset_size=1000)
            for name, video in generated.items()
        }
    if frame_encoders:
        real_frames = video_frames(real, frame_stride)
        metrics["frame_features"] = {
            name: _feature_distances(real_frames, video_frames(video, frame_stride), frame_encoders, 1000)
            for name, video in generated.items()
        }
    if privacy_gate is not None:
        metrics["privacy"] = {
            REAL: _privacy(privacy_gate, real),
            **{name: _privacy(privacy_gate, video) for name, video in generated.items()},
        }
    _write(Path(report_dir), metrics, title)
    return metrics


def _privacy(gate: Callable[[torch.Tensor], torch.Tensor], videos: torch.Tensor) -> dict[str, float]:
    """The gate's verdict on videos: the share dropped, and the similarities when the gate gives them."""
    keep = torch.as_tensor(gate(videos)).flatten().bool()
    out = {"gated_rate": float((~keep).float().mean()), "videos": int(keep.numel())}
    if hasattr(gate, "similarity") and hasattr(gate, "threshold"):
        similarity = gate.similarity(videos).double()
        out.update(
            threshold=float(gate.threshold),
            nearest_train_similarity_mean=float(similarity.mean()),
            nearest_train_similarity_max=float(similarity.max()),
        )
    return out


def _write(folder: Path, metrics: Mapping[str, Any], title: str) -> None:
    """``metrics.json`` and ``report.md``, each atomically."""
    clean = to_json_compatible(metrics)
    write_json(folder / "metrics.json", clean)
    notes = (
        "flow_correlation: Pearson correlation of the generated and driving optical flow in the sector (1: same "
        "motion); flow_correlation_shuffled: the same with each driving clip paired with another clip's "
        "generation (the chance level). ef_faithfulness compares the EF the judge measures on the generated clip "
        "with the EF it measures on the driving clip (the model is label-free). real_driving: the real clips' own "
        "frame-to-frame SSIM, for reference. privacy: the share of videos the export's re-identification gate drops "
        "(real_driving: held-out real clips, dropped at about 1 - percentile / 100 by construction)."
    )
    write_text(folder / "report.md", f"# {title}\n\n{markdown_tables(clean)}\n\n## Notes\n\n{notes}\n")
