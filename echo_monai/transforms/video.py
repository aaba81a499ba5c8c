"""MONAI dictionary transforms for video clips ``(C, T, H, W)``: load, resample fps, sample a clip, resize, pick frames.

Temporal transforms accept torch tensors or numpy arrays, including the read-only memory maps that
``LoadVideod(lazy=True)`` returns from a :class:`~echo_monai.data.video_cache.VideoCache`: slicing a clip out of a
memory map reads only the clip's frames, which is what makes cached training cheap (``benchmarks/clip_loading.py``).
A typical training chain::

    Compose([LoadVideod("video", cache_dir=cache, lazy=True), RandClipd("video", num_frames=32, period=2),
             ResizeVideod("video", (112, 112)), ScaleIntensityToModelRanged("video")])
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple, ensure_tuple_rep

from echo_monai.data.video_cache import VideoCache
from echo_monai.data.video_io import probe_video, read_video

__all__ = ["LoadVideod", "ResampleFPSd", "RandClipd", "CenterClipd", "ResizeVideod", "PickFramesd"]

Video = torch.Tensor | np.ndarray


def _num_frames(video: Video, key: Hashable) -> int:
    if video.ndim != 4:
        raise ValueError(f"key {key!r}: expected a video (C, T, H, W), got shape {tuple(video.shape)}.")
    return int(video.shape[1])


def _to_tensor(array: Video, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    return tensor if dtype is None else tensor.to(dtype)


def _remap_frame(data: dict, key: str, mapping: np.ndarray) -> None:
    """Replace the frame index ``data[key]`` by its position in the kept source frames ``mapping`` (-1 if gone)."""
    frame = int(data[key])
    hits = np.flatnonzero(mapping == frame) if frame >= 0 else []
    if len(hits) == 0 and frame >= 0 and mapping.size and mapping.min() <= frame <= mapping.max():
        hits = [int(np.argmin(np.abs(mapping - frame)))]  # resampling: nearest kept frame
    data[key] = int(hits[0]) if len(hits) else -1


class LoadVideod(MapTransform):
    """Load the video files named by ``keys`` into ``(C, T, H, W)`` arrays.

    Args:
        keys: keys holding video paths.
        cache_dir: decode each file once into a memory-mapped :class:`VideoCache` there; ``None`` decodes on
            every call.
        grayscale: ``C = 1`` luminance when True, ``C = 3`` RGB otherwise.
        lazy: return the ``uint8`` array (a read-only memory map when cached) instead of a float32 tensor, so
            that a following clip transform reads only the frames it keeps.
        fps_key: when given and absent from the data, store the container's frame rate there.
        allow_missing_keys: do not raise for absent keys.

    Returns (per key):
        ``(C, T, H, W)`` float32 tensor in [0, 255], or ``uint8`` numpy array with ``lazy=True``.

    Example:
        >>> load = LoadVideod("video", cache_dir="/tmp/cache", fps_key="fps")
        >>> data = load({"video": "Videos/a.avi"})
        >>> data["video"].shape, data["fps"]    # (1, T, 112, 112), 50.0
    """

    def __init__(
        self,
        keys: KeysCollection,
        cache_dir: str | os.PathLike | None = None,
        grayscale: bool = True,
        lazy: bool = False,
        fps_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.grayscale, self.lazy, self.fps_key = bool(grayscale), bool(lazy), fps_key
        self.cache = VideoCache(cache_dir, grayscale=grayscale) if cache_dir is not None else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            frames = self.cache.load(path) if self.cache is not None else read_video(path, grayscale=self.grayscale)
            frames = frames[None] if frames.ndim == 3 else frames.transpose(3, 0, 1, 2)  # (C, T, H, W)
            d[key] = frames if self.lazy else torch.from_numpy(np.asarray(frames, dtype=np.float32))
            if self.fps_key is not None and self.fps_key not in d:
                d[self.fps_key] = probe_video(path).fps
        return d


class ResampleFPSd(MapTransform):
    """Resample videos in time to ``target_fps`` by nearest source frame.

    The output has ``max(1, round(T * target_fps / fps))`` frames, frame ``i`` being source frame
    ``round(i * fps / target_fps)``. ``fps_key`` is set to ``target_fps`` and each of ``frame_keys`` (e.g.
    ``"ed_frame"``) is moved to the output frame nearest to it.

    Args:
        keys: video keys ``(C, T, H, W)``.
        target_fps: frame rate to produce (> 0).
        fps_key: key holding each item's frame rate.
        frame_keys: keys of frame indices to remap.
        allow_missing_keys: do not raise for absent keys.

    Example:
        >>> resample = ResampleFPSd("video", target_fps=25.0, frame_keys=("ed_frame", "es_frame"))
        >>> resample({"video": torch.zeros(1, 100, 8, 8), "fps": 50.0, "ed_frame": 10, "es_frame": 41})["es_frame"]
        20
    """

    def __init__(
        self,
        keys: KeysCollection,
        target_fps: float,
        fps_key: str = "fps",
        frame_keys: Sequence[str] | str = (),
        allow_missing_keys: bool = False,
    ) -> None:
        if not target_fps or target_fps <= 0:
            raise ValueError(f"ResampleFPSd: target_fps must be positive, got {target_fps!r}.")
        super().__init__(keys, allow_missing_keys)
        self.target_fps, self.fps_key, self.frame_keys = float(target_fps), fps_key, ensure_tuple(frame_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        fps = float(d.get(self.fps_key, float("nan")))
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"ResampleFPSd: key {self.fps_key!r} must hold a positive frame rate, got {fps!r}.")
        mapping = None
        for key in self.key_iterator(d):
            total = _num_frames(d[key], key)
            count = max(1, int(round(total * self.target_fps / fps)))
            mapping = np.clip(np.rint(np.arange(count) * fps / self.target_fps), 0, total - 1).astype(np.int64)
            video = d[key]
            d[key] = video[:, torch.from_numpy(mapping)] if isinstance(video, torch.Tensor) else video[:, mapping]
        if mapping is not None:
            for key in self.frame_keys:
                _remap_frame(d, key, mapping)
            d[self.fps_key] = self.target_fps
        return d


class _ClipBase(MapTransform):
    """Shared clip logic: ``num_frames`` frames ``period`` apart from a start, short videos padded at the end."""

    PAD_MODES = ("edge", "zeros", "error")

    def __init__(
        self,
        keys: KeysCollection,
        num_frames: int,
        period: int = 1,
        pad_mode: str = "edge",
        frame_keys: Sequence[str] | str = (),
        start_key: str | None = None,
        dtype: torch.dtype | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        name = type(self).__name__
        if int(num_frames) < 1:
            raise ValueError(f"{name}: num_frames must be >= 1, got {num_frames!r}.")
        if int(period) < 1:
            raise ValueError(f"{name}: period must be >= 1, got {period!r}.")
        if pad_mode not in self.PAD_MODES:
            raise ValueError(f"{name}: pad_mode must be one of {self.PAD_MODES}, got {pad_mode!r}.")
        super().__init__(keys, allow_missing_keys)
        self.num_frames, self.period, self.pad_mode = int(num_frames), int(period), pad_mode
        self.frame_keys, self.start_key, self.dtype = ensure_tuple(frame_keys), start_key, dtype

    @property
    def span(self) -> int:
        """Source frames covered by one clip: ``(num_frames - 1) * period + 1``."""
        return (self.num_frames - 1) * self.period + 1

    @abstractmethod
    def _start(self, total: int) -> int:
        """First source frame of the clip in a video of ``total`` frames."""

    def _clip(self, video: Video, start: int, name: Any = None) -> torch.Tensor:
        total = video.shape[1]
        if self.pad_mode == "error" and total < start + self.span:
            what = f"video {name!r}" if name is not None else "a video"
            raise ValueError(
                f"{type(self).__name__}: {what} has {total} frames; a clip of {self.num_frames} frames "
                f"{self.period} apart needs at least {self.span} (shorter videos are refused with pad_mode='error')."
            )
        stop = min(total, start + self.span)
        # basic slicing, so a memory map reads the clip's frames only
        clip = _to_tensor(video[:, start : stop : self.period], self.dtype)
        missing = self.num_frames - clip.shape[1]
        if missing > 0:
            fill = clip[:, -1:] if self.pad_mode == "edge" else torch.zeros_like(clip[:, -1:])
            clip = torch.cat([clip, fill.expand(-1, missing, -1, -1)], dim=1)
        return clip

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        totals = {key: _num_frames(d[key], key) for key in keys}
        if len(set(totals.values())) > 1:
            raise ValueError(f"{type(self).__name__}: keys must have the same number of frames, got {totals}.")
        total = totals[keys[0]]
        start = self._start(total)
        name = next((d[k] for k in ("video_name", "filename", "name") if isinstance(d.get(k), str)), None)
        for key in keys:
            d[key] = self._clip(d[key], start, name)
        kept = np.arange(start, min(total, start + self.span), self.period)
        for key in self.frame_keys:
            frame = int(d[key])
            d[key] = int(np.flatnonzero(kept == frame)[0]) if frame in kept else -1
        if self.start_key is not None:
            d[self.start_key] = start
        return d


class RandClipd(Randomizable, _ClipBase):
    """Sample a clip of ``num_frames`` frames, ``period`` apart, from a random start (same start for all keys).

    Videos shorter than the clip's span ``(num_frames - 1) * period + 1`` start at 0 and are padded at the end by
    repeating the last frame (``pad_mode="edge"``) or with zeros (``"zeros"``, as echonet/dynamic does), or are
    refused with one error naming the video (``"error"``).

    Args:
        keys: video keys ``(C, T, H, W)`` (tensors or numpy arrays, memory maps included).
        num_frames: frames per clip.
        period: step between sampled frames.
        pad_mode: ``"edge"``, ``"zeros"`` or ``"error"``.
        frame_keys: frame-index keys (e.g. ``"ed_frame"``) mapped to their clip position, -1 when not sampled.
        start_key: when given, store the source index of the clip's first frame there.
        dtype: cast the clips to this torch dtype; ``None`` keeps the input's.
        allow_missing_keys: do not raise for absent keys.

    Returns (per key):
        ``(C, num_frames, H, W)`` torch tensor.

    Example:
        >>> clip = RandClipd("video", num_frames=16, period=2).set_random_state(0)
        >>> clip({"video": torch.zeros(1, 100, 112, 112)})["video"].shape
        torch.Size([1, 16, 112, 112])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_frames: int,
        period: int = 1,
        pad_mode: str = "edge",
        frame_keys: Sequence[str] | str = (),
        start_key: str | None = None,
        dtype: torch.dtype | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        _ClipBase.__init__(self, keys, num_frames, period, pad_mode, frame_keys, start_key, dtype, allow_missing_keys)
        self._start_index = 0

    def randomize(self, data: int) -> None:
        """Draw a start in ``[0, T - span]`` for a video of ``data`` frames (0 when the video is shorter)."""
        self._start_index = int(self.R.randint(0, max(0, data - self.span) + 1))

    def _start(self, total: int) -> int:
        self.randomize(total)
        return self._start_index


class CenterClipd(_ClipBase):
    """Deterministic clip of ``num_frames`` frames, ``period`` apart, centred in the video (for validation).

    Same arguments and output as :class:`RandClipd`; the start is ``max(0, (T - span) // 2)``.

    Example:
        >>> clip = CenterClipd("video", num_frames=4, period=2)
        >>> clip({"video": torch.arange(10.0).view(1, 10, 1, 1)})["video"].flatten()
        tensor([1., 3., 5., 7.])
    """

    def _start(self, total: int) -> int:
        return max(0, (total - self.span) // 2)


class ResizeVideod(MapTransform):
    """Resize every frame of ``(C, T, H, W)`` videos to ``spatial_size`` (time untouched).

    Args:
        keys: video keys.
        spatial_size: output ``(H, W)``.
        mode: interpolation per key (``"bilinear"``, ``"bicubic"``, ``"area"``, ``"nearest-exact"`` for labels).
        antialias: low-pass before downsampling (bilinear/bicubic only).
        allow_missing_keys: do not raise for absent keys.

    Returns (per key):
        ``(C, T, H', W')`` tensor of the input dtype (integers are rounded back).

    Example:
        >>> resize = ResizeVideod(("video", "label"), (64, 64), mode=("bilinear", "nearest-exact"))
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        mode: Sequence[str] | str = "bilinear",
        antialias: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        size = ensure_tuple_rep(spatial_size, 2)
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise ValueError(f"ResizeVideod: spatial_size must be two positive ints (H, W), got {spatial_size!r}.")
        self.spatial_size = tuple(int(s) for s in size)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.antialias = bool(antialias)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            _num_frames(d[key], key)
            video = _to_tensor(d[key])
            frames = video.permute(1, 0, 2, 3).float()  # (T, C, H, W): frames as a batch
            smooth = self.antialias and mode in ("bilinear", "bicubic")
            resized = F.interpolate(
                frames,
                size=self.spatial_size,
                mode=mode,
                antialias=smooth,
                **({"align_corners": False} if mode in ("bilinear", "bicubic") else {}),
            )
            resized = resized.permute(1, 0, 2, 3)
            if not video.dtype.is_floating_point:
                info = torch.iinfo(video.dtype)
                resized = resized.round().clamp(info.min, info.max)
            d[key] = resized.to(video.dtype).contiguous()
        return d


class PickFramesd(MapTransform):
    """Pick single frames (e.g. ED and ES) out of videos into images ``(C, H, W)``.

    For each video key and each frame key, ``data[frame_key]`` indexes the frame; the output key is
    ``"<phase>_image"`` for the key ``"video"`` and ``"<phase>_<key>"`` otherwise, ``<phase>`` being the frame key
    without ``"_frame"`` (``ed_frame`` on ``video`` -> ``ed_image``; on ``label`` -> ``ed_label``).

    Args:
        keys: video keys ``(C, T, H, W)``.
        frame_keys: keys holding frame indices.
        allow_missing_keys: do not raise for absent keys.

    Example:
        >>> pick = PickFramesd("video", frame_keys=("ed_frame", "es_frame"))
        >>> out = pick({"video": torch.zeros(1, 30, 112, 112), "ed_frame": 3, "es_frame": 17})
        >>> out["ed_image"].shape
        torch.Size([1, 112, 112])
    """

    def __init__(
        self,
        keys: KeysCollection,
        frame_keys: Sequence[str] | str = ("ed_frame", "es_frame"),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.frame_keys = ensure_tuple(frame_keys)
        if not self.frame_keys:
            raise ValueError("PickFramesd: frame_keys must name at least one frame-index key.")

    @staticmethod
    def output_key(key: Hashable, frame_key: str) -> str:
        """Name of the picked image of ``frame_key`` from video ``key``."""
        phase = frame_key[: -len("_frame")] if frame_key.endswith("_frame") else frame_key
        return f"{phase}_{'image' if key == 'video' else key}"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            total = _num_frames(d[key], key)
            for frame_key in self.frame_keys:
                if frame_key not in d:
                    raise KeyError(f"PickFramesd: frame key {frame_key!r} is missing from the data.")
                frame = int(d[frame_key])
                if not 0 <= frame < total:
                    raise ValueError(
                        f"PickFramesd: {frame_key}={frame} is outside video {key!r} of {total} frames "
                        f"(expected 0..{total - 1})."
                    )
                d[self.output_key(key, frame_key)] = _to_tensor(d[key][:, frame]).clone()
        return d
