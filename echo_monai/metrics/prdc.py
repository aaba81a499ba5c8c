"""Precision, recall, density and coverage of synthetic features against real ones.

Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020
(precision/recall after Kynkäänniemi et al., NeurIPS 2019).

Notation: ``r_i`` real (N), ``f_j`` fake (M), ``NND_k(x)`` the distance from ``x`` to its k-th nearest neighbour in its
own set (self excluded), ``B(x, r)`` the open ball::

    precision = 1/M  sum_j 1[exists i: f_j in B(r_i, NND_k(r_i))]
    recall    = 1/N  sum_i 1[exists j: r_i in B(f_j, NND_k(f_j))]
    density   = 1/(kM) sum_j sum_i 1[f_j in B(r_i, NND_k(r_i))]
    coverage  = 1/N  sum_i 1[min_j |r_i - f_j| < NND_k(r_i)]

Distances are computed in float64 in row chunks, so memory stays ``O(chunk * max(N, M))``.
"""

from __future__ import annotations

import torch

from echo_monai.metrics._utils import ArrayLike, as_float64_pair

__all__ = ["prdc", "nearest_neighbour_radii"]

# exact pairwise differences: the matmul shortcut makes self-distances non-zero and breaks ties inconsistently
_EXACT = "donot_use_mm_for_euclid_dist"


def nearest_neighbour_radii(features: torch.Tensor, k: int, chunk_size: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest neighbour in the same set (self excluded).

    Args:
        features: float64 tensor `(N, D)` with `N > k`.
        k: neighbour rank (>= 1).
        chunk_size: rows per distance block.

    Returns:
        radii, `(N,)`.
    """
    radii = []
    for start in range(0, features.shape[0], chunk_size):
        block = torch.cdist(features[start : start + chunk_size], features, compute_mode=_EXACT)
        # the smallest entry is the row itself (distance 0), so the k-th neighbour is the (k+1)-th smallest
        radii.append(block.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(real: ArrayLike, fake: ArrayLike, k: int = 5, chunk_size: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) of `fake` against `real`.

    Args:
        real: real features, `(N, D)` with `N > k`.
        fake: synthetic features, `(M, D)` with `M > k`.
        k: nearest-neighbour rank defining the manifold balls (5 in the paper).
        chunk_size: rows per distance block (memory knob, does not change the result).

    Returns:
        ``{"precision", "recall", "density", "coverage"}``; density can exceed 1, the others lie in [0, 1].

    Raises:
        ValueError: when `k < 1`, `chunk_size < 1`, either set has `<= k` rows or the features are malformed.

    Example:
        >>> x = np.random.randn(200, 8)
        >>> prdc(x, x, k=5)  # identical sets: all four equal 1
    """
    if k < 1:
        raise ValueError(f"prdc: k must be >= 1, got {k}.")
    if chunk_size < 1:
        raise ValueError(f"prdc: chunk_size must be >= 1, got {chunk_size}.")
    real_array, fake_array = as_float64_pair(real, fake, min_rows=k + 1)
    real_t, fake_t = torch.from_numpy(real_array), torch.from_numpy(fake_array)
    real_radii = nearest_neighbour_radii(real_t, k, chunk_size)
    fake_radii = nearest_neighbour_radii(fake_t, k, chunk_size)

    inside_any = 0.0  # fake samples within some real ball (precision)
    inside_count = 0.0  # (fake, real ball) memberships (density)
    for start in range(0, fake_t.shape[0], chunk_size):
        inside = torch.cdist(fake_t[start : start + chunk_size], real_t, compute_mode=_EXACT) < real_radii[None, :]
        inside_any += float(inside.any(dim=1).sum())
        inside_count += float(inside.sum())

    recalled = 0.0  # real samples within some fake ball (recall)
    covered = 0.0  # real balls holding at least one fake sample (coverage)
    for start in range(0, real_t.shape[0], chunk_size):
        distances = torch.cdist(real_t[start : start + chunk_size], fake_t, compute_mode=_EXACT)
        recalled += float((distances < fake_radii[None, :]).any(dim=1).sum())
        covered += float((distances.min(dim=1).values < real_radii[start : start + chunk_size]).sum())

    num_real, num_fake = real_t.shape[0], fake_t.shape[0]
    return {
        "precision": inside_any / num_fake,
        "recall": recalled / num_real,
        "density": inside_count / (k * num_fake),
        "coverage": covered / num_real,
    }
