"""Fréchet distance between Gaussian fits of two feature sets (FID / FVD / ``FD_<encoder>``).

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017.

Notation: real features have mean ``mu_r`` and covariance ``S_r``, synthetic ones ``mu_f`` and ``S_f``::

    FD = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2))

``S_r S_f`` is similar to the symmetric positive semi-definite matrix ``A = S_r^(1/2) S_f S_r^(1/2)``, so the trace of
its square root is the sum of the square roots of the eigenvalues of ``A``; ``A`` is built with ``eigh`` (no
``scipy.linalg.sqrtm``), which stays stable when the covariances are rank deficient (fewer samples than features).
"""

from __future__ import annotations

import numpy as np

from echo_monai.metrics._utils import ArrayLike, as_float64_pair

__all__ = ["frechet_distance", "gaussian_frechet_distance"]


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition, `(D, D) -> (D, D)`."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    root = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * root) @ eigenvectors.T


def gaussian_frechet_distance(
    mu_real: ArrayLike, sigma_real: ArrayLike, mu_fake: ArrayLike, sigma_fake: ArrayLike
) -> float:
    """Fréchet (2-Wasserstein) distance between two Gaussians given by their moments.

    Args:
        mu_real: mean of the real features, `(D,)`.
        sigma_real: covariance of the real features, `(D, D)`.
        mu_fake: mean of the synthetic features, `(D,)`.
        sigma_fake: covariance of the synthetic features, `(D, D)`.

    Returns:
        the squared Fréchet distance, a non-negative float.

    Raises:
        ValueError: when the shapes do not agree.
    """
    mu_r, mu_f = np.asarray(mu_real, np.float64), np.asarray(mu_fake, np.float64)
    s_r, s_f = np.asarray(sigma_real, np.float64), np.asarray(sigma_fake, np.float64)
    if mu_r.ndim != 1 or mu_r.shape != mu_f.shape:
        raise ValueError(f"mu_real and mu_fake must be (D,) vectors of equal length, got {mu_r.shape}, {mu_f.shape}.")
    dim = mu_r.shape[0]
    if s_r.shape != (dim, dim) or s_f.shape != (dim, dim):
        raise ValueError(f"sigma_real and sigma_fake must be ({dim}, {dim}) matrices, got {s_r.shape} and {s_f.shape}.")
    sqrt_r = _psd_sqrt(s_r)
    inner = sqrt_r @ s_f @ sqrt_r  # similar to S_r S_f, symmetric PSD
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu_r - mu_f
    distance = float(diff @ diff + np.trace(s_r) + np.trace(s_f) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def frechet_distance(real: ArrayLike, fake: ArrayLike) -> float:
    """Fréchet distance between Gaussian fits of real and synthetic features.

    Called FID when the features come from the standard Inception-v3 weights, FVD for the standard I3D, and
    ``FD_<encoder>`` otherwise (see :func:`echo_monai.metrics.encoders.metric_name`).

    Args:
        real: real features, `(N, D)`, `N >= 2`; NumPy array or torch tensor (computed in float64).
        fake: synthetic features, `(M, D)`, `M >= 2`.

    Returns:
        the squared Fréchet distance (non-negative float; 0 for identical sets).

    Raises:
        ValueError: when either set is not `(N, D)` with at least 2 rows, holds NaN/inf, or the `D` differ.

    Example:
        >>> real, fake = np.random.randn(500, 8), np.random.randn(500, 8) + 1.0
        >>> frechet_distance(real, fake)  # about 8 = |mu_r - mu_f|^2
    """
    real_array, fake_array = as_float64_pair(real, fake, min_rows=2)
    return gaussian_frechet_distance(
        real_array.mean(axis=0),
        np.atleast_2d(np.cov(real_array, rowvar=False)),
        fake_array.mean(axis=0),
        np.atleast_2d(np.cov(fake_array, rowvar=False)),
    )
