from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.frechet import frechet_distance, gaussian_frechet_distance

from .threads import single_thread  # noqa: F401 (autouse fixture)


def _two_by_two_reference(mu1, s1, mu2, s2) -> float:
    """Independent closed form: for 2x2 M with positive eigenvalues, tr(M^(1/2)) = sqrt(tr M + 2 sqrt(det M))."""
    product = s1 @ s2
    trace_sqrt = np.sqrt(np.trace(product) + 2.0 * np.sqrt(np.linalg.det(product)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def test_gaussian_moments_match_closed_form_for_non_commuting_covariances():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1 = np.array([[2.0, 0.6], [0.6, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        _two_by_two_reference(mu1, s1, mu2, s2), rel=1e-10
    )


def test_diagonal_gaussians_match_analytic_value():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2
    assert gaussian_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_samples_of_two_gaussians_approach_the_analytic_value():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1 = np.array([[2.0, 0.6], [0.6, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    real = rng.multivariate_normal(mu1, s1, size=200_000)
    fake = torch.from_numpy(rng.multivariate_normal(mu2, s2, size=200_000)).float()  # tensors are accepted
    assert frechet_distance(real, fake) == pytest.approx(_two_by_two_reference(mu1, s1, mu2, s2), rel=0.02)


def test_identical_sets_give_zero_even_when_rank_deficient():
    rng = np.random.default_rng(1)
    full = rng.normal(size=(500, 8))
    assert frechet_distance(full, full) == pytest.approx(0.0, abs=1e-9)
    few = rng.normal(size=(10, 64))  # N < D: singular covariance
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-7)


def test_symmetric_and_non_negative():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 5)), rng.normal(1.0, 2.0, size=(120, 5))
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    assert frechet_distance(x, y) > 0


@pytest.mark.parametrize(
    "real, fake, match",
    [
        (np.zeros(5), np.zeros((5, 2)), "real must be a 2-D"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "share the feature dimension"),
        (np.zeros((1, 2)), np.zeros((5, 2)), "at least 2 rows"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "finite"),
    ],
)
def test_frechet_distance_rejects_malformed_features(real, fake, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(real, fake)


def test_gaussian_frechet_distance_rejects_shape_mismatches():
    with pytest.raises(ValueError, match="mu_real and mu_fake"):
        gaussian_frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="sigma_real and sigma_fake"):
        gaussian_frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
