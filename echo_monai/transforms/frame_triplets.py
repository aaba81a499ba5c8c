"""Frame triplets and pseudo optical flow for self-supervised frame interpolation (MCDM's motion extractor).

MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound
Synthesis", 2025) trains its motion and appearance feature extractor
(:class:`echo_monai.networks.nets.MotionAppearanceFeatureExtractor`) to predict the middle frame of two frames of a
video, with an auxiliary loss towards pseudo optical flow from a classical dense method. :class:`FrameTripletd` picks
the three frames, :class:`PseudoFlowd` computes the flow; :class:`echo_monai.engines.FrameTripletPrepareBatch` and
:class:`echo_monai.engines.MAFELoss` train on them.

Flow convention (OpenCV's, shared by the network's flow head and the loss): ``flow[0]`` is dx, ``flow[1]`` is dy, in
pixels, with ``frame_a(x, y) ~ frame_b(x + dx(x, y), y + dy(x, y))``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

__all__ = ["FrameTripletd", "PseudoFlowd"]

_RULES = ("random", "similarity")


def _as_tensor(value: Any) -> torch.Tensor:
    """A tensor view of a tensor, a copy of an array (a read-only memory map included)."""
    return torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray) else torch.as_tensor(value)


def _correlation(frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Pearson correlation ``(T,)`` of each row of ``frames`` ``(T, N)`` with ``reference`` ``(N,)``."""
    frames = frames - frames.mean(dim=1, keepdim=True)
    reference = reference - reference.mean()
    return (frames @ reference) / (frames.norm(dim=1) * reference.norm()).clamp_min(1e-8)


class FrameTripletd(Randomizable, MapTransform):
    """Pick frames ``a < mid < b`` of a video ``(C, T, H, W)`` as an interpolation triplet, each ``(C, H, W)``.

    Rules, all label-free except the last:

    * ``"random"``: a gap g drawn uniformly in ``[min_gap, max_gap]`` (``max_gap`` None: T - 1), a drawn uniformly in
      ``[0, T - 1 - g]``, ``b = a + g``.
    * ``"similarity"`` (deterministic): the two extremes of the clip's frame-similarity curve. The similarity of two
      frames is the Pearson correlation of their pixels. First ``a*`` = the frame least correlated with the clip's
      mean frame, then ``b*`` = the frame least correlated with ``a*`` among the frames ``min_gap`` to ``max_gap``
      away; ``(a, b)`` is ``(a*, b*)`` in time order. Why: over a heart cycle the mean frame sits between the two
      extreme phases, so the frame furthest from it is one extreme (end-diastole or end-systole) and the frame
      furthest from that one is the other: roughly ED and ES, without labels, i.e. the largest motion of the cycle.
      (The frame *most* similar to the mean is a mid-cycle frame, so it is not used.) For clips of several cycles,
      set ``max_gap`` to about half a cycle so a and b fall in the same one.
    * ``ed_es_keys`` given (overrides ``rule``): the item's ED / ES frame indices (EchoNet readers:
      ``("ed_frame", "es_frame")``), in time order.

    In every rule ``mid = (a + b) // 2``.

    Args:
        keys: the video key, ``(C, T, H, W)`` (tensor or array; a lazy memory map works).
        rule: ``"random"`` or ``"similarity"``.
        min_gap: smallest ``b - a``; >= 2 so that the middle frame differs from both ends.
        max_gap: largest ``b - a``; None for T - 1.
        output_keys: where frames a, mid and b go, each ``(C, H, W)``.
        ed_es_keys: item keys of the ED and ES frame indices; None for the label-free rules.
        indices_key: where the chosen indices go, a ``(3,)`` long tensor ``[a, mid, b]``.

    Raises:
        ValueError: a bad argument; a video that is not ``(C, T, H, W)`` or is too short for ``min_gap``; ED / ES
            indices outside the clip or closer than ``min_gap``.
        KeyError: ``ed_es_keys`` given and the item lacks them.

    Example:
        >>> triplet = FrameTripletd("video", rule="similarity")
        >>> out = triplet({"video": torch.rand(1, 16, 112, 112)})
        >>> out["frame_a"].shape, out["frame_indices"]   # (torch.Size([1, 112, 112]), tensor([a, mid, b]))
    """

    def __init__(
        self,
        keys: str = "video",
        rule: str = "random",
        min_gap: int = 2,
        max_gap: int | None = None,
        output_keys: Sequence[str] = ("frame_a", "frame_mid", "frame_b"),
        ed_es_keys: tuple[str, str] | None = None,
        indices_key: str = "frame_indices",
    ) -> None:
        super().__init__(keys)
        if rule not in _RULES:
            raise ValueError(f"FrameTripletd: rule must be one of {list(_RULES)}, got '{rule}'.")
        if min_gap < 2:
            raise ValueError(f"FrameTripletd: min_gap must be >= 2 (a middle frame between a and b), got {min_gap}.")
        if max_gap is not None and max_gap < min_gap:
            raise ValueError(f"FrameTripletd: max_gap must be None or >= min_gap = {min_gap}, got {max_gap}.")
        if len(output_keys) != 3:
            raise ValueError(f"FrameTripletd: output_keys must name 3 keys (a, mid, b), got {list(output_keys)}.")
        if ed_es_keys is not None and len(ed_es_keys) != 2:
            raise ValueError(f"FrameTripletd: ed_es_keys must be (ed_key, es_key), got {ed_es_keys}.")
        self.rule, self.min_gap, self.max_gap = rule, int(min_gap), None if max_gap is None else int(max_gap)
        self.output_keys, self.ed_es_keys = tuple(output_keys), None if ed_es_keys is None else tuple(ed_es_keys)
        self.indices_key = indices_key

    def randomize(self, num_frames: int) -> tuple[int, int]:
        """Draw ``(a, b)`` of the random rule for a clip of ``num_frames`` (>= ``min_gap + 1``) frames."""
        largest = num_frames - 1 if self.max_gap is None else min(self.max_gap, num_frames - 1)
        gap = int(self.R.randint(self.min_gap, largest + 1))
        first = int(self.R.randint(0, num_frames - gap))
        return first, first + gap

    def _similarity_pair(self, video: torch.Tensor) -> tuple[int, int]:
        frames = video.float().permute(1, 0, 2, 3).reshape(video.shape[1], -1)  # (T, C * H * W)
        to_mean = _correlation(frames, frames.mean(dim=0))  # (T,): each frame against the clip's mean frame
        first = int(to_mean.argmin())
        distance = (torch.arange(frames.shape[0]) - first).abs()
        largest = frames.shape[0] - 1 if self.max_gap is None else self.max_gap
        allowed = (distance >= self.min_gap) & (distance <= largest)
        to_first = _correlation(frames, frames[first]).masked_fill(~allowed, float("inf"))
        second = int(to_first.argmin())
        if not bool(allowed[second]):
            raise ValueError(
                f"FrameTripletd: no frame of the clip is {self.min_gap} to {largest} frames from frame {first}, the "
                f"extreme of the similarity curve (T = {frames.shape[0]}); lower min_gap or raise max_gap."
            )
        return min(first, second), max(first, second)

    def _ed_es_pair(self, d: Mapping[Hashable, Any], keys: tuple[str, ...], num_frames: int) -> tuple[int, int]:
        missing = [k for k in keys if k not in d]
        if missing:
            raise KeyError(
                f"FrameTripletd: ed_es_keys {list(keys)} given but the item lacks {missing}; the EchoNet readers give "
                "'ed_frame' and 'es_frame' (or use a label-free rule, ed_es_keys=None)."
            )
        ed, es = (int(torch.as_tensor(d[k]).reshape(-1)[0]) for k in keys)
        if not (0 <= ed < num_frames and 0 <= es < num_frames):
            raise ValueError(
                f"FrameTripletd: ED / ES frames ({ed}, {es}) must lie in [0, {num_frames}) of the clip (EchoNet gives "
                "-1 for a video without tracings; after a clip transform they must index the clip)."
            )
        if abs(ed - es) < self.min_gap:
            raise ValueError(
                f"FrameTripletd: ED / ES frames ({ed}, {es}) are {abs(ed - es)} apart; min_gap = {self.min_gap}."
            )
        return min(ed, es), max(ed, es)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            video = _as_tensor(d[key])
            if video.ndim != 4:
                raise ValueError(
                    f"FrameTripletd: '{key}' must be a video (C, T, H, W), got shape {tuple(video.shape)}."
                )
            num_frames = video.shape[1]
            if self.ed_es_keys is not None:
                a, b = self._ed_es_pair(d, self.ed_es_keys, num_frames)
            elif num_frames < self.min_gap + 1:
                raise ValueError(
                    f"FrameTripletd: '{key}' has {num_frames} frames; min_gap = {self.min_gap} needs at least "
                    f"{self.min_gap + 1}."
                )
            elif self.rule == "random":
                a, b = self.randomize(num_frames)
            else:
                a, b = self._similarity_pair(video)
            mid = (a + b) // 2
            for out_key, index in zip(self.output_keys, (a, mid, b), strict=True):
                d[out_key] = video[:, index]
            d[self.indices_key] = torch.tensor([a, mid, b], dtype=torch.long)
        return d


def _farneback(frame_a: np.ndarray, frame_b: np.ndarray, **params: Any) -> np.ndarray:
    settings = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
                "flags": 0, **params}  # fmt: skip
    return cv2.calcOpticalFlowFarneback(frame_a, frame_b, None, **settings)


_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def _dis(frame_a: np.ndarray, frame_b: np.ndarray, preset: str = "medium") -> np.ndarray:
    if preset not in _DIS_PRESETS:
        raise ValueError(f"PseudoFlowd: DIS preset must be one of {list(_DIS_PRESETS)}, got '{preset}'.")
    return cv2.DISOpticalFlow_create(_DIS_PRESETS[preset]).calc(frame_a, frame_b, None)


_FLOW_METHODS = {"farneback": _farneback, "dis": _dis}


class PseudoFlowd(MapTransform):
    """Dense optical flow from frame a to frame b by a classical method (OpenCV), as a pseudo target ``(2, H, W)``.

    MCDM supervises the flow head of its motion extractor with such pseudo flow. Frames ``(C, H, W)`` (the channel
    mean when C > 1) are mapped from ``value_range`` to uint8 [0, 255], then OpenCV's Farneback
    (``cv2.calcOpticalFlowFarneback``) or DIS (``cv2.DISOpticalFlow``) gives the flow, float32 ``(2, H, W)``:
    ``flow[0]`` = dx, ``flow[1]`` = dy, in pixels, with ``frame_a(x, y) ~ frame_b(x + dx, y + dy)``.

    Args:
        keys: the two frame keys, ``(frame_a, frame_b)``.
        output_key: where the flow goes.
        method: ``"farneback"`` or ``"dis"``.
        value_range: intensity range of the frames (``(-1, 1)`` in model space, ``(0, 255)`` for raw frames).
        flow_params: keyword overrides of the method: Farneback's ``pyr_scale``, ``levels``, ``winsize``,
            ``iterations``, ``poly_n``, ``poly_sigma``, ``flags``; DIS's ``preset`` (``"ultrafast"``, ``"fast"``,
            ``"medium"``).

    Raises:
        ValueError: a bad argument, or frames that are not ``(C, H, W)`` of one shape (naming the keys).

    Example:
        >>> flow = PseudoFlowd(method="dis")
        >>> out = flow({"frame_a": torch.rand(1, 64, 64) * 2 - 1, "frame_b": torch.rand(1, 64, 64) * 2 - 1})
        >>> out["pseudo_flow"].shape   # torch.Size([2, 64, 64])
    """

    def __init__(
        self,
        keys: Sequence[str] = ("frame_a", "frame_b"),
        output_key: str = "pseudo_flow",
        method: str = "farneback",
        value_range: tuple[float, float] = (-1.0, 1.0),
        flow_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"PseudoFlowd: keys must name two frames (frame_a, frame_b), got {list(self.keys)}.")
        if method not in _FLOW_METHODS:
            raise ValueError(f"PseudoFlowd: method must be one of {list(_FLOW_METHODS)}, got '{method}'.")
        if len(value_range) != 2 or not float(value_range[0]) < float(value_range[1]):
            raise ValueError(f"PseudoFlowd: value_range must be (low, high) with low < high, got {value_range}.")
        self.output_key, self.method = output_key, method
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.flow_params = dict(flow_params or {})

    def _to_uint8(self, frame: Any, key: Hashable) -> np.ndarray:
        image = _as_tensor(frame).float()
        if image.ndim != 3:
            raise ValueError(f"PseudoFlowd: '{key}' must be a frame (C, H, W), got shape {tuple(image.shape)}.")
        low, high = self.value_range
        scaled = (image.mean(dim=0) - low) / (high - low) * 255.0
        return np.ascontiguousarray(scaled.round().clamp(0, 255).to(torch.uint8).cpu().numpy())

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key_a, key_b = self.keys
        missing = [k for k in self.keys if k not in d]
        if missing:
            raise KeyError(f"PseudoFlowd: frame keys {missing} missing; add echo_monai.transforms.FrameTripletd first.")
        frame_a, frame_b = self._to_uint8(d[key_a], key_a), self._to_uint8(d[key_b], key_b)
        if frame_a.shape != frame_b.shape:
            raise ValueError(
                f"PseudoFlowd: '{key_a}' {frame_a.shape} and '{key_b}' {frame_b.shape} must have the same H, W."
            )
        flow = _FLOW_METHODS[self.method](frame_a, frame_b, **self.flow_params)  # (H, W, 2): dx, dy
        d[self.output_key] = torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32))
        return d
