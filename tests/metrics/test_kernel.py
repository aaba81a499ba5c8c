from __future__ import annotations

import numpy as np
import pytest

from echo_monai.metrics.kernel import kernel_distance, polynomial_mmd_unbiased

from .threads import single_thread  # noqa: F401 (autouse fixture)


def _brute_force_mmd(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_unbiased_mmd_matches_the_formula_term_by_term():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(7, 3))
    assert polynomial_mmd_unbiased(x, y) == pytest.approx(_brute_force_mmd(x, y), rel=1e-10)


def test_unbiased_for_identical_distributions():
    """Averaged over many independent small draws the estimate is ~0, where the biased V-statistic is clearly > 0."""
    rng = np.random.default_rng(1)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
        unbiased.append(polynomial_mmd_unbiased(x, y))
        kxx, kyy, kxy = ((a @ b.T / 4 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    standard_error = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * standard_error
    assert np.mean(biased) > 10 * standard_error


def test_kernel_distance_near_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    mean_same, std_same = kernel_distance(real, rng.normal(size=(400, 8)), subsets=20, subset_size=200)
    mean_diff, _ = kernel_distance(real, rng.normal(0.5, 1.0, size=(400, 8)), subsets=20, subset_size=200)
    assert abs(mean_same) < 3 * std_same + 1e-3
    assert mean_diff > 10 * max(std_same, 1e-3)


def test_kernel_distance_is_seeded_and_clips_subset_size():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(50, 4))
    first = kernel_distance(x, y, subsets=5, subset_size=1000, seed=7)  # subset_size clipped to 30
    assert first == kernel_distance(x, y, subsets=5, subset_size=1000, seed=7)
    assert kernel_distance(x, y, subsets=1)[1] == 0.0


@pytest.mark.parametrize(
    "kwargs, match", [({"subsets": 0}, "subsets must be >= 1"), ({"subset_size": 1}, "subset_size must be >= 2")]
)
def test_kernel_distance_rejects_bad_arguments(kwargs, match):
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match=match):
        kernel_distance(x, x, **kwargs)
