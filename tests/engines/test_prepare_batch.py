from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

from echo_monai.engines import Conditioning, DDPMPrepareBatch, FlowMatchingPrepareBatch, SamplingPrepareBatch


def _fixed(cls, noise, timesteps):
    """A subclass whose template hooks return known noise and timesteps, so targets can be recomputed."""

    class Fixed(cls):
        def get_noise(self, images):
            return noise

        def get_timesteps(self, images):
            return timesteps

    return Fixed


@pytest.fixture
def x0():
    return torch.randn(3, 1, 8, 8)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddpm_targets_match_closed_form(x0, prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=100, schedule="cosine", prediction_type=prediction_type)
    eps, t = torch.randn_like(x0), torch.tensor([0, 37, 99])
    prep = _fixed(DDPMPrepareBatch, eps, t)(scheduler)
    noisy, target, args, kwargs = prep({"image": x0})
    abar = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    expected_noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    expected = {"epsilon": eps, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0, "sample": x0}
    torch.testing.assert_close(noisy, expected_noisy)
    torch.testing.assert_close(target, expected[prediction_type])
    assert args == () and torch.equal(kwargs["timesteps"], t)


def test_v_target_round_trips_to_eps_and_x0(x0):
    scheduler = DDPMScheduler(num_train_timesteps=50, prediction_type="v_prediction")
    eps, t = torch.randn_like(x0), torch.tensor([5, 20, 45])
    noisy, v, _, _ = _fixed(DDPMPrepareBatch, eps, t)(scheduler)({"image": x0})
    abar = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(abar.sqrt() * noisy - (1 - abar).sqrt() * v, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((1 - abar).sqrt() * noisy + abar.sqrt() * v, eps, atol=1e-5, rtol=1e-5)


def test_flow_matching_path_and_velocity(x0):
    scheduler = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=False)
    eps, t = torch.randn_like(x0), torch.tensor([0.0, 250.0, 1000.0])
    noisy, target, _, kwargs = _fixed(FlowMatchingPrepareBatch, eps, t)(scheduler)({"image": x0})
    s = (t / 1000).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, (1 - s) * x0 + s * eps)
    torch.testing.assert_close(target, x0 - eps)


@pytest.mark.parametrize("method", ["uniform", "logit-normal"])
def test_flow_matching_time_sampling_range(x0, method):
    scheduler = RFlowScheduler(1000, use_discrete_timesteps=False, sample_method=method)
    prep = FlowMatchingPrepareBatch(scheduler)
    t = prep.get_timesteps(torch.zeros(4000, 1, 2, 2))
    assert t.min() >= 0 and t.max() <= 1000
    if method == "logit-normal":  # mass concentrated around the middle: fewer extremes than uniform
        assert ((t < 100) | (t > 900)).float().mean() < 0.15
    else:
        assert abs(float(t.mean()) - 500) < 30


def test_conditioning_kwargs_concat_and_tokens():
    scheduler = DDPMScheduler(10)
    cond = Conditioning({"seg": "label_map", "context": "ejection_fraction"}, concat_keys=["reference"])
    batch = {
        "image": torch.randn(2, 1, 3, 8, 8),
        "label_map": torch.rand(2, 4, 3, 8, 8),
        "ejection_fraction": torch.tensor([55.0, 30.0]),
        "reference": torch.randn(2, 2, 8, 8),
    }
    noisy, _, _, kwargs = DDPMPrepareBatch(scheduler, cond)(batch)
    assert noisy.shape == (2, 3, 3, 8, 8)  # 1 noisy channel + 2 reference channels repeated over T
    torch.testing.assert_close(noisy[:, 1:, 2], batch["reference"])
    assert kwargs["seg"].shape == (2, 4, 3, 8, 8)
    assert kwargs["context"].shape == (2, 1, 1) and kwargs["context"][1, 0, 0] == 30.0


def test_condition_dropout_blanks_whole_samples_with_null_values():
    cond = Conditioning({"class_labels": "view", "seg": "label_map"}, dropout=0.5, null_values={"class_labels": 3})
    batch = {
        "image": torch.randn(400, 1, 4, 4),
        "view": torch.ones(400, dtype=torch.long),
        "label_map": torch.ones(400, 2, 4, 4),
    }
    _, _, _, kwargs = DDPMPrepareBatch(DDPMScheduler(10), cond)(batch)
    dropped = kwargs["class_labels"] == 3
    assert 0.4 < dropped.float().mean() < 0.6
    assert torch.all(kwargs["seg"][dropped] == 0) and torch.all(kwargs["seg"][~dropped] == 1)


def test_droppable_subset_keeps_reference():
    cond = Conditioning({"class_labels": "view"}, concat_keys=["reference"], dropout=0.9, droppable=["class_labels"])
    c = cond.extract({"view": torch.tensor([1, 2]), "reference": torch.ones(2, 1, 4, 4)})
    null = cond.null(c)
    assert torch.all(null.kwargs["class_labels"] == 0) and torch.all(null.concat[0] == 1)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="RFlowScheduler"):
        DDPMPrepareBatch(RFlowScheduler(10))
    with pytest.raises(TypeError, match="RFlowScheduler"):
        FlowMatchingPrepareBatch(DDPMScheduler(10))
    with pytest.raises(KeyError, match="'label_map'"):
        DDPMPrepareBatch(DDPMScheduler(10), Conditioning({"seg": "label_map"}))({"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(KeyError, match="'latent'"):
        DDPMPrepareBatch(DDPMScheduler(10), image_key="latent")({"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\], got 1.5"):
        Conditioning(dropout=1.5)
    every = Conditioning({"class_labels": "view"}, dropout=1.0, null_values={"class_labels": 3})  # unconditional
    assert every.dropout_mask(64).all()
    with pytest.raises(ValueError, match="droppable"):
        Conditioning({"seg": "label_map"}, droppable=["context"])
    with pytest.raises(ValueError, match="sample_shape or like_key"):
        SamplingPrepareBatch()
    with pytest.raises(ValueError, match="does not match"):
        Conditioning.concat_input(
            torch.zeros(2, 1, 4, 4), Conditioning(concat_keys=["r"]).extract({"r": torch.zeros(2, 1, 5, 5)})
        )


def test_sampling_prepare_batch_is_seeded_and_follows_like_key():
    cond = Conditioning({"seg": "label_map"})
    batch = {"label_map": torch.rand(3, 5, 16, 12)}
    a = SamplingPrepareBatch(cond, like_key="label_map", channels=1, seed=7)(batch)
    b = SamplingPrepareBatch(cond, like_key="label_map", channels=1, seed=7)(batch)
    assert a[0].shape == (3, 1, 16, 12)
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[3]["condition"].kwargs["seg"], batch["label_map"])
    noise, _, _, _ = SamplingPrepareBatch(sample_shape=(4, 2, 8, 8), seed=0)({"ejection_fraction": torch.zeros(5)})
    assert noise.shape == (5, 4, 2, 8, 8)
