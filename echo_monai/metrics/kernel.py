"""Kernel distance (KID): unbiased squared MMD with a cubic polynomial kernel, averaged over random subsets.

Bińkowski et al., "Demystifying MMD GANs", ICLR 2018.

Notation: ``k(x, y) = (x . y / D + 1)^3``; for subsets ``X`` (real) and ``Y`` (fake) of size ``m``::

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

The estimator is unbiased, so its mean over draws is 0 for identical distributions (single draws can be negative).
"""

from __future__ import annotations

import numpy as np

from echo_monai.metrics._utils import ArrayLike, as_float64_pair

__all__ = ["kernel_distance", "polynomial_mmd_unbiased"]


def polynomial_mmd_unbiased(real: np.ndarray, fake: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased squared MMD between two equally sized float64 sets with the polynomial kernel.

    Args:
        real: real features, `(m, D)`, `m >= 2`.
        fake: synthetic features, `(m, D)`.
        degree: polynomial degree (3 in KID).
        coef0: additive constant in the kernel (1 in KID).

    Returns:
        the unbiased MMD^2 estimate (may be slightly negative).
    """
    m, dim = real.shape
    gamma = 1.0 / dim
    k_rr = (real @ real.T * gamma + coef0) ** degree
    k_ff = (fake @ fake.T * gamma + coef0) ** degree
    k_rf = (real @ fake.T * gamma + coef0) ** degree
    within = (k_rr.sum() - np.trace(k_rr) + k_ff.sum() - np.trace(k_ff)) / (m * (m - 1))
    return float(within - 2.0 * k_rf.mean())


def kernel_distance(
    real: ArrayLike,
    fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Kernel Inception/feature Distance: mean and std of the unbiased polynomial MMD^2 over random subsets.

    Each subset draws ``min(subset_size, N, M)`` rows without replacement from each set.

    Args:
        real: real features, `(N, D)`, `N >= 2`.
        fake: synthetic features, `(M, D)`, `M >= 2`.
        subsets: number of random subsets (>= 1).
        subset_size: rows per subset (>= 2); clipped to the smaller set size.
        seed: seed of the NumPy generator drawing the subsets (None: nondeterministic).

    Returns:
        `(mean, std)` of MMD^2 over the subsets (std is 0 for a single subset).

    Raises:
        ValueError: for malformed features, `subsets < 1` or `subset_size < 2`.

    Example:
        >>> x = np.random.randn(400, 16)
        >>> mean, std = kernel_distance(x, np.random.randn(400, 16), subsets=20, subset_size=200)
        >>> abs(mean) < 3 * std + 1e-3
    """
    if subsets < 1:
        raise ValueError(f"kernel_distance: subsets must be >= 1, got {subsets}.")
    if subset_size < 2:
        raise ValueError(f"kernel_distance: subset_size must be >= 2, got {subset_size}.")
    real_array, fake_array = as_float64_pair(real, fake, min_rows=2)
    m = min(subset_size, real_array.shape[0], fake_array.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for index in range(subsets):
        real_rows = rng.choice(real_array.shape[0], m, replace=False)
        fake_rows = rng.choice(fake_array.shape[0], m, replace=False)
        values[index] = polynomial_mmd_unbiased(real_array[real_rows], fake_array[fake_rows])
    return float(values.mean()), float(values.std())
