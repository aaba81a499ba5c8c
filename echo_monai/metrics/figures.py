"""Dependency-free report figures: sample grids, bar charts and scatter plots drawn into uint8 arrays with OpenCV.

matplotlib is not a dependency of echo_monai; these small plots only need NumPy and ``opencv-python-headless``.
Every function returns an RGB image `(H, W, 3)` uint8; :func:`write_png` writes one atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

__all__ = ["sample_grid", "bar_chart", "scatter_plot", "write_png"]

_WHITE, _BLACK, _GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4, color=_BLACK) -> None:
    cv2.putText(canvas, text, (int(origin[0]), int(origin[1])), _FONT, scale, color, 1, cv2.LINE_AA)


def _to_uint8_frames(samples: torch.Tensor | np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Samples `(N, C, H, W)` or `(N, C, T, H, W)` (middle frame shown) -> `(N, H, W, 3)` uint8."""
    x = torch.as_tensor(samples).detach().float().cpu()
    if x.ndim == 5:
        x = x[:, :, x.shape[2] // 2]
    if x.ndim != 4:
        raise ValueError(f"sample_grid: samples must be (N, C, H, W) or (N, C, T, H, W), got {tuple(x.shape)}.")
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != 3:
        x = x[:, :1].repeat(1, 3, 1, 1)
    low, high = value_range
    x = ((x - low) / (high - low)).clamp(0, 1) * 255
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def sample_grid(
    real: torch.Tensor | np.ndarray,
    synthetic: torch.Tensor | np.ndarray,
    max_samples: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    gap: int = 2,
) -> np.ndarray:
    """Two labelled rows: real samples on top, synthetic below (videos show their middle frame).

    Args:
        real: real samples `(N, C, H, W)` or `(N, C, T, H, W)`.
        synthetic: synthetic samples with the same `H`, `W`.
        max_samples: columns per row.
        value_range: intensity range mapped to black..white.
        gap: pixels between tiles.

    Returns:
        RGB image `(H', W', 3)` uint8.

    Raises:
        ValueError: when the inputs are not images/videos or their frame sizes differ.
    """
    rows = [_to_uint8_frames(s, value_range)[:max_samples] for s in (real, synthetic)]
    if rows[0].shape[1:] != rows[1].shape[1:]:
        raise ValueError(
            "sample_grid: real and synthetic frames must share (H, W), "
            f"got {rows[0].shape[1:3]} and {rows[1].shape[1:3]}."
        )
    height, width = rows[0].shape[1:3]
    label_width, columns = 80, max(len(rows[0]), len(rows[1]))
    canvas = np.full((2 * height + 3 * gap, label_width + columns * (width + gap) + gap, 3), 255, np.uint8)
    for r, (row, label) in enumerate(zip(rows, ("real", "synthetic"), strict=True)):
        top = gap + r * (height + gap)
        _text(canvas, label, (4, top + height // 2 + 4))
        for c, tile in enumerate(row):
            left = label_width + gap + c * (width + gap)
            canvas[top : top + height, left : left + width] = tile
    return canvas


def bar_chart(
    values: Mapping[str, float],
    title: str = "",
    width: int = 480,
    bar_height: int = 22,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Horizontal bar chart of named values (non-finite values are shown as "n/a").

    Args:
        values: label -> value (at least one).
        title: chart title.
        width: image width in pixels.
        bar_height: pixels per bar.
        value_range: ``(0, top)``: a fixed axis with five labelled ticks (e.g. ``(0, 1)`` for Dice), so charts of
            one kind compare; None scales to the largest value.

    Returns:
        RGB image `(H, width, 3)` uint8.

    Raises:
        ValueError: when `values` is empty.
    """
    if not values:
        raise ValueError("bar_chart: values must hold at least one entry, got none.")
    labels = list(values)
    numbers = np.array([float(values[label]) for label in labels])
    finite = numbers[np.isfinite(numbers)]
    span = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-12)
    if value_range is not None:
        span = float(value_range[1])
    has_negative = bool(finite.size and finite.min() < 0) and value_range is None
    left, right, top = 150, 70, 30
    plot = width - left - right
    zero = left + (plot // 2 if has_negative else 0)
    unit = (plot // 2 if has_negative else plot) / span
    axis = 22 if value_range is not None else 0
    canvas = np.full((top + len(labels) * (bar_height + 6) + 10 + axis, width, 3), 255, np.uint8)
    _text(canvas, title, (8, 18), 0.45)
    for i, (label, number) in enumerate(zip(labels, numbers, strict=True)):
        y = top + i * (bar_height + 6)
        _text(canvas, label[:22], (6, y + bar_height - 7))
        if np.isfinite(number):
            end = int(round(zero + number * unit))
            cv2.rectangle(
                canvas, (min(zero, end), y), (max(zero, end), y + bar_height), _PALETTE[i % len(_PALETTE)], -1
            )
            _text(canvas, f"{number:.4g}", (max(zero, end) + 4, y + bar_height - 7))
        else:
            _text(canvas, "n/a", (zero + 4, y + bar_height - 7))
    cv2.line(canvas, (zero, top - 4), (zero, canvas.shape[0] - 6 - axis), _BLACK, 1)
    if value_range is not None:
        y = canvas.shape[0] - axis - 2
        cv2.line(canvas, (zero, y), (zero + plot, y), _BLACK, 1)
        for tick in np.linspace(0.0, span, 5):
            x = int(round(zero + tick * unit))
            cv2.line(canvas, (x, y), (x, y + 4), _BLACK, 1)
            _text(canvas, f"{tick:.3g}", (max(0, x - 10), y + 17))
    return canvas


def scatter_plot(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    title: str = "",
    x_label: str = "x",
    y_label: str = "y",
    identity_line: bool = True,
    size: int = 360,
) -> np.ndarray:
    """Scatter plot with axis ticks and an optional y = x line (e.g. requested vs measured EF).

    Args:
        x: abscissae `(N,)`, N >= 1.
        y: ordinates `(N,)`.
        title: plot title.
        x_label: abscissa label.
        y_label: ordinate label.
        identity_line: draw the diagonal y = x.
        size: side of the square plotting area in pixels.

    Returns:
        RGB image uint8.

    Raises:
        ValueError: when `x` and `y` differ in length or are empty.
    """
    xs, ys = np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
    if xs.size == 0 or xs.shape != ys.shape:
        raise ValueError(f"scatter_plot: x and y must be non-empty and equally long, got {xs.size} and {ys.size}.")
    both = np.concatenate([xs, ys]) if identity_line else None
    x_low, x_high = (both.min(), both.max()) if identity_line else (xs.min(), xs.max())
    y_low, y_high = (x_low, x_high) if identity_line else (ys.min(), ys.max())
    pad_x, pad_y = max((x_high - x_low) * 0.05, 1e-6), max((y_high - y_low) * 0.05, 1e-6)
    x_low, x_high, y_low, y_high = x_low - pad_x, x_high + pad_x, y_low - pad_y, y_high + pad_y
    left, top, bottom, right = 60, 42, 45, 20
    canvas = np.full((top + size + bottom, left + size + right, 3), 255, np.uint8)

    def to_pixel(px: float, py: float) -> tuple[int, int]:
        return (
            int(round(left + (px - x_low) / (x_high - x_low) * size)),
            int(round(top + size - (py - y_low) / (y_high - y_low) * size)),
        )

    cv2.rectangle(canvas, (left, top), (left + size, top + size), _BLACK, 1)
    for fraction in np.linspace(0, 1, 5):
        tick_x, tick_y = x_low + fraction * (x_high - x_low), y_low + fraction * (y_high - y_low)
        px, _ = to_pixel(tick_x, y_low)
        _, py = to_pixel(x_low, tick_y)
        cv2.line(canvas, (px, top), (px, top + size), _GREY, 1)
        cv2.line(canvas, (left, py), (left + size, py), _GREY, 1)
        _text(canvas, f"{tick_x:.3g}", (px - 12, top + size + 15), 0.35)
        _text(canvas, f"{tick_y:.3g}", (4, py + 4), 0.35)
    if identity_line:
        cv2.line(canvas, to_pixel(x_low, x_low), to_pixel(x_high, x_high), _GREY, 1, cv2.LINE_AA)
    for px, py in zip(xs, ys, strict=True):
        cv2.circle(canvas, to_pixel(px, py), 3, _PALETTE[0], -1, cv2.LINE_AA)
    _text(canvas, title, (left, 16), 0.45)
    _text(canvas, x_label, (left + size // 2 - 30, top + size + 36))
    _text(canvas, y_label, (4, top - 8), 0.35)
    return canvas


def write_png(path: str | os.PathLike, image: np.ndarray) -> str:
    """Write an RGB (or grey) uint8 image as PNG, atomically (temporary name, then ``os.replace``).

    Args:
        path: destination file.
        image: `(H, W, 3)` RGB or `(H, W)` grey, uint8.

    Returns:
        the destination path as a string.

    Raises:
        ValueError: when `image` is not uint8 `(H, W)` or `(H, W, 3)`.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"write_png: image must be uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}.")
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"write_png: OpenCV could not encode an image of shape {image.shape}.")
    path = os.fspath(path)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(encoded.tobytes())
    os.replace(temporary, path)
    return path
