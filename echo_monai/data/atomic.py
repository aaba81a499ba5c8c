"""Atomic file writes: every output is written to a temporary name in the same folder, then ``os.replace``-d."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "atomic_path",
    "remove_stale_temporaries",
    "write_avi",
    "write_csv",
    "write_json",
    "write_png",
    "write_text",
]


_TEMPORARY = re.compile(r"^\.tmp-(\d+)-")


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffixes, hidden name ``.tmp-<pid>-<name>``); rename it to
    ``path`` on success, remove it on failure.

    Args:
        path: the final file.
        fsync: flush the temporary file and, after the rename, its folder to the disk, so the file survives a
            power loss or a killed machine whole (checkpoints); the rename alone already protects from a killed
            process.

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
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if fsync and hasattr(os, "O_DIRECTORY"):
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.tmp-<pid>-*``, see :func:`atomic_path`) that processes no longer running left
    under ``folder`` (a killed export or training); live processes' files are kept.

    Returns:
        the removed paths.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for path in root.rglob(".tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
