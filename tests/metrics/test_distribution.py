from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.distribution import distribution_metrics
from echo_monai.metrics.encoders import resnet_encoder
from echo_monai.metrics.frechet import frechet_distance

from .threads import single_thread  # noqa: F401 (autouse fixture)


def test_names_precomputed_features_and_matches_the_parts():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 4)), rng.normal(0.5, 1.0, size=(60, 4))
    scores = distribution_metrics(real, fake, encoder_name="reid", kid_subsets=5, kid_subset_size=30)
    assert scores["FD_reid"] == pytest.approx(frechet_distance(real, fake))
    expected = {
        "FD_reid",
        "KD_reid",
        "KD_reid_std",
        "precision_reid",
        "recall_reid",
        "density_reid",
        "coverage_reid",
        "diversity_reid",
        "diversity_reid_real",
    }
    assert set(scores) == expected


def test_encodes_samples_with_an_encoder():
    encoder = resnet_encoder("toy", block_inplanes=(4, 4, 8, 8))
    real, fake = torch.rand(12, 1, 32, 32), torch.rand(12, 1, 32, 32)
    scores = distribution_metrics(real, fake, encoder, kid_subsets=3, k=3, batch_size=5)
    assert scores["FD_toy"] >= 0 and "precision_toy" in scores


def test_skips_prdc_for_tiny_sets_and_requires_a_name():
    x = np.random.default_rng(1).normal(size=(4, 2))
    assert "precision_f" not in distribution_metrics(x, x, encoder_name="f", kid_subsets=2)
    with pytest.raises(ValueError, match="encoder_name"):
        distribution_metrics(x, x)
