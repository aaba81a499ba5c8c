"""MeanFlow: the target against finite differences and against the exact average velocity of a Gaussian flow, the
network wrapper that takes the second time, the one-step solver and a training step through MONAI's engine."""

from __future__ import annotations

import math

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import RFlowScheduler

from echo_monai.engines import AdaptiveL2Loss, Condition, MeanFlowPrepareBatch, meanflow_student
from echo_monai.inferers import Sampler
from echo_monai.networks.nets import MeanFlowDenoiser

T = 1000
SIGMA = 0.5  # the data: x_0 ~ N(0, SIGMA^2) per pixel


def _std(s: torch.Tensor) -> torch.Tensor:
    """The standard deviation of z_s = (1 - s) x_0 + s eps."""
    return torch.sqrt((1 - s) ** 2 * SIGMA**2 + s**2)


class GaussianMeanFlow(torch.nn.Module):
    """The exact average velocity of the Gaussian data's flow (towards the data, MONAI's convention): the flow maps
    z_s to z_r = z_s a(r) / a(s), so u(z, r, s) = z (a(r) / a(s) - 1) / (s - r), and at r = s the marginal velocity
    z ((1 - s) SIGMA^2 - s) / a(s)^2."""

    def forward(self, x, timesteps, r_timesteps=None):
        shape = (-1, *([1] * (x.ndim - 1)))
        s = (timesteps.to(x.dtype) / T).reshape(shape)
        r = s if r_timesteps is None else (r_timesteps.to(x.dtype) / T).reshape(shape)
        instantaneous = x * ((1 - s) * SIGMA**2 - s) / _std(s) ** 2
        gap = s - r
        average = x * (_std(r) / _std(s) - 1) / torch.where(gap > 0, gap, torch.ones_like(gap))
        return torch.where(gap > 0, average, instantaneous)


def _prepare(network, **kwargs) -> MeanFlowPrepareBatch:
    return MeanFlowPrepareBatch(RFlowScheduler(T, use_discrete_timesteps=False), network, **kwargs)


def test_the_target_is_the_identity_with_the_total_derivative_of_finite_differences():
    torch.manual_seed(0)
    images, noise = torch.randn(6, 1, 3, 3, dtype=torch.float64) * SIGMA, torch.randn(6, 1, 3, 3, dtype=torch.float64)
    t = torch.tensor([900.0, 700.0, 500.0, 300.0, 200.0, 650.0], dtype=torch.float64)
    r = torch.tensor([100.0, 700.0, 0.0, 250.0, 50.0, 400.0], dtype=torch.float64)  # one r = t
    network = GaussianMeanFlow()
    target = _prepare(network).target(images, noise, t, r, Condition())
    # du/ds along the conditional path z_s = (1 - s) x_0 + s eps, by central differences in s
    h = 1e-5
    s = (t / T).reshape(-1, 1, 1, 1)

    def u_at(ds: float) -> torch.Tensor:
        z = (1 - (s + ds)) * images + (s + ds) * noise
        return network(z, timesteps=t + ds * T, r_timesteps=r)

    du_ds = (u_at(h) - u_at(-h)) / (2 * h)
    expected = (images - noise) - (s - (r / T).reshape(-1, 1, 1, 1)) * du_ds
    torch.testing.assert_close(target, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(target[1], (images - noise)[1])  # r = t: the flow-matching target


@pytest.mark.parametrize("s, r", [(0.9, 0.1), (0.6, 0.0), (1.0, 0.0), (0.5, 0.5)])
def test_in_expectation_the_target_is_the_exact_average_velocity(s, r):
    """E[target | z_s] = u(z_s, r, s) for the true average velocity: regress the targets of many (x_0, eps) on z_s."""
    generator = torch.Generator().manual_seed(1)
    n = 200_000
    images = torch.randn(n, 1, 1, 1, generator=generator, dtype=torch.float64) * SIGMA
    noise = torch.randn(n, 1, 1, 1, generator=generator, dtype=torch.float64)
    t, r_t = torch.full((n,), s * T, dtype=torch.float64), torch.full((n,), r * T, dtype=torch.float64)
    target = _prepare(GaussianMeanFlow()).target(images, noise, t, r_t, Condition()).flatten()
    z = ((1 - s) * images + s * noise).flatten()
    slope = float((target * z).sum() / (z * z).sum())
    a = lambda v: math.sqrt((1 - v) ** 2 * SIGMA**2 + v**2)  # noqa: E731
    exact = (a(r) / a(s) - 1) / (s - r) if s > r else ((1 - s) * SIGMA**2 - s) / a(s) ** 2
    assert slope == pytest.approx(exact, rel=0.02, abs=0.005)


def test_with_the_marginal_velocity_the_target_is_the_exact_average_velocity_for_every_pair():
    """With the exact flow model as ``velocity_network``, the identity holds on the marginal flow: the target is the
    true average velocity for each (x_0, eps) pair, not only in expectation (no noise left in it)."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(5, 1, 2, 2, generator=generator, dtype=torch.float64) * SIGMA
    noise = torch.randn(5, 1, 2, 2, generator=generator, dtype=torch.float64)
    t = torch.tensor([900.0, 600.0, 1000.0, 400.0, 300.0], dtype=torch.float64)
    r = torch.tensor([100.0, 600.0, 0.0, 50.0, 299.0], dtype=torch.float64)
    network = GaussianMeanFlow()
    prepare = _prepare(network, velocity_network=GaussianMeanFlow())
    z = prepare.scheduler.add_noise(original_samples=images, noise=noise, timesteps=t)
    target = prepare.target(images, noise, t, r, Condition())
    torch.testing.assert_close(target, network(z, timesteps=t, r_timesteps=r), rtol=1e-6, atol=1e-6)
    conditional = _prepare(network).target(images, noise, t, r, Condition())
    assert (conditional - target).abs().max() > 0.1  # the conditional target carries the pair's noise


def test_the_velocity_network_is_checked():
    network = GaussianMeanFlow()
    with pytest.raises(ValueError, match="velocity_network is the network being trained"):
        _prepare(network, velocity_network=network)
    prepare = _prepare(network, velocity_network=lambda x, timesteps: x[:, :1, :1])
    images = torch.randn(2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"velocity_network gave \(2, 1, 1, 3\) for samples of shape \(2, 1, 3, 3\)"):
        prepare.target(images, torch.randn_like(images), torch.tensor([500.0, 400.0]), torch.tensor([0.0, 0.0]),
                       Condition())  # fmt: skip


def _unet(seed: int = 0, attention: bool = False) -> DiffusionModelUNet:
    torch.manual_seed(seed)
    unet = DiffusionModelUNet(
        spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8), attention_levels=(False, attention),
        num_res_blocks=1, norm_num_groups=4, num_head_channels=8, use_flash_attention=attention,
    )  # fmt: skip
    with torch.no_grad():  # MONAI zero-initialises the output layers: weights that make the output depend on the input
        for parameter in unet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return unet


def test_the_wrapper_embeds_the_interval_and_starts_as_the_flow_model():
    unet = _unet().eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([800.0, 300.0])
    wrapped = MeanFlowDenoiser(unet).eval()
    with torch.no_grad():
        plain = unet(x, timesteps=t)
        torch.testing.assert_close(wrapped(x, timesteps=t, r_timesteps=torch.zeros(2)), plain)  # gate 0: itself
        torch.testing.assert_close(wrapped(x, timesteps=t), plain)  # no r: r = t
        wrapped.gate.fill_(1.0)
        moved = wrapped(x, timesteps=t, r_timesteps=torch.zeros(2))
        assert not torch.allclose(moved, plain)  # the interval reaches the network through its time embedding
        torch.testing.assert_close(wrapped(x, timesteps=t), plain)  # and only when given
    assert "gate" in dict(wrapped.named_parameters())
    with pytest.raises(ValueError, match="r_timesteps has 3 values for a batch of 2"):
        wrapped(x, timesteps=t, r_timesteps=torch.zeros(3))
    with pytest.raises(TypeError, match="has no time_embed MLP"):
        MeanFlowDenoiser(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="wrap the MeanFlowDenoiser in it instead"):
        MeanFlowDenoiser(torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel))


def test_meanflow_student_is_a_wrapped_copy_of_a_frozen_flow_model_and_refuses_a_ddpm_one():
    """What every bundle's ``--stage meanflow`` trains: the teacher frozen, its copy wrapped (gate 0: the same
    outputs), and a teacher of another objective refused with the key to change."""
    teacher = _unet()
    student = meanflow_student(teacher)
    assert isinstance(student, MeanFlowDenoiser) and student.network is not teacher and student.training
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert all(p.requires_grad for p in student.parameters())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([800.0, 300.0])
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(x, timesteps=t, r_timesteps=torch.zeros(2)), teacher(x, timesteps=t))
    with pytest.raises(ValueError, match="objective is 'ddpm'.*--objective flow"):
        meanflow_student(_unet(), objective="ddpm")


def test_the_jvp_runs_through_an_attention_unet_on_the_cpu():
    """The JVP (forward mode, math attention kernel) through MONAI's UNet with scaled-dot-product attention equals
    the same directional derivative from the reverse-mode Jacobian (the fused kernel's backward), in float64."""
    network = MeanFlowDenoiser(_unet(attention=True), gate_init=1.0).double().eval()
    torch.manual_seed(2)
    images, noise = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    t, r = torch.tensor([700.0, 400.0], dtype=torch.float64), torch.tensor([200.0, 100.0], dtype=torch.float64)
    target = _prepare(network).target(images, noise, t, r, Condition())
    s = (t / T).reshape(-1, 1, 1, 1)
    z = (1 - s) * images + s * noise
    jacobian_z, jacobian_t = torch.autograd.functional.jacobian(
        lambda z_, t_: network(z_, timesteps=t_, r_timesteps=r), (z, t)
    )  # (out..., in...) per input
    du_ds = (jacobian_z.flatten(0, 3).flatten(1) @ (noise - images).flatten()).reshape(z.shape)
    du_ds = du_ds + (jacobian_t.flatten(0, 3) @ torch.full_like(t, float(T))).reshape(z.shape)
    expected = (images - noise) - (s - (r / T).reshape(-1, 1, 1, 1)) * du_ds
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-5)  # MONAI embeds timesteps in float32
    # the fused CPU kernel itself has no forward-mode AD: hence the math kernel during the JVP (the default)
    with pytest.raises(NotImplementedError, match="forward AD"):
        _prepare(network, math_attention=False).target(images, noise, t, r, Condition())


def test_one_meanflow_step_lands_on_the_data_where_one_euler_step_does_not():
    noise = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    scheduler = RFlowScheduler(T, use_discrete_timesteps=False)
    network = GaussianMeanFlow()
    for steps in (1, 2, 4):
        sampler = Sampler(scheduler, steps, solver="meanflow", clip_range=None)
        assert sampler.network_evaluations == steps
        # the exact flow map from s = 1 to s = 0: z_0 = z_1 a(0) / a(1) = SIGMA z_1
        torch.testing.assert_close(sampler(noise, network), SIGMA * noise, rtol=1e-5, atol=1e-5)
    euler = Sampler(scheduler, 1, solver="euler", clip_range=None)(noise, network)
    assert not torch.allclose(euler, SIGMA * noise, atol=0.1)  # the instantaneous velocity at s = 1 overshoots
    with pytest.raises(ValueError, match="solver must be one of"):
        Sampler(scheduler, 1, solver="midpoint")


def test_a_training_step_through_monais_supervised_trainer():
    network = MeanFlowDenoiser(_unet(), gate_init=1.0)
    data = [{"image": torch.randn(2, 1, 8, 8) * SIGMA} for _ in range(3)]
    prepare = _prepare(network, interval_fraction=1.0)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3), loss_function=torch.nn.MSELoss(),
        prepare_batch=prepare,
    )  # fmt: skip
    gate = float(network.gate.detach())
    trainer.run()
    assert math.isfinite(float(trainer.state.output[0]["loss"])) and float(network.gate.detach()) != gate
    with pytest.raises(ValueError, match="interval_fraction must be in"):
        _prepare(network, interval_fraction=1.5)


def test_the_adaptive_loss_is_mse_at_power_zero_and_normalises_each_sample_at_power_one():
    torch.manual_seed(0)
    target = torch.randn(3, 2, 4, 4)
    scales = torch.tensor([0.1, 1.0, 10.0]).reshape(3, 1, 1, 1)
    prediction = (target + scales * torch.randn(3, 2, 4, 4)).requires_grad_()
    assert torch.allclose(
        AdaptiveL2Loss(power=0.0)(prediction, target), torch.nn.functional.mse_loss(prediction, target)
    )
    loss = AdaptiveL2Loss(power=1.0, eps=1e-3)(prediction, target)
    error = (prediction - target).pow(2).flatten(1).mean(1)
    assert torch.allclose(loss, (error / (error + 1e-3)).mean())
    # the weight is held fixed: each sample's gradient is its MSE gradient over (its error + eps)
    (gradient,) = torch.autograd.grad(loss, prediction)
    expected = 2 * (prediction - target) / prediction[0].numel() / (error.reshape(3, 1, 1, 1) + 1e-3) / 3
    assert torch.allclose(gradient, expected.detach(), rtol=1e-5)
    # so the sample with a 100x larger error no longer has a 100x larger gradient (as with MSE): a smaller one
    norms = gradient.flatten(1).norm(dim=1)
    assert norms[2] < norms[1] < norms[0]
    with pytest.raises(ValueError, match="power must be >= 0"):
        AdaptiveL2Loss(power=-1.0)
    with pytest.raises(ValueError, match="differ"):
        AdaptiveL2Loss()(prediction, target[:2])
