from __future__ import annotations

import math

import pytest
import torch

from echo_monai.metrics.reconstruction import frames, reconstruction_metrics

from .threads import single_thread  # noqa: F401 (autouse fixture)


def test_identical_inputs():
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    scores = reconstruction_metrics(x, x)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-5) and math.isinf(scores["psnr"])


def test_psnr_of_a_constant_offset_matches_the_formula():
    x = torch.zeros(2, 1, 16, 16)
    offset = 0.1
    expected = 20 * math.log10(2.0) - 10 * math.log10(offset**2)  # data range 2 for [-1, 1]
    assert reconstruction_metrics(x + offset, x)["psnr"] == pytest.approx(expected, rel=1e-5)


def test_videos_are_scored_frame_by_frame():
    video = torch.rand(2, 1, 3, 16, 16)
    assert frames(video).shape == (6, 1, 16, 16)
    noisy = video + 0.2 * torch.randn_like(video)
    assert reconstruction_metrics(noisy, video) == pytest.approx(reconstruction_metrics(frames(noisy), frames(video)))


@pytest.mark.parametrize(
    "prediction, target, kwargs, match",
    [
        (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 17), {}, "same shape"),
        (torch.rand(2, 16, 16), torch.rand(2, 16, 16), {}, "expected \\(N, C, H, W\\)"),
        (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), {"value_range": (1.0, 0.0)}, "value_range"),
        (torch.rand(2, 1, 5, 5), torch.rand(2, 1, 5, 5), {}, "smaller than win_size"),
    ],
)
def test_reconstruction_metrics_rejects_bad_input(prediction, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        reconstruction_metrics(prediction, target, **kwargs)
