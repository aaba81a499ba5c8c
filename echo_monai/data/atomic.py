"""Atomic file writes: every output is written to a temporary name in the same folder, then ``os.replace``-d."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["atomic_path", "write_avi", "write_csv", "write_json", "write_png", "write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffixes, hidden name); rename it to ``path`` on success.

    Example:
        >>> with atomic_path("out/video.avi") as tmp:
        ...     write_something(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"atomic_path: nothing was written to {str(tmp)!r} for {str(path)!r}.")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (``\\n`` line ends) atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write a JSON file atomically."""
    return write_text(path, json.dumps(obj, indent=1))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a ``(H, W)`` or ``(H, W, 3)`` uint8 PNG atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"write_png: expected a (H, W[, 3]) uint8 image for {str(path)!r}, got {image.dtype} {image.shape}."
        )
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"write_png: OpenCV could not write {str(path)!r}.")
    return Path(path)


def write_avi(path: str | os.PathLike, frames: np.ndarray, fps: float, codec: str = "MJPG") -> Path:
    """Write ``(T, H, W)`` uint8 grey frames as a 3-channel AVI (the EchoNet layout) atomically.

    Args:
        path: output ``.avi``.
        frames: ``(T, H, W)`` uint8.
        fps: frame rate stored in the container.
        codec: FourCC; ``"MJPG"`` as EchoNet's videos.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] < 1:
        raise ValueError(
            f"write_avi: expected (T, H, W) uint8 frames with T >= 1 for {str(path)!r}, got "
            f"{frames.dtype} {frames.shape}."
        )
    height, width = frames.shape[1:]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), float(fps), (width, height), True)
        if not writer.isOpened():
            raise OSError(f"write_avi: OpenCV cannot open a {codec} writer for {str(path)!r}.")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()
    return Path(path)
