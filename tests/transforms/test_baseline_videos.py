from __future__ import annotations

import pytest
import torch

from echo_monai.transforms import affine_jitter_video, jitter_parameters, still_video


@pytest.fixture
def image() -> torch.Tensor:
    """A textured (1, 16, 24) image in [-1, 1]: a bright off-centre square on a gradient."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 24), indexing="ij")
    picture = 0.5 * xx
    picture[3:8, 4:10] = 1.0
    return picture[None]


def test_still_video_repeats_the_image(image):
    video = still_video(image, 5)
    assert video.shape == (1, 5, 16, 24) and video.dtype == image.dtype
    assert all(torch.equal(video[:, t], image) for t in range(5))
    video[:, 1] = 0  # a copy, not a view of the image
    assert image.abs().sum() > 0


def test_jitter_video_starts_at_the_image_and_then_moves(image):
    video = affine_jitter_video(image, 6, max_translation=0.1, max_rotation_deg=10.0, seed=1)
    assert video.shape == (1, 6, 16, 24) and video.dtype == torch.float32
    assert torch.equal(video[:, 0], image)
    assert all((video[:, t] - image).abs().mean() > 1e-3 for t in range(1, 6))
    assert video.min() >= image.min() - 1e-5 and video.max() <= image.max() + 1e-5  # bilinear + border padding


def test_jitter_video_is_deterministic_per_seed(image):
    first = affine_jitter_video(image, 4, seed=3)
    assert torch.equal(first, affine_jitter_video(image, 4, seed=3))
    assert not torch.equal(first, affine_jitter_video(image, 4, seed=4))


def test_jitter_parameters_are_bounded_and_start_at_identity():
    params = jitter_parameters(32, max_translation=0.05, max_rotation_deg=5.0, max_scale=0.02, seed=0)
    assert params.shape == (32, 4)
    assert torch.equal(params[0], torch.zeros(4, dtype=params.dtype))
    bounds = torch.tensor([0.05, 0.05, 5.0, 0.02], dtype=params.dtype)
    assert (params.abs() <= bounds + 1e-12).all()
    assert (params[1:] - params[:-1]).abs().max() < 0.5 * bounds.max()  # smooth: no jump between frames


def test_zero_bounds_give_a_still_video(image):
    video = affine_jitter_video(image, 3, max_translation=0.0, max_rotation_deg=0.0, max_scale=0.0)
    assert torch.allclose(video, still_video(image, 3), atol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: still_video(torch.zeros(1, 1, 8, 8), 4), r"image must be a \(C, H, W\)"),
        (lambda: still_video(torch.zeros(1, 8, 8), 0), "num_frames must be >= 1"),
        (lambda: affine_jitter_video(torch.zeros(8, 8), 4), r"image must be a \(C, H, W\)"),
        (lambda: affine_jitter_video(torch.zeros(1, 8, 8), 4, max_scale=1.0), r"max_scale must lie in \[0, 1\)"),
        (lambda: affine_jitter_video(torch.zeros(1, 8, 8), 4, max_translation=-0.1), "max_translation must be >= 0"),
        (lambda: jitter_parameters(0), "num_frames must be >= 1"),
    ],
)
def test_rejects_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
