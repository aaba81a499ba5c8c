"""EchoNet-Dynamic reader: apical-4-chamber echo videos with EF, volumes and traced LV masks.

Ouyang et al., "Video-based AI for beat-to-beat assessment of cardiac function", Nature 580, 2020.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echo_monai.data.reader_base import FieldChecker, OnInvalid, ReaderDataset
from echo_monai.data.tracings import (
    outline_mask,
    read_chord_tracings,
    read_csv_rows,
    select_ed_es,
    tracing_outline,
    video_key,
)
from echo_monai.data.video_cache import VideoCache
from echo_monai.data.video_io import probe_video, read_video

__all__ = ["TracedVideoReader", "EchoNetDynamic"]


def _count(value: float) -> int | None:
    """A checked FileList count (NaN when the cell is empty) as an int, ``None`` when empty."""
    return None if math.isnan(value) else int(value)


class TracedVideoReader(ReaderDataset):
    """Base of the EchoNet readers: AVI videos plus two traced frames (ED and ES) per video.

    Records hold ``filename``, ``video_path``, ``tracings`` (``{frame: points}`` or ``None``), ``ed_frame``,
    ``es_frame``, ``fps`` (``None`` to read it from the video header), ``num_frames`` and ``frame_size`` (the
    index's ``NumberOfFrames`` and ``(FrameHeight, FrameWidth)``, ``None`` when it has none), ``index_file`` (the
    CSV they come from, for messages) and ``meta`` (extra scalar keys).

    On access the decoded video must have ``num_frames`` frames of ``frame_size`` when the index gives them (a
    truncated AVI also fails in :func:`~echo_monai.data.video_io.read_video`, which checks the decoded count against
    the AVI header), and the frame rate (index or AVI header) must be finite and > 0; else ``ValueError`` names the
    video, which ``validate=True`` turns into a rejection at construction.

    Args:
        transform: MONAI transform applied to each item dict.
        cache_dir: folder of a :class:`~echo_monai.data.video_cache.VideoCache`; ``None`` decodes on every access.
        lazy: return ``video`` as the cached ``(1, T, H, W)`` ``uint8`` memory map (needs ``cache_dir``), so that
            a clip transform (``RandClipd``) reads only the frames it keeps.
        on_invalid: ``"raise"`` or ``"skip"`` (see :class:`~echo_monai.data.reader_base.ReaderDataset`).
        validate: decode every video at construction (default: when skipping).
    """

    def __init__(
        self,
        transform: Sequence[Callable] | Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        lazy: bool = False,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        if lazy and cache_dir is None:
            raise ValueError(f"{type(self).__name__}: lazy=True needs a cache_dir to memory-map the videos from.")
        super().__init__(transform=transform, on_invalid=on_invalid, validate=validate)
        self.cache = VideoCache(cache_dir) if cache_dir is not None else None
        self.lazy = bool(lazy)

    def read_frames(self, path: str | os.PathLike) -> np.ndarray:
        """``(T, H, W)`` ``uint8`` frames of a video, from the cache when there is one."""
        return self.cache.load(path) if self.cache is not None else read_video(path)

    def _traced_record(
        self,
        filename: str,
        video_path: Path,
        tracings: dict[str, dict[int, np.ndarray]],
        num_frames: int | None,
        required: bool,
        fps: float | None,
        meta: dict[str, Any],
        index_file: str = "FileList.csv",
        frame_size: tuple[int, int] | None = None,
    ) -> dict[str, Any] | None:
        """The index record of one video with its checked tracings, or ``None`` after rejecting it."""
        checked = self._index_tracings(filename, tracings, num_frames, required)
        if checked is None:
            return None
        frames, ed, es = checked
        return {
            "filename": filename,
            "video_path": str(video_path),
            "tracings": frames,
            "ed_frame": ed,
            "es_frame": es,
            "fps": fps,
            "num_frames": num_frames,
            "frame_size": frame_size,
            "index_file": index_file,
            "meta": meta,
        }

    def _index_tracings(
        self, filename: str, tracings: dict[str, dict[int, np.ndarray]], num_frames: int | None, required: bool
    ) -> tuple[dict[int, np.ndarray] | None, int, int] | None:
        """Check the tracings of one video; returns ``(tracings, ed, es)`` or ``None`` after rejecting it."""
        frames = tracings.get(video_key(filename))
        if frames is None:
            if required:
                self.reject(filename, "no rows in VolumeTracings.csv; expected tracings of the ED and ES frames.")
                return None
            return None, -1, -1
        if num_frames:
            beyond = sorted(f for f in frames if not 0 <= f < num_frames)
            if beyond:
                self.reject(
                    filename,
                    f"VolumeTracings.csv traces frame(s) {beyond} but FileList.csv gives {num_frames} frames "
                    f"(expected frames 0..{num_frames - 1}).",
                )
                return None
        try:
            ed, es = select_ed_es(frames)
        except ValueError as error:
            self.reject(filename, f"VolumeTracings.csv: {error}")
            return None
        return frames, ed, es

    def _check_video(self, record: Mapping[Hashable, Any], frames: np.ndarray) -> float:
        """Check the decoded frames against the index; returns the frame rate (index, else AVI header)."""
        path, name, index_file = record["video_path"], type(self).__name__, record.get("index_file", "FileList.csv")
        num_frames, height, width = frames.shape
        expected = record.get("num_frames")
        if expected and num_frames != expected:
            raise ValueError(
                f"{name}: video {str(path)!r} decodes to {num_frames} frames but {index_file!r} gives NumberOfFrames "
                f"{expected} for {record['filename']!r}; expected equal counts (truncated or replaced video?)."
            )
        size = record.get("frame_size")
        if size and (height, width) != tuple(size):
            raise ValueError(
                f"{name}: video {str(path)!r} has {height} x {width} frames but {index_file!r} gives FrameHeight x "
                f"FrameWidth {size[0]} x {size[1]} for {record['filename']!r}; expected equal sizes."
            )
        if record.get("fps"):
            return float(record["fps"])
        fps = probe_video(path).fps
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(
                f"{name}: the AVI header of {str(path)!r} gives {fps:g} frames/s and {index_file!r} has no FPS for "
                f"{record['filename']!r}; expected a frame rate > 0."
            )
        return fps

    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        path = record["video_path"]
        frames = self.read_frames(path)
        num_frames, height, width = frames.shape
        item: dict[str, Any] = {"filename": record["filename"]}
        video = frames[None]
        item["fps"] = self._check_video(record, frames)
        item["video"] = video if self.lazy else torch.from_numpy(np.asarray(video, dtype=np.float32))
        tracings = record["tracings"]
        for phase in ("ed", "es"):
            frame = int(record[f"{phase}_frame"])
            if tracings is not None and frame >= num_frames:
                raise ValueError(
                    f"{type(self).__name__}: VolumeTracings.csv traces frame {frame} of {record['filename']!r} "
                    f"but video {str(path)!r} has {num_frames} frames (expected frames 0..{num_frames - 1})."
                )
            mask = np.zeros((height, width), np.uint8)
            if tracings is not None:
                mask = outline_mask(tracing_outline(tracings[frame]), (height, width))
            item[f"{phase}_frame"] = frame
            item[f"{phase}_mask"] = torch.from_numpy(mask)
        item.update(record["meta"])
        return item


class EchoNetDynamic(TracedVideoReader):
    """EchoNet-Dynamic: ``root/Videos/*.avi``, ``root/FileList.csv``, ``root/VolumeTracings.csv``.

    ``FileList.csv`` has ``FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split`` (``FileName``
    with or without ``.avi``); ``VolumeTracings.csv`` has ``FileName,X1,Y1,X2,Y2,Frame`` with, per traced frame,
    the long axis then the disc chords (see :mod:`echo_monai.data.tracings`). At construction every listed video
    is checked to exist (all missing ones reported together), every traced frame against ``NumberOfFrames``, and
    every ``FileList.csv`` field: ``EF`` finite in 0-100, ``EDV``/``ESV`` >= 0 (empty: NaN) with ``EDV >= ESV``,
    ``FPS`` > 0, ``NumberOfFrames``/``FrameHeight``/``FrameWidth`` integers >= 1 (each optional: empty cells are
    not checked) and ``Split`` one of ``TRAIN``/``VAL``/``TEST`` (checked on every row, whatever ``split`` is
    read). On access the decoded video must match ``NumberOfFrames`` and the frame size (see
    :class:`TracedVideoReader`).

    Each item is a dict:

    * ``video``: ``(1, T, H, W)`` float32 torch tensor, grey levels in [0, 255] (112 x 112 in the release);
      with ``lazy=True`` a read-only ``uint8`` numpy memory map of the same shape.
    * ``ejection_fraction``: float, EF in percent (0-100), ``EF`` column.
    * ``edv``, ``esv``: float, end-diastolic / end-systolic LV volume in mL, >= 0 (``EDV``, ``ESV``; NaN when
      empty, as in synthetic exports).
    * ``fps``: float, frames per second, > 0 (``FPS`` column, else the AVI header).
    * ``ed_frame``, ``es_frame``: int, index in [0, T) of the traced frame with the largest / smallest cavity
      (-1 when the video has no tracings and ``require_tracings=False``).
    * ``ed_mask``, ``es_mask``: ``(H, W)`` uint8 torch tensor in {0, 1}, LV cavity filled from the tracings
      (all zero without tracings).
    * ``filename``: str, video file name with ``.avi`` (as in ``VolumeTracings.csv``).
    * ``split``: str, ``TRAIN``/``VAL``/``TEST``.

    Args:
        root: dataset folder.
        split: ``"TRAIN"``, ``"VAL"``, ``"TEST"`` or ``"ALL"`` (case-insensitive).
        transform: MONAI transform applied to each item dict.
        cache_dir: decode each AVI once into a memory-mapped cache there (see :class:`VideoCache`).
        lazy: return ``video`` as the ``uint8`` memory map for a following clip transform (needs ``cache_dir``).
        require_tracings: treat a video without tracings as invalid; else it gets empty masks and frames -1.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad items (``self.invalid``).
        validate: decode every video at construction to find corrupt ones (default: when skipping).

    Example:
        >>> dataset = EchoNetDynamic("EchoNet-Dynamic", split="TRAIN", cache_dir="/tmp/cache")
        >>> item = dataset[0]
        >>> item["video"].shape, item["ejection_fraction"], item["ed_mask"].shape   # (1, T, 112, 112), 55.2, (112, 112)
    """

    SPLITS = ("TRAIN", "VAL", "TEST", "ALL")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "TRAIN",
        transform: Sequence[Callable] | Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        lazy: bool = False,
        require_tracings: bool = True,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        if str(split).upper() not in self.SPLITS:
            raise ValueError(f"EchoNetDynamic: split must be one of {self.SPLITS}, got {split!r}.")
        super().__init__(transform, cache_dir, lazy, on_invalid, validate)
        self.root = Path(root)
        self.split = str(split).upper()
        filelist = self.root / "FileList.csv"
        rows = read_csv_rows(filelist, ("FileName", "EF", "ESV", "EDV", "Split"))
        tracings = read_chord_tracings(self.root / "VolumeTracings.csv")
        records = []
        for line, row in enumerate(rows, start=2):
            filename = video_key(row["FileName"]) + ".avi"
            fields = FieldChecker(f"{str(filelist)!r} line {line}")
            split = fields.choice(row, "Split", self.SPLITS[:-1], required=True, upper=True)
            if fields.problems:  # a row of no known split: reported whatever split is read
                self.reject(filename, fields.reason)
                continue
            if self.split != "ALL" and split != self.split:
                continue
            video_path = self.root / "Videos" / filename
            if not video_path.is_file():
                self.reject(filename, f"listed in FileList.csv but video {str(video_path)!r} is missing.", True)
                continue
            meta = {
                "ejection_fraction": fields.number(row, "EF", minimum=0, maximum=100, unit="%"),
                # empty in synthetic exports: NaN
                "edv": fields.number(row, "EDV", minimum=0, required=False, unit="mL"),
                "esv": fields.number(row, "ESV", minimum=0, required=False, unit="mL"),
                "split": split,
            }
            fields.volumes(meta["edv"], meta["esv"])
            fps = fields.number(row, "FPS", above=0, required=False, unit="frames/s")
            counts = [
                fields.number(row, key, minimum=1, integer=True, required=False)
                for key in ("NumberOfFrames", "FrameHeight", "FrameWidth")
            ]
            if fields.problems:
                self.reject(filename, fields.reason)
                continue
            num_frames, height, width = (_count(value) for value in counts)
            record = self._traced_record(
                filename,
                video_path,
                tracings,
                num_frames,
                require_tracings,
                None if math.isnan(fps) else fps,
                meta,
                str(filelist),
                (height, width) if height and width else None,
            )
            if record is not None:
                records.append(record)
        self._finalize(records, key="filename")
