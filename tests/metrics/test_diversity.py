from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.diversity import feature_diversity, ms_ssim_diversity, ms_ssim_settings

from .threads import single_thread  # noqa: F401 (autouse fixture)


def test_settings_fit_112_and_32_pixel_frames():
    assert len(ms_ssim_settings(112, kernel_size=7)) == 5
    assert len(ms_ssim_settings(112, kernel_size=11)) == 4
    weights = ms_ssim_settings(32, kernel_size=7)
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0)


def test_identical_samples_have_ms_ssim_one_and_noise_much_less():
    image = torch.rand(1, 1, 112, 112) * 2 - 1
    assert ms_ssim_diversity(image.repeat(4, 1, 1, 1)) == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim_diversity(torch.rand(6, 1, 112, 112) * 2 - 1) < 0.3


def test_videos_and_pair_sampling():
    videos = torch.rand(5, 1, 4, 32, 32)
    value = ms_ssim_diversity(videos, value_range=(0.0, 1.0), max_pairs=3, batch_size=2)
    assert 0.0 <= value < 0.5
    assert value == ms_ssim_diversity(videos, value_range=(0.0, 1.0), max_pairs=3, batch_size=2)


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        (torch.rand(4, 32, 32), {}, "must be \\(N, C, H, W\\)"),
        (torch.rand(1, 1, 32, 32), {}, "at least 2 samples"),
        (torch.rand(2, 1, 32, 32), {"value_range": (1.0, 1.0)}, "value_range"),
        (torch.rand(2, 1, 4, 4), {}, "too small"),
    ],
)
def test_ms_ssim_diversity_rejects_bad_input(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ms_ssim_diversity(images, **kwargs)


@pytest.mark.parametrize("kwargs, match", [({"kernel_size": 4}, "kernel_size"), ({"max_scales": 6}, "max_scales")])
def test_ms_ssim_settings_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ms_ssim_settings(112, **kwargs)


def test_feature_diversity_closed_form():
    assert feature_diversity(np.eye(3)) == pytest.approx(np.sqrt(2.0))
    assert feature_diversity(np.eye(3), metric="cosine") == pytest.approx(1.0)
    assert feature_diversity(np.ones((4, 3))) == pytest.approx(0.0)
    sampled = feature_diversity(np.random.default_rng(0).normal(size=(100, 4)), max_pairs=50)
    assert sampled > 0


def test_feature_diversity_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be"):
        feature_diversity(np.eye(3), metric="manhattan")
