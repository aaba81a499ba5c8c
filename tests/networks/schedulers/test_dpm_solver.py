from __future__ import annotations

import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from echo_monai.inferers import Sampler
from echo_monai.networks.schedulers import DPMSolverScheduler

T = 1000  # the schedules are tables: a realistic length costs nothing


def _alpha_sigma(scheduler, timesteps, ndim):
    abar = scheduler.alphas_cumprod.to(torch.float64)[timesteps.long()].reshape(-1, *[1] * (ndim - 1))
    return abar.sqrt(), (1 - abar).sqrt()


class ExactSinglePoint(torch.nn.Module):
    """The exact denoiser for data concentrated on one point x*, in eps, v or x_0 parametrisation."""

    def __init__(self, scheduler, target, prediction_type):
        super().__init__()
        self.scheduler, self.target, self.prediction_type = scheduler, target, prediction_type

    def forward(self, x, timesteps):
        alpha, sigma = _alpha_sigma(self.scheduler, timesteps, x.ndim)
        eps = (x - alpha * self.target) / sigma
        return {"epsilon": eps, "v_prediction": alpha * eps - sigma * self.target, "sample": self.target + 0 * x}[
            self.prediction_type
        ].to(x.dtype)


class ExactGaussian(torch.nn.Module):
    """Exact eps-prediction for x_0 ~ N(mu, s^2) per pixel: eps* = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2)."""

    def __init__(self, scheduler, mean, std):
        super().__init__()
        self.scheduler, self.mean, self.std = scheduler, mean, std

    def forward(self, x, timesteps):
        alpha, sigma = _alpha_sigma(self.scheduler, timesteps, x.ndim)
        return (sigma * (x - alpha * self.mean) / (alpha**2 * self.std**2 + sigma**2)).to(x.dtype)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("schedule", ["cosine", "linear_beta"])
@pytest.mark.parametrize("steps", [1, 5, 10])
@pytest.mark.parametrize("order", [1, 2])
def test_exact_network_lands_on_the_data_point(prediction_type, schedule, steps, order):
    scheduler = DPMSolverScheduler(T, schedule, prediction_type=prediction_type, solver_order=order, clip_sample=False)
    target = torch.linspace(-0.9, 0.9, 64, dtype=torch.float64).reshape(1, 1, 8, 8)
    network = ExactSinglePoint(scheduler, target, prediction_type)
    sampler = Sampler(scheduler, num_inference_steps=steps, clip_range=None)
    out = sampler(torch.randn(3, 1, 8, 8, dtype=torch.float64), network)
    torch.testing.assert_close(out, target.expand_as(out), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "spacing, expected",
    [
        ("quadratic", [999, 809, 639, 490, 360, 250, 160, 90, 40, 10]),
        ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        ("linspace", [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]),
    ],
)
def test_timesteps(spacing, expected):
    scheduler = DPMSolverScheduler(T, "cosine", timestep_spacing=spacing)
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.dtype == torch.int64 and scheduler.timesteps.tolist() == expected


@pytest.mark.parametrize("spacing", ["quadratic", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 2, 60, 999, 1000])
def test_timesteps_strictly_decreasing_for_any_number_of_steps(spacing, steps):
    scheduler = DPMSolverScheduler(T, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    assert len(timesteps) == steps and timesteps[0] == T - 1 and timesteps[-1] >= 0
    assert torch.all(timesteps[1:] < timesteps[:-1])


def _loop(scheduler, network, x, timesteps, **kwargs):
    for t in timesteps:
        x, _ = scheduler.step(network(x, t.reshape(1)), t, x, **kwargs)
    return x


class FixedNetwork(torch.nn.Module):
    """A fixed, non-trivial function of (x, t) standing in for a trained denoiser."""

    def forward(self, x, timesteps):
        scale = torch.cos(timesteps.double() / 300).reshape(-1, *[1] * (x.ndim - 1))
        return torch.tanh(1.3 * x + 0.5) * scale.to(x.dtype)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_order_one_is_ddim(prediction_type, set_alpha_to_one):
    # MONAI's DDIM steps from t to t - T // n; on the trailing grid (999, 899, ..., 99) that is the next grid time,
    # and below 0 it uses its final alpha-bar (1 or alphas_cumprod[0]), the same target as ours
    kw = {"prediction_type": prediction_type, "clip_sample": False, "set_alpha_to_one": set_alpha_to_one}
    ours = DPMSolverScheduler(T, "cosine", solver_order=1, timestep_spacing="trailing", **kw)
    ddim = DDIMScheduler(T, "cosine", **kw)
    ours.set_timesteps(10)
    ddim.set_timesteps(10)
    ddim.timesteps = ours.timesteps.clone()
    ddim.alphas_cumprod = ddim.alphas_cumprod.double()  # same values, float64 arithmetic as ours
    ddim.final_alpha_cumprod = ddim.final_alpha_cumprod.double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    expected = _loop(ddim, FixedNetwork(), x, ddim.timesteps, eta=0.0)
    torch.testing.assert_close(_loop(ours, FixedNetwork(), x, ours.timesteps), expected, atol=1e-10, rtol=1e-10)


def test_second_order_step_matches_the_formula():
    scheduler = DPMSolverScheduler(
        T, "linear_beta", prediction_type="sample", timestep_spacing="trailing", clip_sample=False
    )
    scheduler.set_timesteps(4)  # 999, 749, 499, 249
    x = torch.randn(5, dtype=torch.float64)
    d1, d2 = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    x1, _ = scheduler.step(d1, scheduler.timesteps[0], x)
    x2, _ = scheduler.step(d2, scheduler.timesteps[1], x1)
    abar = scheduler.alphas_cumprod.double().tolist()

    def lam(t):
        return 0.5 * math.log(abar[t] / (1 - abar[t]))

    def sig(t):
        return math.sqrt(1 - abar[t])

    h1, h2 = lam(749) - lam(999), lam(499) - lam(749)
    expected_x1 = sig(749) / sig(999) * x + math.sqrt(abar[749]) * (1 - math.exp(-h1)) * d1
    expected_x2 = sig(499) / sig(749) * x1 + math.sqrt(abar[499]) * (1 - math.exp(-h2)) * (
        (1 + h2 / (2 * h1)) * d2 - h2 / (2 * h1) * d1
    )
    torch.testing.assert_close(x1, expected_x1, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(x2, expected_x2, atol=1e-12, rtol=1e-12)


def test_set_timesteps_resets_the_history():
    scheduler = DPMSolverScheduler(T, "cosine", clip_sample=False)
    sampler = Sampler(scheduler, num_inference_steps=6, clip_range=None)
    noise = torch.randn(2, 1, 3, 4, 4)  # (B, C, T, H, W) video, float32
    first = sampler(noise, FixedNetwork())
    assert first.shape == noise.shape and first.dtype == torch.float32 and torch.isfinite(first).all()
    torch.testing.assert_close(sampler(noise, FixedNetwork()), first)


def test_clip_sample_clamps_the_data_prediction():
    scheduler = DPMSolverScheduler(T, "cosine", prediction_type="sample", clip_sample_values=(-0.5, 0.5))
    scheduler.set_timesteps(3)
    _, pred_original = scheduler.step(torch.full((1, 4), 3.0), scheduler.timesteps[0], torch.zeros(1, 4))
    assert torch.all(pred_original == 0.5)


@pytest.fixture
def gaussian_data():
    """Per-pixel N(mu, s^2) data and 4000 noise draws whitened per pixel, so that only the solver's error remains."""
    mean = torch.linspace(-0.5, 0.5, 4, dtype=torch.float64).reshape(1, 1, 2, 2)
    std = torch.linspace(0.2, 0.6, 4, dtype=torch.float64).reshape(1, 1, 2, 2)
    noise = torch.randn(4000, 1, 2, 2, dtype=torch.float64)
    return mean, std, (noise - noise.mean(0)) / noise.std(0)


def _moment_errors(scheduler, steps, gaussian_data):
    mean, std, noise = gaussian_data
    samples = Sampler(scheduler, num_inference_steps=steps, clip_range=None)(noise, ExactGaussian(scheduler, mean, std))
    return (samples.mean(0) - mean).abs().max().item(), (samples.std(0) / std - 1).abs().max().item()


@pytest.mark.parametrize("steps", [10, 20])
def test_gaussian_data_moments_and_2m_beats_ddim(steps, gaussian_data):
    mean_2m, std_2m = _moment_errors(DPMSolverScheduler(T, "cosine", clip_sample=False), steps, gaussian_data)
    # DDIM twice: as DPM-Solver++1 on the same time steps, and MONAI's DDIMScheduler on its own
    order_one = DPMSolverScheduler(T, "cosine", solver_order=1, clip_sample=False)
    mean_1, std_1 = _moment_errors(order_one, steps, gaussian_data)
    _, std_ddim = _moment_errors(DDIMScheduler(T, "cosine", clip_sample=False), steps, gaussian_data)
    assert mean_2m < 1e-3 and mean_1 < 1e-3  # the exact model is odd about mu: the mean is kept
    assert std_2m < {10: 0.06, 20: 0.03}[steps]
    assert std_2m < 0.5 * std_1 and std_2m < 0.5 * std_ddim


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"solver_order": 3}, "solver_order"),
        ({"solver_order": 0}, "solver_order"),
        ({"prediction_type": "score"}, "prediction_type"),
        ({"timestep_spacing": "leading"}, "timestep_spacing"),
        ({"clip_sample_values": (1.0, -1.0)}, "clip_sample_values"),
        ({"num_train_timesteps": 1}, "num_train_timesteps"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DPMSolverScheduler(**kwargs)


@pytest.mark.parametrize("steps", [0, T + 1])
def test_bad_number_of_steps(steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        DPMSolverScheduler(T).set_timesteps(steps)


def test_step_outside_the_grid_is_refused():
    scheduler = DPMSolverScheduler(T)
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="timestep"):
        scheduler.step(torch.zeros(1, 4), 500, torch.zeros(1, 4))
