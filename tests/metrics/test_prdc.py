from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.prdc import nearest_neighbour_radii, prdc

from .threads import single_thread  # noqa: F401 (autouse fixture)


def test_identical_sets_score_one_everywhere():
    x = np.random.default_rng(0).normal(size=(200, 6))
    assert prdc(x, x, k=5) == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_disjoint_sets_score_zero():
    x = np.random.default_rng(1).normal(size=(100, 4))
    assert prdc(x, x + 100.0, k=3) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_mode_collapse_onto_one_of_two_clusters():
    """Fake = exact copy of cluster A only: full precision and density, half recall and coverage."""
    rng = np.random.default_rng(2)
    cluster_a, cluster_b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 50.0
    real = np.concatenate([cluster_a, cluster_b])
    scores = prdc(real, cluster_a.copy(), k=4)
    assert scores == pytest.approx({"precision": 1.0, "recall": 0.5, "density": 1.0, "coverage": 0.5})


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.3, 1.2, size=(45, 5))
    assert prdc(real, fake, k=5, chunk_size=7) == pytest.approx(prdc(real, fake, k=5, chunk_size=1000))


def test_radii_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0]], dtype=torch.float64)
    assert nearest_neighbour_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert nearest_neighbour_radii(points, k=2, chunk_size=1).tolist() == [3.0, 2.0, 3.0, 5.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"k": 0}, "k must be >= 1"), ({"chunk_size": 0}, "chunk_size must be >= 1"), ({"k": 10}, "at least 11 rows")],
)
def test_prdc_rejects_bad_arguments(kwargs, match):
    x = np.random.default_rng(4).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        prdc(x, x, **kwargs)
