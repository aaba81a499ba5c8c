from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import RFlowScheduler

from echo_monai.engines import Condition
from echo_monai.inferers import LatentSampler, LatentScaler, Sampler, framewise


@pytest.fixture
def autoencoder(make_autoencoder):
    return make_autoencoder(seed=0).eval()


class ConcatDenoiser(torch.nn.Module):
    """Returns zeros for the noisy channels after checking the reference latent arrived concatenated."""

    def forward(self, x, timesteps):
        assert x.shape[1] == 8  # 4 noisy latent channels + 4 reference latent channels
        return torch.zeros_like(x[:, :4])


def test_framewise_matches_per_frame_application():
    video = torch.randn(2, 3, 5, 4, 4)
    out = framewise(lambda x: x.mean(1, keepdim=True) * 2, video, chunk=3)
    assert out.shape == (2, 1, 5, 4, 4)
    torch.testing.assert_close(out[:, :, 3], video[:, :, 3].mean(1, keepdim=True) * 2)
    with pytest.raises(ValueError, match="expected"):
        framewise(lambda x: x, torch.zeros(2, 3))


def test_scaler_round_trip_per_channel():
    scaler = LatentScaler(scale=[0.5, 2.0], shift=[1.0, -1.0])
    z = torch.randn(3, 2, 4, 4, 4)
    torch.testing.assert_close(scaler.denormalize(scaler.normalize(z)), z)
    torch.testing.assert_close(scaler.normalize(z)[:, 1], (z[:, 1] + 1) * 2)
    with pytest.raises(ValueError, match="scale"):
        LatentScaler(scale=0.0)


def test_latent_video_sampling_encodes_reference_and_decodes(autoencoder):
    sampler = LatentSampler(Sampler(RFlowScheduler(10), 2), autoencoder, LatentScaler(0.5))
    reference = torch.rand(1, 1, 16, 16) * 2 - 1
    video = sampler(torch.randn(1, 4, 3, 8, 8), ConcatDenoiser(), condition=Condition(concat=[reference]))
    assert video.shape == (1, 1, 3, 16, 16) and video.abs().max() <= 1
    latent = LatentSampler(Sampler(RFlowScheduler(10), 2), autoencoder, encode_concat=False, decode=False)(
        torch.randn(1, 4, 3, 8, 8), ConcatDenoiser(), condition=Condition(concat=[torch.zeros(1, 4, 8, 8)])
    )
    assert latent.shape == (1, 4, 3, 8, 8)


def test_wraps_only_samplers(autoencoder):
    with pytest.raises(TypeError, match="Sampler"):
        LatentSampler(object(), autoencoder)


class FirstFrameEcho(torch.nn.Module):
    """A video denoiser stand-in: velocity zero, so the sample stays the noise it started from."""

    def forward(self, x, timesteps):
        return torch.zeros_like(x)


def test_video_autoencoder_decodes_with_its_first_frame_condition():
    from echo_monai.networks.nets import FirstFrameVideoAutoencoder

    torch.manual_seed(0)
    video_ae = FirstFrameVideoAutoencoder(1, channels=(8, 16), latent_channels=2, num_res_blocks=1, norm_num_groups=4)
    video_ae.eval()
    sampler = LatentSampler(Sampler(RFlowScheduler(10), 2), video_ae, encode_concat=False)
    first_frame = torch.rand(1, 1, 16, 16) * 2 - 1
    noise = torch.randn(1, 2, 2, 8, 8)  # latent of a 4-frame 16 px video (2x down in T, H and W)
    video = sampler(noise, FirstFrameEcho(), decoder_condition={"first_frame": first_frame})
    assert video.shape == (1, 1, 4, 16, 16)
    expected = video_ae.decode(noise, first_frame=first_frame).clamp(-1, 1)
    torch.testing.assert_close(video, expected)
    other = sampler(noise, FirstFrameEcho(), decoder_condition={"first_frame": -first_frame})
    assert not torch.allclose(other, video)
    with pytest.raises(ValueError, match="first_frame"):
        sampler(noise, FirstFrameEcho())
    torch.testing.assert_close(sampler.encode(video), video_ae.encode(video))  # identity scaler
