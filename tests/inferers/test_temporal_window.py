"""TemporalSlidingWindow: exact on time-local networks, window layout and coverage, kwargs, inside Sampler, errors."""

from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import RFlowScheduler
from torch import nn

from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import Sampler, TemporalSlidingWindow
from echo_monai.networks.nets import SpatioTemporalUNet

WINDOW = 4


class FramewiseNet(nn.Module):
    """A time-local denoiser: a (1, 3, 3) convolution scaled per sample by the timestep and shifted by the context."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        scale = (1.0 + timesteps.float() / 1000.0).reshape(-1, 1, 1, 1, 1)
        out = self.conv(x) * scale
        if context is not None:
            out = out + context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1)
        return out


class TemporalMixingNet(nn.Module):
    """Mixes frames (a (3, 1, 1) convolution), so windowed and full-clip outputs differ; records the input lengths."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, (3, 1, 1), padding=(1, 0, 0))
        self.lengths: list[int] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.lengths.append(x.shape[2])
        return self.conv(x)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def framewise_net() -> FramewiseNet:
    torch.manual_seed(0)
    return FramewiseNet().eval()


@pytest.fixture
def tiny_video_unet(make_video_unet) -> SpatioTemporalUNet:
    net = make_video_unet(seed=0)
    with torch.no_grad():  # randomise the zero-initialised branches so that the output is not trivially zero
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("num_frames", [1, WINDOW - 1, WINDOW])
def test_short_clip_is_one_unchanged_call(num_frames):
    torch.manual_seed(0)
    net = TemporalMixingNet()
    x, t = torch.randn(2, 1, num_frames, 8, 8), torch.tensor([10, 900])
    wrapped = TemporalSlidingWindow(net, WINDOW, overlap=2)
    with torch.no_grad():
        assert torch.equal(wrapped(x, t), net(x, t))
    assert net.lengths == [num_frames, num_frames]


@pytest.mark.parametrize("num_frames", [WINDOW + 1, 2 * WINDOW, 3 * WINDOW - 1])
@pytest.mark.parametrize("mode", ["triangular", "constant"])
@pytest.mark.parametrize("overlap", [1, 2, 0.5, 0.25, 0])
def test_time_local_network_is_reproduced_exactly(framewise_net, num_frames, mode, overlap):
    torch.manual_seed(1)
    x, t = torch.randn(2, 2, num_frames, 8, 8), torch.tensor([0, 700])
    wrapped = TemporalSlidingWindow(framewise_net, WINDOW, overlap=overlap, mode=mode)
    with torch.no_grad():
        expected, got = framewise_net(x, t), wrapped(x, t)
    assert got.shape == expected.shape == (2, 1, num_frames, 8, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_windows_are_full_size_and_blended():
    net = TemporalMixingNet()
    torch.manual_seed(0)
    x, t = torch.randn(1, 1, 2 * WINDOW + 1, 4, 4), torch.zeros(1)
    wrapped = TemporalSlidingWindow(net, WINDOW, overlap=2)
    with torch.no_grad():
        out = wrapped(x, t)
        full = net.conv(x)
    assert net.lengths == [WINDOW] * len(wrapped.window_starts(2 * WINDOW + 1))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, full)  # temporal mixing sees window borders: blending is not a no-op here


@pytest.mark.parametrize(
    ("window", "overlap", "num_frames", "starts"),
    [
        (4, 2, 4, [0]),
        (4, 2, 3, [0]),
        (4, 2, 8, [0, 2, 4]),
        (4, 2, 9, [0, 2, 4, 5]),  # the last window is shifted back to end at T
        (4, 0, 10, [0, 4, 6]),
        (4, 0.5, 8, [0, 2, 4]),
        (4, 0.3, 8, [0, 3, 4]),  # 0.3 * 4 = 1.2 -> 1 frame of overlap, stride 3
        (64, 16, 192, [0, 48, 96, 128]),
        (1, 0, 3, [0, 1, 2]),
    ],
)
def test_window_starts(window, overlap, num_frames, starts):
    wrapped = TemporalSlidingWindow(nn.Identity(), window, overlap=overlap)
    assert wrapped.window_starts(num_frames) == starts
    assert all(s + window <= max(num_frames, window) for s in starts)
    assert starts[-1] + window == max(num_frames, window)


@pytest.mark.parametrize("mode", ["triangular", "constant"])
@pytest.mark.parametrize("overlap", [0, 1, 3, 0.5])
@pytest.mark.parametrize("num_frames", [5, 8, 11, 17])
def test_every_frame_is_covered(mode, overlap, num_frames):
    wrapped = TemporalSlidingWindow(nn.Identity(), 4, overlap=overlap, mode=mode)
    weights = wrapped.frame_weights()
    assert weights.shape == (4,) and (weights > 0).all()
    coverage = wrapped.coverage(num_frames)
    assert coverage.shape == (num_frames,) and (coverage > 0).all()


def test_triangular_weights_cross_fade():
    wrapped = TemporalSlidingWindow(nn.Identity(), 6, overlap=2)
    torch.testing.assert_close(wrapped.frame_weights(), torch.tensor([1, 2, 3, 3, 2, 1]) / 3.0)
    # regular strides: the ramps of neighbouring windows sum to one across the overlap
    torch.testing.assert_close(wrapped.coverage(14)[2:-2], torch.ones(10))
    torch.testing.assert_close(
        TemporalSlidingWindow(nn.Identity(), 6, 2, mode="constant").frame_weights(), torch.ones(6)
    )


def test_kwargs_pass_through_per_sample(framewise_net):
    torch.manual_seed(2)
    x, t = torch.randn(3, 2, 3 * WINDOW - 1, 8, 8), torch.tensor([5, 300, 950])
    context = torch.randn(3, 2, 5) + torch.arange(3.0).reshape(3, 1, 1) * 10
    wrapped = TemporalSlidingWindow(framewise_net, WINDOW, overlap=0.5)
    with torch.no_grad():
        batched = wrapped(x, t, context=context)
        for b in range(3):
            single = framewise_net(x[b : b + 1], t[b : b + 1], context=context[b : b + 1])
            torch.testing.assert_close(batched[b : b + 1], single, atol=1e-5, rtol=0)


def test_inside_sampler_with_spatiotemporal_unet(tiny_video_unet):
    num_frames = 2 * WINDOW - 2
    wrapped = TemporalSlidingWindow(tiny_video_unet, WINDOW, overlap=2).eval()
    sampler = Sampler(
        RFlowScheduler(10, use_discrete_timesteps=False), 2, conditioning=Conditioning(concat_keys=["ref"])
    )

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        noise, reference = torch.randn(2, 1, num_frames, 16, 16), torch.randn(2, 1, 16, 16)
        return sampler(noise, wrapped, condition=Condition(concat=[reference]))

    out = run(0)
    assert out.shape == (2, 1, num_frames, 16, 16) and torch.isfinite(out).all()
    torch.testing.assert_close(run(0), out, atol=0, rtol=0)
    assert not torch.allclose(run(1), out)
    assert set(wrapped.state_dict()) == {f"network.{k}" for k in tiny_video_unet.state_dict()}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window must be an int >= 1"),
        ({"window": 4.0}, "window must be an int >= 1"),
        ({"window": 4, "overlap": 4}, r"overlap in frames must be in \[0, window=4\)"),
        ({"window": 4, "overlap": -1}, r"overlap in frames must be in \[0, window=4\)"),
        ({"window": 4, "overlap": 1.0}, r"fraction of the window must be in \[0, 1\)"),
        ({"window": 4, "overlap": "half"}, "overlap must be an int"),
        ({"window": 4, "mode": "gaussian"}, "mode must be one of"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalSlidingWindow(nn.Identity(), **kwargs)


def test_non_video_input_raises(framewise_net):
    wrapped = TemporalSlidingWindow(framewise_net, WINDOW)
    with pytest.raises(ValueError, match=r"x must be a video \(B, C, T, H, W\)"):
        wrapped(torch.randn(2, 2, 8, 8), torch.zeros(2))
