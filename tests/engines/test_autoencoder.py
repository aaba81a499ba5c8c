"""Adversarial AutoencoderKL recipe on MONAI's stock AdversarialTrainer."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.engines import AdversarialTrainer
from monai.networks.nets import PatchDiscriminator, ResNet

from echo_monai.engines import (
    AutoencoderKLInferer,
    AutoencoderKLLoss,
    AutoencoderPrepareBatch,
    PatchDiscriminatorLoss,
    PatchGeneratorLoss,
    kl_divergence,
    make_autoencoder_trainer,
)
from echo_monai.engines.autoencoder import _logits
from echo_monai.metrics import PerceptualDistance


def _discriminator():
    return PatchDiscriminator(spatial_dims=2, num_layers_d=2, channels=8, in_channels=1, out_channels=1)


def _discs(n=16, size=16, seed=0):
    """Bright discs on a dark background in [-1, 1], ``(n, 1, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    centres = torch.randint(5, size - 5, (n, 2), generator=g).float()
    radii = torch.randint(2, 5, (n,), generator=g).float()
    inside = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2 <= radii[:, None, None] ** 2
    return torch.where(inside, 1.0, -1.0)[:, None]


@pytest.fixture
def autoencoder(make_autoencoder):
    return make_autoencoder(seed=0)


@pytest.fixture
def discriminator():
    torch.manual_seed(1)
    return _discriminator()


def _record(trainer):
    history = []

    def _keep(engine):
        out = engine.state.output
        history.append(
            {
                "iteration": engine.state.iteration,
                "epoch": engine.state.epoch,
                "recon": float(out["reconstruction_loss"].detach()),
                "gen": float(out["generator_loss"].detach()),
                "disc": float(out["discriminator_loss"].detach()),
                **engine.state.recon_loss_function.terms,
            }
        )

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _keep)
    return history


def test_seeded_training_reconstruction_l1_falls(autoencoder, discriminator):
    images = _discs(16)
    data = [{"image": images[i : i + 8]} for i in range(0, 16, 8)]
    trainer = make_autoencoder_trainer(
        autoencoder, discriminator, data, max_epochs=3, g_lr=2e-3, adv_start_iteration=2, adv_weight=0.01
    )
    assert isinstance(trainer, AdversarialTrainer)
    history = _record(trainer)
    trainer.run()
    first = sum(h["l1"] for h in history if h["epoch"] == 1) / 2
    last = sum(h["l1"] for h in history if h["epoch"] == 3) / 2
    assert last < 0.9 * first
    assert all(h["gen"] > 0 and h["disc"] > 0 for h in history[2:])


def test_adversarial_terms_off_during_warm_up(autoencoder, discriminator):
    images = _discs(8)
    data = [{"image": images[:4]}, {"image": images[4:]}, {"image": images[:4]}]
    trainer = make_autoencoder_trainer(
        autoencoder, discriminator, data, max_epochs=1, kl_weight=1e-2, adv_start_iteration=2
    )
    d_before = [p.detach().clone() for p in discriminator.parameters()]
    checks = []

    def _check(engine):
        out = engine.state.output
        inferer = engine.g_inferer
        l1 = (out["pred"].detach() - out["label"]).abs().mean()
        posterior = torch.distributions.Normal(inferer.z_mu.detach(), inferer.z_sigma.detach())
        kl = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1).mean()
        checks.append(
            (
                engine.state.iteration,
                float(out["reconstruction_loss"].detach()),
                float(l1 + 1e-2 * kl),
                float(out["generator_loss"].detach()),
                [p.detach().clone() for p in discriminator.parameters()],
            )
        )

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _check)
    trainer.run()
    for iteration, recon, expected, gen, d_params in checks:
        assert recon == pytest.approx(expected, rel=1e-5)
        if iteration <= 2:
            assert gen == 0.0
            assert all(torch.equal(a, b) for a, b in zip(d_before, d_params, strict=True))
        else:
            assert gen > 0.0
            assert not all(torch.equal(a, b) for a, b in zip(d_before, d_params, strict=True))


def test_kl_closed_form_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, 5, 5, generator=g)
    sigma = torch.rand(3, 4, 5, 5, generator=g) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0, 1)
    )
    assert torch.allclose(kl_divergence(mu, sigma), expected.flatten(1).sum(1).mean(), rtol=1e-5)
    assert float(kl_divergence(torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3))) == 0.0


def test_video_batches_fold_to_frames():
    video = torch.arange(2 * 1 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 1, 3, 4, 4)
    inputs, targets = AutoencoderPrepareBatch("video")({"video": video, "ejection_fraction": torch.tensor([50.0, 60])})
    assert inputs.shape == (6, 1, 4, 4) and torch.equal(inputs, targets)
    for b in range(2):
        for t in range(3):
            assert torch.equal(inputs[b * 3 + t], video[b, :, t])
    images = torch.zeros(2, 1, 4, 4)
    assert torch.equal(AutoencoderPrepareBatch()(images)[0], images)


def test_video_training_runs(autoencoder, discriminator):
    videos = _discs(8).reshape(2, 4, 1, 16, 16).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    trainer = make_autoencoder_trainer(autoencoder, discriminator, [{"video": videos}], 1, image_key="video")
    trainer.run()
    assert trainer.state.output["pred"].shape == (8, 1, 16, 16)


def test_prepare_batch_raises():
    with pytest.raises(ValueError, match="image_key"):
        AutoencoderPrepareBatch("")
    with pytest.raises(KeyError, match="'image' is missing"):
        AutoencoderPrepareBatch()({"video": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(TypeError, match="dict batch or a tensor"):
        AutoencoderPrepareBatch()([torch.zeros(1, 1, 4, 4)])
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        AutoencoderPrepareBatch()({"image": torch.zeros(1, 4, 4)})


def test_inferer_keeps_posterior_and_rejects_plain_networks(autoencoder):
    inferer = AutoencoderKLInferer()
    recon = inferer(torch.zeros(2, 1, 16, 16), autoencoder)
    assert (
        recon.shape == (2, 1, 16, 16) and inferer.z_mu.shape == (2, 4, 8, 8) and inferer.z_sigma.shape == (2, 4, 8, 8)
    )
    with pytest.raises(TypeError, match="reconstruction, z_mu, z_sigma"):
        inferer(torch.zeros(1, 1, 16, 16), torch.nn.Identity())


def test_reconstruction_loss_raises():
    with pytest.raises(TypeError, match="AutoencoderKLInferer"):
        AutoencoderKLLoss(object())
    with pytest.raises(ValueError, match="kl_weight"):
        AutoencoderKLLoss(AutoencoderKLInferer(), kl_weight=-1)
    with pytest.raises(ValueError, match="perceptual_weight must be >= 0"):
        AutoencoderKLLoss(AutoencoderKLInferer(), perceptual_weight=-1)
    with pytest.raises(ValueError, match="needs a perceptual callable"):
        AutoencoderKLLoss(AutoencoderKLInferer(), perceptual_weight=1.0)
    with pytest.raises(RuntimeError, match="no posterior yet"):
        AutoencoderKLLoss(AutoencoderKLInferer())(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def _resnet():
    torch.manual_seed(2)
    return ResNet("basic", [1, 1, 1, 1], [8, 8, 8, 8], spatial_dims=2, n_input_channels=1, num_classes=2)


def test_perceptual_term_from_a_local_network(autoencoder):
    net = _resnet().eval()

    def perceptual(x, y):  # differentiable feature distance on a locally built network
        return (net.layer1(net.conv1(x)) - net.layer1(net.conv1(y))).pow(2).mean()

    inferer = AutoencoderKLInferer()
    images = _discs(2)
    recon = inferer(images, autoencoder)
    base = AutoencoderKLLoss(inferer, kl_weight=1e-6)(recon, images)
    loss_fn = AutoencoderKLLoss(inferer, kl_weight=1e-6, perceptual=perceptual, perceptual_weight=0.5)
    loss = loss_fn(recon, images)
    expected = float(base.detach()) + 0.5 * float(perceptual(recon, images).detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert autoencoder.decoder.blocks[-1].conv.weight.grad is not None

    no_grad = AutoencoderKLLoss(inferer, perceptual=PerceptualDistance(net, ["layer1"]), perceptual_weight=0.5)
    with pytest.raises(RuntimeError, match="returned no gradient"):
        no_grad(inferer(images, autoencoder), images)


def test_adversarial_losses_count_calls_when_unattached():
    logits = [torch.zeros(2, 8), torch.full((2, 1, 3, 3), 0.3)]  # PatchDiscriminator: features..., logits
    g_loss = PatchGeneratorLoss(adv_weight=0.5, adv_start_iteration=1)
    assert float(g_loss(logits)) == 0.0
    assert float(g_loss(logits)) == pytest.approx(0.5 * (1 - 0.3) ** 2)
    d_loss = PatchDiscriminatorLoss(adv_weight=0.5, adv_start_iteration=0)
    real, fake = [torch.full((2, 1, 3, 3), 0.8)], [torch.full((2, 1, 3, 3), 0.3)]
    assert float(d_loss(real, fake)) == pytest.approx(0.5 * 0.5 * ((1 - 0.8) ** 2 + 0.3**2))


def test_logits_of_each_discriminator_kind():
    t = torch.zeros(1, 1, 2, 2)
    assert _logits(t) is t
    assert _logits([torch.ones(1), t]) is t
    assert _logits(([t, t], [[t], [t]])) == [t, t]
    with pytest.raises(TypeError, match="patch discriminator output"):
        _logits(3.0)


def test_adversarial_and_factory_arguments_raise(discriminator, autoencoder):
    with pytest.raises(ValueError, match="PatchGeneratorLoss: adv_weight"):
        PatchGeneratorLoss(adv_weight=-1)
    with pytest.raises(ValueError, match="PatchDiscriminatorLoss: adv_start_iteration"):
        PatchDiscriminatorLoss(adv_start_iteration=-1)
    with pytest.raises(ValueError, match="max_epochs"):
        make_autoencoder_trainer(autoencoder, discriminator, [], max_epochs=0)


def test_warm_up_follows_the_engine_iteration_after_resume():
    g_loss = PatchGeneratorLoss(adv_weight=1.0, adv_start_iteration=5)
    values = []
    engine = Engine(lambda e, b: values.append((e.state.iteration, float(g_loss([torch.zeros(1, 1, 2, 2)])))))
    g_loss.attach(engine)
    engine.load_state_dict({"iteration": 4, "max_epochs": 2, "epoch_length": 4})  # as CheckpointLoader restores it
    engine.run([0, 1, 2, 3])
    assert values == [(5, 0.0), (6, pytest.approx(1.0)), (7, pytest.approx(1.0)), (8, pytest.approx(1.0))]


def test_bundle_config_wires_the_trainer_by_target():
    config = {
        "autoencoder": {
            "_target_": "AutoencoderKL",
            "spatial_dims": 2,
            "channels": [8, 16],
            "latent_channels": 4,
            "num_res_blocks": 1,
            "norm_num_groups": 8,
            "attention_levels": [False, False],
            "with_encoder_nonlocal_attn": False,
            "with_decoder_nonlocal_attn": False,
        },
        "discriminator": {
            "_target_": "PatchDiscriminator",
            "spatial_dims": 2,
            "num_layers_d": 2,
            "channels": 8,
            "in_channels": 1,
        },
        "train": {
            "trainer": {
                "_target_": "echo_monai.engines.make_autoencoder_trainer",
                "autoencoder": "@autoencoder",
                "discriminator": "@discriminator",
                "train_data_loader": "$[{'video': torch.zeros(1, 1, 2, 16, 16)}]",
                "max_epochs": 1,
                "image_key": "video",
                "adv_start_iteration": 0,
            }
        },
    }
    trainer = ConfigParser(config).get_parsed_content("train::trainer")
    trainer.run()
    assert trainer.state.iteration == 1 and float(trainer.state.output["generator_loss"].detach()) > 0


def test_trainer_state_dict_reloads_weights_only(autoencoder, discriminator, tmp_path):
    """MONAI's CheckpointLoader reads with weights_only=True: the trainer's entry holds counters, not objects."""
    videos = torch.rand(1, 1, 2, 16, 16) * 2 - 1
    trainer = make_autoencoder_trainer(autoencoder, discriminator, [{"video": videos}], 1, image_key="video")
    trainer.run()
    torch.save({"trainer": trainer.state_dict()}, tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]
    fresh = make_autoencoder_trainer(autoencoder, discriminator, [{"video": videos}], 2, image_key="video")
    fresh.load_state_dict(state)
    assert fresh.state.iteration == trainer.state.iteration == 1


def test_stage_checkpoints_final_file_and_resume(autoencoder, discriminator, make_autoencoder, tmp_path):
    """With ckpt_dir the recipe's stage handlers attach: resumable checkpoints, autoencoder.pt, resume."""
    data = [{"image": _discs(4)}, {"image": _discs(4, seed=1)}]
    trainer = make_autoencoder_trainer(
        autoencoder, discriminator, data, 1, ckpt_dir=tmp_path, save_interval=1, progress=False
    )
    trainer.run()
    assert (tmp_path / "autoencoder.pt").is_file() and (tmp_path / "vae_checkpoint_final_iteration=2.pt").is_file()
    checkpoint = torch.load(tmp_path / "vae_checkpoint_final_iteration=2.pt", weights_only=True)
    assert set(checkpoint) == {"autoencoder", "discriminator", "g_optimizer", "d_optimizer", "trainer"}
    again = make_autoencoder_trainer(
        make_autoencoder(seed=5), discriminator, data, 2, ckpt_dir=tmp_path, save_interval=1, progress=False
    )
    assert again.resumed_from.endswith("vae_checkpoint_final_iteration=2.pt")
    started = []
    again.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    again.run()
    assert started == [3, 4]


def test_video_autoencoder_trains_unfolded_with_a_3d_discriminator():
    from echo_monai.networks.nets import FirstFrameVideoAutoencoder

    torch.manual_seed(0)
    video_ae = FirstFrameVideoAutoencoder(
        in_channels=1, out_channels=1, channels=(8, 16), latent_channels=2, num_res_blocks=1, norm_num_groups=4
    )
    disc = PatchDiscriminator(spatial_dims=3, num_layers_d=1, channels=4, in_channels=1, out_channels=1)
    videos = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    trainer = make_autoencoder_trainer(video_ae, disc, [{"video": videos}], 1, image_key="video", fold_frames=False)
    trainer.run()
    assert trainer.state.output["pred"].shape == (2, 1, 8, 16, 16)
