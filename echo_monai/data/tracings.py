"""EchoNet volume tracings: CSV parsing, ED/ES selection and mask rasterisation, shared by the EchoNet readers.

Two on-disk forms exist:

* EchoNet-Dynamic ``VolumeTracings.csv`` (``FileName,X1,Y1,X2,Y2,Frame``): per traced frame, the first row is the
  LV long axis (apex to mitral annulus) and each following row is one disc chord, its endpoints on the left and
  right endocardial borders. The cavity polygon runs down the ``(X1, Y1)`` endpoints and back up the ``(X2, Y2)``
  endpoints, the long axis excluded, as echonet/dynamic draws it.
* EchoNet-Pediatric ``VolumeTracings.csv`` (``FileName,X,Y,Frame``): per traced frame, the polygon vertices.

The traced frame with the larger cavity area is end-diastole (ED) and the one with the smaller area end-systole
(ES); this does not rely on the row order of the file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

__all__ = [
    "read_csv_rows",
    "video_key",
    "read_chord_tracings",
    "read_polygon_tracings",
    "tracing_outline",
    "outline_area",
    "outline_mask",
    "select_ed_es",
]


def read_csv_rows(path: str | os.PathLike, required: Iterable[str]) -> list[dict[str, str]]:
    """Read a CSV file into row dicts, checking its header.

    Args:
        path: CSV file.
        required: column names that must be present.

    Returns:
        One dict per row, values stripped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required column is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(f"CSV file {str(path)!r} lacks column(s) {missing}; found {header}.")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def video_key(name: str) -> str:
    """FileList and VolumeTracings disagree on the ``.avi`` suffix; compare names without it."""
    return name[:-4] if name.lower().endswith(".avi") else name


def _parse_tracings(path: str | os.PathLike, columns: tuple[str, ...]) -> dict[str, dict[int, np.ndarray]]:
    rows = read_csv_rows(path, ("FileName", "Frame", *columns))
    tracings: dict[str, dict[int, list[list[float]]]] = {}
    for number, row in enumerate(rows, start=2):
        try:
            frame = int(float(row["Frame"]))
            values = [float(row[c]) for c in columns]
        except ValueError as error:
            raise ValueError(
                f"CSV file {str(path)!r} line {number}: expected numeric Frame and {list(columns)}, got {row}."
            ) from error
        tracings.setdefault(video_key(row["FileName"]), {}).setdefault(frame, []).append(values)
    return {
        name: {frame: np.asarray(points, dtype=np.float64) for frame, points in frames.items()}
        for name, frames in tracings.items()
    }


def read_chord_tracings(path: str | os.PathLike) -> dict[str, dict[int, np.ndarray]]:
    """Parse an EchoNet-Dynamic ``VolumeTracings.csv``.

    Returns:
        ``{video name without .avi: {frame: (N, 4) array of X1, Y1, X2, Y2}}`` in file order.
    """
    return _parse_tracings(path, ("X1", "Y1", "X2", "Y2"))


def read_polygon_tracings(path: str | os.PathLike) -> dict[str, dict[int, np.ndarray]]:
    """Parse an EchoNet-Pediatric ``VolumeTracings.csv``.

    Returns:
        ``{video name without .avi: {frame: (N, 2) array of X, Y}}`` in file order.
    """
    return _parse_tracings(path, ("X", "Y"))


def tracing_outline(points: np.ndarray) -> np.ndarray:
    """Cavity outline of one traced frame as ``(N, 2)`` ``(x, y)`` vertices.

    Args:
        points: ``(N, 4)`` chord rows (long axis first) or ``(N, 2)`` polygon vertices.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] == 2:
        return points
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"tracing_outline: expected (N, 4) chords or (N, 2) vertices, got shape {points.shape}.")
    chords = points[1:]
    x = np.concatenate([chords[:, 0], chords[::-1, 2]])
    y = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return np.stack([x, y], axis=1)


def outline_area(outline: np.ndarray) -> float:
    """Area (pixels^2) enclosed by an ``(N, 2)`` ``(x, y)`` outline, by the shoelace formula."""
    x, y = outline[:, 0], outline[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def outline_mask(outline: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill an outline into a binary mask.

    Args:
        outline: ``(N, 2)`` ``(x, y)`` vertices in pixel coordinates.
        shape: ``(H, W)`` of the mask.

    Returns:
        ``(H, W)`` ``uint8`` mask, 1 inside the outline.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    if len(outline) >= 3:
        rows, cols = draw_polygon(np.rint(outline[:, 1]), np.rint(outline[:, 0]), shape=shape)
        mask[rows, cols] = 1
    return mask


def select_ed_es(frames: dict[int, np.ndarray]) -> tuple[int, int]:
    """Pick ED (largest traced cavity) and ES (smallest) among the traced frames of one video.

    Args:
        frames: ``{frame: chords or vertices}`` of one video, at least two frames.

    Returns:
        ``(ed_frame, es_frame)``.
    """
    if len(frames) < 2:
        raise ValueError(f"expected tracings on two frames (ED and ES), found frame(s) {sorted(frames)}.")
    areas = {frame: outline_area(tracing_outline(points)) for frame, points in frames.items()}
    return max(areas, key=areas.__getitem__), min(areas, key=areas.__getitem__)
