from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from echo_monai.networks.nets import FirstFrameVideoAutoencoder, LatentAutoencoder


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over latent elements, averaged over the batch."""
    per_element = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1.0)
    return per_element.flatten(1).sum(dim=1).mean()


TINY = {"in_channels": 1, "channels": (8, 16), "latent_channels": 4, "num_res_blocks": 1, "norm_num_groups": 4}


@pytest.fixture
def make_video_autoencoder():
    def build(seed: int = 0, **overrides) -> FirstFrameVideoAutoencoder:
        torch.manual_seed(seed)
        return FirstFrameVideoAutoencoder(**{**TINY, **overrides})

    return build


@pytest.fixture
def video():
    return torch.randn(2, 1, 4, 16, 16)


def _moving_blob(frames: int = 4, size: int = 16) -> torch.Tensor:
    """A Gaussian blob moving left to right, ``(1, 1, T, H, W)`` in [-1, 1]."""
    grid = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    clips = [torch.exp(-((yy - 8) ** 2 + (xx - 4 - 2.5 * t) ** 2) / 8.0) for t in range(frames)]
    return (torch.stack(clips)[None, None] * 2 - 1).contiguous()


@pytest.mark.parametrize(
    "overrides, video_shape, latent_shape",
    [
        ({}, (2, 1, 4, 16, 16), (2, 4, 2, 8, 8)),
        ({"channels": (8, 8, 16)}, (1, 1, 8, 32, 32), (1, 4, 2, 8, 8)),
        ({"in_channels": 2, "latent_channels": 3, "first_frame_features": 5}, (1, 2, 6, 16, 8), (1, 3, 3, 8, 4)),
        ({"residual_first_frame": True, "attention_levels": (False, True)}, (1, 1, 4, 16, 16), (1, 4, 2, 8, 8)),
    ],
)
def test_shapes_round_trip(make_video_autoencoder, overrides, video_shape, latent_shape):
    ae = make_video_autoencoder(**overrides).eval()
    x = torch.randn(video_shape)
    with torch.no_grad():
        z = ae.encode(x)
        recon = ae.decode(z, first_frame=x[:, :, 0])
    assert ae.latent_shape(x.shape) == latent_shape
    assert z.shape == latent_shape
    assert recon.shape == x.shape
    assert isinstance(ae, LatentAutoencoder)


def test_decoder_condition(make_video_autoencoder, video):
    ae = make_video_autoencoder()
    assert ae.decoder_condition_keys == ("first_frame",)
    condition = ae.decoder_condition(video)
    assert list(condition) == ["first_frame"]
    torch.testing.assert_close(condition["first_frame"], video[:, :, 0])


def test_forward_gradients_reach_encoder_and_decoder(make_video_autoencoder, video):
    ae = make_video_autoencoder().train()
    recon, z_mu, z_sigma = ae(video)
    assert recon.shape == video.shape
    assert z_mu.shape == z_sigma.shape == (2, 4, 2, 8, 8)
    assert torch.all(z_sigma > 0)
    (recon.abs().mean() + kl_divergence(z_mu, z_sigma)).backward()
    for name in ("encoder", "quant_conv_mu", "quant_conv_log_sigma", "first_frame_encoder", "decoder"):
        grads = [p.grad for p in getattr(ae, name).parameters()]
        assert all(g is not None for g in grads), name
        assert any(float(g.abs().sum()) > 0 for g in grads), name


def test_eval_encode_is_deterministic(make_video_autoencoder, video):
    ae = make_video_autoencoder().eval()
    with torch.no_grad():
        torch.testing.assert_close(ae.encode(video), ae.encode(video))
        torch.testing.assert_close(ae.encode(video), ae.encode_posterior(video)[0])
        torch.testing.assert_close(ae(video)[0], ae(video)[0])
        torch.testing.assert_close(ae(video)[0], ae.decode(ae.encode(video), first_frame=video[:, :, 0]))


@pytest.mark.parametrize("residual", [False, True])
def test_output_depends_on_first_frame(make_video_autoencoder, video, residual):
    ae = make_video_autoencoder(residual_first_frame=residual).eval()
    with torch.no_grad():
        z = ae.encode(video)
        a = ae.decode(z, first_frame=video[:, :, 0])
        b = ae.decode(z, first_frame=torch.randn_like(video[:, :, 0]))
        # forward uses the first frame of its input, unless one is given
        torch.testing.assert_close(ae(video, first_frame=video[:, :, 1])[0], ae.decode(z, first_frame=video[:, :, 1]))
    assert (a - b).abs().max() > 1e-3


def test_residual_first_frame_adds_the_frame(make_video_autoencoder, video):
    plain = make_video_autoencoder(seed=3).eval()
    residual = make_video_autoencoder(seed=3, residual_first_frame=True).eval()
    residual.load_state_dict(plain.state_dict())
    with torch.no_grad():
        z = plain.encode(video)
        expected = plain.decode(z, first_frame=video[:, :, 0]) + video[:, :, :1]
        torch.testing.assert_close(residual.decode(z, first_frame=video[:, :, 0]), expected)


@pytest.mark.parametrize("residual", [False, True])
def test_exact_first_frame_reproduces_the_frame_by_construction(make_video_autoencoder, video, residual):
    plain = make_video_autoencoder(seed=4, residual_first_frame=residual).eval()
    exact = make_video_autoencoder(seed=4, residual_first_frame=residual, exact_first_frame=True).eval()
    exact.load_state_dict(plain.state_dict())
    with torch.no_grad():
        z = plain.encode(video)
        other = torch.randn_like(video[:, :, 0])
        out = exact.decode(z, first_frame=other)
        assert torch.equal(out[:, :, 0], other)  # frame 0 is the conditioning frame, whatever the latent
        torch.testing.assert_close(out[:, :, 1:], plain.decode(z, first_frame=other)[:, :, 1:])
        assert torch.equal(exact(video)[0][:, :, 0], video[:, :, 0])


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 1, 3, 16, 16), r"\(1, 1, 3, 16, 16\) must be divisible by the downsampling factor 2"),
        ((1, 1, 4, 15, 16), r"\(1, 1, 4, 15, 16\) must be divisible"),
        ((1, 2, 4, 16, 16), r"expected a video \(B, 1, T, H, W\), got shape \(1, 2, 4, 16, 16\)"),
        ((1, 1, 16, 16), r"expected a video \(B, 1, T, H, W\)"),
    ],
)
def test_encode_shape_errors(make_video_autoencoder, shape, match):
    with pytest.raises(ValueError, match=match):
        make_video_autoencoder().encode(torch.randn(shape))


def test_decoder_condition_needs_a_video(make_video_autoencoder):
    with pytest.raises(ValueError, match="take the first frame from"):
        make_video_autoencoder().decoder_condition(torch.randn(1, 1, 16, 16))


def test_decode_first_frame_errors(make_video_autoencoder):
    ae = make_video_autoencoder()
    z = torch.randn(2, 4, 2, 8, 8)
    with pytest.raises(ValueError, match="'first_frame'"):
        ae.decode(z)
    with pytest.raises(ValueError, match=r"first_frame must have shape \(B, C, H, W\) = \(2, 1, 16, 16\)"):
        ae.decode(z, first_frame=torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"= \(2, 1, 16, 16\)"):
        ae.decode(z, first_frame=torch.randn(2, 1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"unexpected decoder conditions \['label_map'\]"):
        ae.decode(z, first_frame=torch.randn(2, 1, 16, 16), label_map=torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"expected a latent \(B, 4, t, h, w\)"):
        ae.decode(torch.randn(2, 3, 2, 8, 8), first_frame=torch.randn(2, 1, 16, 16))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": 0}, "out_channels"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"first_frame_features": 0}, "first_frame_features"),
        ({"norm_num_groups": 0}, "norm_num_groups"),
        ({"channels": ()}, "channels must list"),
        ({"first_frame_channels": (8,)}, "first_frame_channels"),
        ({"channels": (8, 6)}, "norm_num_groups 4 must divide"),
        ({"attention_levels": (False,)}, "attention_levels"),
        ({"num_res_blocks": (1, 1, 1)}, "num_res_blocks"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"residual_first_frame": True, "out_channels": 2}, "residual_first_frame"),
        ({"exact_first_frame": True, "out_channels": 2}, "exact_first_frame=True needs out_channels"),
    ],
)
def test_constructor_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        FirstFrameVideoAutoencoder(**{**TINY, **overrides})


def test_use_checkpoint_matches(make_video_autoencoder, video):
    ae = make_video_autoencoder(seed=1).eval()
    checkpointed = make_video_autoencoder(seed=1, use_checkpoint=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(checkpointed(video)[0], ae(video)[0])


def test_seeded_training_reduces_loss(make_video_autoencoder):
    ae = make_video_autoencoder(seed=0).train()
    x = _moving_blob()
    optimizer = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        recon, z_mu, z_sigma = ae(x)
        loss = F.l1_loss(recon, x) + 1e-6 * kl_divergence(z_mu, z_sigma)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
