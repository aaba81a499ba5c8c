from __future__ import annotations

import pytest
import torch
from torch import nn

from echo_monai.networks.nets import FramewiseAutoencoder, LatentAutoencoder, as_latent_autoencoder


@pytest.fixture
def autoencoder(make_autoencoder):
    return make_autoencoder(seed=0, norm_num_groups=4).eval()


@pytest.fixture
def video():
    return torch.randn(2, 1, 5, 16, 16)


def _per_frame(fn, video: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(video[:, :, t]) for t in range(video.shape[2])], dim=2)


@pytest.mark.parametrize("frame_chunk", [None, 1, 3, 10])
def test_video_encode_decode_equal_per_frame_calls(autoencoder, video, frame_chunk):
    ae = FramewiseAutoencoder(autoencoder, frame_chunk=frame_chunk)
    with torch.no_grad():
        z_mu, z_sigma = ae.encode_posterior(video)
        expected_mu = _per_frame(lambda f: autoencoder.encode(f)[0], video)
        expected_sigma = _per_frame(lambda f: autoencoder.encode(f)[1], video)
        recon = ae.decode(z_mu)
        expected_recon = _per_frame(autoencoder.decode, z_mu)
    assert z_mu.shape == (2, 4, 5, 8, 8)
    torch.testing.assert_close(z_mu, expected_mu)
    torch.testing.assert_close(z_sigma, expected_sigma)
    torch.testing.assert_close(ae.encode(video), expected_mu)
    assert recon.shape == video.shape
    torch.testing.assert_close(recon, expected_recon)
    assert ae.latent_channels == 4
    assert ae.decoder_condition(video) == {}
    assert ae.decoder_condition_keys == ()


def test_images_pass_straight(autoencoder):
    ae = FramewiseAutoencoder(autoencoder, fold_frames=False)
    images = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        z_mu, z_sigma = ae.encode_posterior(images)
        expected_mu, expected_sigma = autoencoder.encode(images)
        torch.testing.assert_close(z_mu, expected_mu)
        torch.testing.assert_close(z_sigma, expected_sigma)
        torch.testing.assert_close(ae.decode(z_mu), autoencoder.decode(z_mu))


def test_forward_on_video_returns_5d_triplet_and_samples_in_training(autoencoder, video):
    ae = FramewiseAutoencoder(autoencoder, frame_chunk=2).train()
    recon, z_mu, z_sigma = ae(video)
    assert recon.shape == video.shape
    assert z_mu.shape == z_sigma.shape == (2, 4, 5, 8, 8)
    torch.manual_seed(0)
    sampled = ae(video)[0]
    torch.manual_seed(1)
    assert not torch.allclose(sampled, ae(video)[0])
    ae.eval()
    with torch.no_grad():
        torch.testing.assert_close(ae(video)[0], ae.decode(ae.encode(video)))


def test_mean_only_encoder_gets_zero_sigma():
    class MeanOnly(nn.Module):
        latent_channels = 1

        def encode(self, x):
            return x[:, :1] * 2

        def decode(self, z):
            return z / 2

    ae = as_latent_autoencoder(MeanOnly())
    video = torch.randn(1, 1, 3, 4, 4)
    z_mu, z_sigma = ae.encode_posterior(video)
    torch.testing.assert_close(z_mu, video * 2)
    assert torch.count_nonzero(z_sigma) == 0
    torch.testing.assert_close(ae.train()(video)[0], video)  # no sampling() on the module: z_mu + eps * 0


def test_fold_frames_false_rejects_videos(autoencoder, video):
    ae = FramewiseAutoencoder(autoencoder, fold_frames=False)
    with pytest.raises(ValueError, match=r"fold_frames=False"):
        ae.encode(video)
    with pytest.raises(ValueError, match=r"fold_frames=False"):
        ae.decode(torch.randn(2, 4, 5, 8, 8))


def test_wrong_rank_rejected(autoencoder):
    with pytest.raises(ValueError, match=r"got shape \(2, 16, 16\)"):
        FramewiseAutoencoder(autoencoder).encode(torch.randn(2, 16, 16))


def test_decode_rejects_conditions(autoencoder):
    with pytest.raises(ValueError, match="takes no conditions"):
        FramewiseAutoencoder(autoencoder).decode(torch.randn(1, 4, 8, 8), first_frame=torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize("frame_chunk", [0, -2, 1.5, True])
def test_frame_chunk_validated(autoencoder, frame_chunk):
    with pytest.raises(ValueError, match="frame_chunk"):
        FramewiseAutoencoder(autoencoder, frame_chunk=frame_chunk)


def test_latent_channels_required():
    class NoChannels(nn.Module):
        def encode(self, x):
            return x

        def decode(self, z):
            return z

    with pytest.raises(ValueError, match=r"latent_channels .*NoChannels\.latent_channels"):
        FramewiseAutoencoder(NoChannels())
    assert FramewiseAutoencoder(NoChannels(), latent_channels=3).latent_channels == 3


def test_as_latent_autoencoder_identity_and_wrapping(autoencoder):
    wrapped = as_latent_autoencoder(autoencoder, fold_frames=False, frame_chunk=4)
    assert isinstance(wrapped, FramewiseAutoencoder) and isinstance(wrapped, LatentAutoencoder)
    assert wrapped.autoencoder is autoencoder
    assert (wrapped.fold_frames, wrapped.frame_chunk) == (False, 4)
    assert as_latent_autoencoder(wrapped) is wrapped


def test_as_latent_autoencoder_type_error():
    with pytest.raises(TypeError, match=r"Linear.*encode\(\) and decode\(\)"):
        as_latent_autoencoder(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Linear"):
        FramewiseAutoencoder(nn.Linear(2, 2))


def test_interface_is_abstract():
    with pytest.raises(TypeError):
        LatentAutoencoder()
