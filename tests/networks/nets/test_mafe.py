"""MCDM's motion and appearance feature extractor: outputs, gradients, motion tokens and argument checks."""

from __future__ import annotations

import pytest
import torch

from echo_monai.networks.nets import MotionAppearanceFeatureExtractor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def net() -> MotionAppearanceFeatureExtractor:
    torch.manual_seed(0)
    return MotionAppearanceFeatureExtractor(channels=(8, 16), motion_dim=12, appearance_dim=10, norm_num_groups=8)


def test_forward_returns_every_output_with_its_shape(net):
    pair = torch.rand(3, 2, 16, 24) * 2 - 1
    out = net(pair)
    assert set(out) == {"middle", "flow", "motion", "appearance"}
    assert out["middle"].shape == (3, 1, 16, 24) and out["middle"].abs().max() <= 1
    assert out["flow"].shape == (3, 2, 16, 24)
    assert out["motion"].shape == (3, 12)
    assert out["appearance"].shape == (3, 10)
    torch.testing.assert_close(out["appearance"].norm(dim=1), torch.ones(3))
    frame_a, frame_b = pair[:, :1], pair[:, 1:]
    torch.testing.assert_close(out["motion"], net.motion_vector(frame_a, frame_b))
    torch.testing.assert_close(out["appearance"], net.appearance_vector(frame_a))
    assert [level.shape for level in net.appearance_pyramid(frame_a)] == [(3, 8, 16, 24), (3, 16, 8, 12)]
    assert [level.shape for level in net.motion_pyramid(frame_a, frame_b)] == [(3, 8, 16, 24), (3, 16, 8, 12)]


def test_three_levels_and_multichannel_frames():
    net = MotionAppearanceFeatureExtractor(in_channels=2, channels=(8, 8, 16), motion_dim=4, appearance_dim=4)
    out = net(torch.randn(2, 4, 16, 16))
    assert out["middle"].shape == (2, 2, 16, 16) and out["flow"].shape == (2, 2, 16, 16)


def test_gradients_reach_both_encoders_through_the_middle_frame(net):
    net(torch.randn(2, 2, 16, 16))["middle"].square().mean().backward()
    for encoder in (net.appearance_encoder, net.motion_encoder):
        grads = [p.grad for p in encoder.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_motion_vector_sees_motion(net):
    frame = torch.rand(2, 1, 16, 16) * 2 - 1
    shifted = torch.roll(frame, shifts=(2, 3), dims=(-2, -1))
    still, moved = net.motion_vector(frame, frame), net.motion_vector(frame, shifted)
    assert (still - moved).abs().max() > 1e-4


def test_motion_tokens_shapes_groups_and_determinism(net):
    net.eval()
    video = torch.rand(2, 1, 7, 16, 16) * 2 - 1
    one, three = net.motion_tokens(video), net.motion_tokens(video, num_tokens=3)
    assert one.shape == (2, 1, 12) and three.shape == (2, 3, 12)
    torch.testing.assert_close(net.motion_tokens(video, num_tokens=3), three, rtol=0, atol=0)
    # independent computation: pairs (0, t), t = 1..6, in groups {1, 2}, {3, 4}, {5, 6}
    pairs = torch.stack([net.motion_vector(video[:, :, 0], video[:, :, t]) for t in range(1, 7)], dim=1)
    torch.testing.assert_close(one[:, 0], pairs.mean(dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(three[:, 1], pairs[:, 2:4].mean(dim=1), rtol=1e-4, atol=1e-5)
    assert net.motion_tokens(video, num_tokens=6).shape == (2, 6, 12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels must be >= 1, got 0"),
        ({"channels": ()}, "channels must list at least one"),
        ({"channels": (8, 12)}, "norm_num_groups 8 must be >= 1 and divide"),
        ({"motion_dim": 0}, "motion_dim must be >= 1, got 0"),
        ({"appearance_dim": 0}, "appearance_dim must be >= 1, got 0"),
    ],
)
def test_constructor_errors(kwargs, match):
    settings = {"channels": (8, 16), "motion_dim": 4, "appearance_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        MotionAppearanceFeatureExtractor(**settings)


def test_shape_errors(net):
    with pytest.raises(ValueError, match=r"pair must be \(B, 2, H, W\)"):
        net(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"H, W = \(15, 16\); both must divide by 2 \*\* \(levels - 1\) = 2"):
        net(torch.zeros(1, 2, 15, 16))
    with pytest.raises(ValueError, match="must have the same shape"):
        net.motion_vector(torch.zeros(1, 1, 16, 16), torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"video must be \(B, 1, T, H, W\)"):
        net.motion_tokens(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="T = 1 frames; at least 2"):
        net.motion_tokens(torch.zeros(1, 1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"num_tokens must be in \[1, T - 1\] = \[1, 3\] for T = 4, got 4"):
        net.motion_tokens(torch.zeros(1, 1, 4, 16, 16), num_tokens=4)
