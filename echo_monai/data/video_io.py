"""Reading and writing ultrasound cine loops stored as AVI files (OpenCV backend).

EchoNet-Dynamic and EchoNet-Pediatric store each echocardiogram as an MJPG-compressed AVI whose three colour
channels carry the same grey value; :func:`read_video` decodes such a file into a ``uint8`` array, grey
``(T, H, W)`` by default or RGB ``(T, H, W, 3)``. Every failure names the file and what was expected, so a bad
item in a 10,000-video dataset can be found from the message alone.

Example:
    >>> frames = read_video("Videos/0X1A0A263B22CCD966.avi")   # (T, H, W) uint8
    >>> info = probe_video("Videos/0X1A0A263B22CCD966.avi")     # VideoInfo(num_frames=..., fps=...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoReadError", "VideoInfo", "read_video", "probe_video", "write_video"]


class VideoReadError(ValueError):
    """A video file exists but cannot be decoded into at least one frame (corrupt, empty or unsupported)."""


@dataclass(frozen=True)
class VideoInfo:
    """Header information of a video file.

    Attributes:
        num_frames: number of frames announced by the container (may be approximate for some codecs).
        height: frame height in pixels.
        width: frame width in pixels.
        fps: frames per second announced by the container (0.0 when absent).
    """

    num_frames: int
    height: int
    width: int
    fps: float


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise FileNotFoundError(f"video file {str(path)!r} does not exist; expected an AVI file at that path.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(
            f"video file {str(path)!r} could not be opened; expected a readable video (AVI/MJPG), "
            "the file is corrupt, empty or uses an unsupported codec."
        )
    return capture


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the header of a video and decode its first frame to prove it is readable.

    Args:
        path: video file.

    Returns:
        :class:`VideoInfo` with frame count, size and fps.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoReadError: the file cannot be opened or has no decodable frame.
    """
    path = Path(path)
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoReadError(f"video file {str(path)!r} has zero decodable frames; expected at least one frame.")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return VideoInfo(num_frames=max(count, 1), height=frame.shape[0], width=frame.shape[1], fps=fps)
    finally:
        capture.release()


def read_video(
    path: str | os.PathLike, grayscale: bool = True, max_frames: int | None = None, check_length: bool = True
) -> np.ndarray:
    """Decode every frame of a video file.

    A truncated AVI keeps its header (OpenCV still opens it and announces the full frame count) but decodes fewer
    frames; with ``check_length`` that is an error, as in EchoNet's own loader, rather than a shorter video.

    Args:
        path: video file (AVI as written by EchoNet, or anything OpenCV's FFmpeg backend reads).
        grayscale: return ``(T, H, W)`` luminance when True, ``(T, H, W, 3)`` RGB otherwise.
        max_frames: stop after this many frames (``None`` reads all).
        check_length: raise when fewer frames decode than the container announces (``min(count, max_frames)``);
            False for containers whose announced count is only an estimate.

    Returns:
        ``uint8`` array ``(T, H, W)`` or ``(T, H, W, 3)`` with values in [0, 255].

    Raises:
        FileNotFoundError: the file does not exist.
        VideoReadError: the file cannot be opened, has zero decodable frames, changes frame size mid-stream, or
            (``check_length``) decodes fewer frames than its header announces.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"read_video: max_frames must be a positive integer or None, got {max_frames!r}.")
    capture = _open(path)
    frames: list[np.ndarray] = []
    try:
        announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or less when the container does not say
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:
                frame = frame if grayscale else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if grayscale else cv2.COLOR_BGR2RGB)
            if frames and frame.shape != frames[0].shape:
                raise VideoReadError(
                    f"video file {str(path)!r}: frame {len(frames)} has shape {frame.shape}, expected "
                    f"{frames[0].shape} like the first frame."
                )
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise VideoReadError(f"video file {str(path)!r} has zero decodable frames; expected at least one frame.")
    expected = announced if max_frames is None else min(announced, max_frames)
    if check_length and len(frames) < expected:
        raise VideoReadError(
            f"video file {str(path)!r} decodes to {len(frames)} frames but its header announces {announced}; "
            "expected every announced frame (the file is truncated or corrupt)."
        )
    return np.ascontiguousarray(np.stack(frames, axis=0), dtype=np.uint8)


def write_video(
    path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float, codec: str = "MJPG"
) -> Path:
    """Write frames to an AVI file, atomically (temporary name, then ``os.replace``).

    Args:
        path: destination file; parent folders are created.
        frames: ``(T, H, W)`` grey or ``(T, H, W, 3)`` RGB ``uint8`` frames (floats are clipped to [0, 255]).
        fps: frames per second stored in the container.
        codec: four-character code; ``"MJPG"`` matches the EchoNet releases.

    Returns:
        The written path.
    """
    path = Path(path)
    array = np.asarray(frames)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] != 3) or array.shape[0] == 0:
        raise ValueError(
            f"write_video: frames for {str(path)!r} must be (T, H, W) or (T, H, W, 3) with T >= 1, got {array.shape}."
        )
    if fps <= 0:
        raise ValueError(f"write_video: fps must be positive, got {fps!r}.")
    if len(codec) != 4:
        raise ValueError(f"write_video: codec must be a four-character code, got {codec!r}.")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    height, width = array.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix or '.avi'}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), float(fps), (int(width), int(height)), True)
    if not writer.isOpened():
        raise OSError(f"write_video: OpenCV could not open a {codec} writer for {str(path)!r}.")
    try:
        for frame in array:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame[..., ::-1].copy())
    finally:
        writer.release()
    os.replace(tmp, path)
    return path
