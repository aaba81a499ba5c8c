"""Shared helpers for the metrics package: array validation and float64 conversion."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_float64_features", "as_float64_pair"]

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequence


def as_float64_features(x: ArrayLike, name: str, min_rows: int = 1) -> np.ndarray:
    """Convert an `(N, D)` array or tensor to a finite float64 NumPy array.

    Args:
        x: features, `(N, D)`; a torch tensor (any device, any float dtype) or anything `np.asarray` accepts.
        name: argument name used in error messages.
        min_rows: the smallest acceptable `N`.

    Returns:
        float64 array of shape `(N, D)`.

    Raises:
        ValueError: when `x` is not two-dimensional, has fewer than `min_rows` rows or holds NaN/inf.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array of features, got shape {tuple(array.shape)}.")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows (samples), got {array.shape[0]}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold only finite values, found NaN or inf.")
    return array


def as_float64_pair(real: ArrayLike, fake: ArrayLike, min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate two feature sets that must share the feature dimension `D`.

    Args:
        real: real features, `(N, D)`.
        fake: synthetic features, `(M, D)`.
        min_rows: the smallest acceptable number of rows in each set.

    Returns:
        the two sets as float64 arrays.

    Raises:
        ValueError: when either set is malformed or the feature dimensions differ.
    """
    real_array = as_float64_features(real, "real", min_rows)
    fake_array = as_float64_features(fake, "fake", min_rows)
    if real_array.shape[1] != fake_array.shape[1]:
        raise ValueError(
            f"real and fake must share the feature dimension D, got {real_array.shape[1]} and {fake_array.shape[1]}."
        )
    return real_array, fake_array
