"""Decode-once cache of videos as memory-mapped ``.npy`` files.

Why not MONAI's ``PersistentDataset``: it pickles the whole transformed item and loads it back in full on every
access, so a 32-frame clip from a 200-frame video still reads all 200 frames, and its key is the item dict, not
the file's identity, so a re-encoded AVI at the same path silently serves stale frames. Here each decoded video is
stored once as ``uint8`` ``.npy`` and opened with ``numpy.load(mmap_mode="r")``: clip sampling touches only the
frames it slices (the page cache shares them between DataLoader workers), the file is 4x smaller than float32,
and the key hashes the absolute path, modification time and size, so an edited source gets a new entry. Entries
are written to a temporary name and renamed with ``os.replace``, so concurrent workers never read half a file.

Example:
    >>> cache = VideoCache("/tmp/echo_cache")
    >>> frames = cache.load("Videos/0X1A0A263B22CCD966.avi")   # np.memmap (T, H, W) uint8
    >>> clip = np.asarray(frames[10:42:2])                      # reads 16 frames only
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from echo_monai.data.video_io import read_video

__all__ = ["VideoCache"]


class VideoCache:
    """Memory-mapped cache of decoded videos, keyed by source path, mtime and size.

    Args:
        cache_dir: folder for the ``.npy`` entries (created if missing).
        grayscale: cache grey ``(T, H, W)`` frames when True, RGB ``(T, H, W, 3)`` otherwise.

    Example:
        >>> cache = VideoCache("/tmp/echo_cache")
        >>> video = cache.load("clip.avi")
        >>> video.shape   # (T, H, W)
    """

    def __init__(self, cache_dir: str | os.PathLike, grayscale: bool = True) -> None:
        if not str(cache_dir):
            raise ValueError("VideoCache: cache_dir must be a non-empty path.")
        self.cache_dir = Path(cache_dir)
        self.grayscale = bool(grayscale)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def key(self, path: str | os.PathLike) -> str:
        """Cache key of a source file: sha1 of its absolute path, ``st_mtime_ns``, size and colour mode."""
        source = Path(path).resolve()
        stat = source.stat()
        text = f"{source}|{stat.st_mtime_ns}|{stat.st_size}|{'gray' if self.grayscale else 'rgb'}"
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def entry_path(self, path: str | os.PathLike) -> Path:
        """Where the cached array of ``path`` lives (whether or not it exists yet)."""
        return self.cache_dir / f"{Path(path).stem}-{self.key(path)}.npy"

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is already decoded in the cache."""
        return self.entry_path(path).is_file()

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Return the decoded frames of ``path``, decoding and storing them on the first call only.

        Args:
            path: video file.

        Returns:
            Read-only ``np.memmap`` ``uint8`` of shape ``(T, H, W)`` (or ``(T, H, W, 3)`` when not grey).

        Raises:
            FileNotFoundError: the source does not exist.
            VideoReadError: the source cannot be decoded.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"VideoCache: video file {str(path)!r} does not exist.")
        entry = self.entry_path(path)
        if not entry.is_file():
            frames = read_video(path, grayscale=self.grayscale)
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.stem}.", suffix=".tmp", dir=self.cache_dir)
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.save(handle, frames, allow_pickle=False)
                os.replace(tmp, entry)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        return np.load(entry, mmap_mode="r", allow_pickle=False)
