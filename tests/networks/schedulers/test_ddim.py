from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler as MonaiDDIMScheduler

from echo_monai.networks.schedulers import DDIMScheduler, DPMSolverScheduler


def _pair(prediction_type: str, clip: bool = True):
    kwargs = {"schedule": "cosine", "prediction_type": prediction_type, "clip_sample": clip}
    ours, monai = DDIMScheduler(1000, **kwargs), MonaiDDIMScheduler(1000, **kwargs)
    for scheduler in (ours, monai):
        scheduler.set_timesteps(50)
    return ours, monai


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_step_against_the_closed_form_with_clipping(prediction_type):
    torch.manual_seed(0)
    ours, _ = _pair(prediction_type)
    t, prev = 979, 959
    x, output = 2.0 * torch.randn(2, 1, 8, 8), 3.0 * torch.randn(2, 1, 8, 8)  # large: x0 gets clipped
    abar, abar_prev = ours.alphas_cumprod[t], ours.alphas_cumprod[prev]
    x0 = {
        "epsilon": (x - (1 - abar).sqrt() * output) / abar.sqrt(),
        "v_prediction": abar.sqrt() * x - (1 - abar).sqrt() * output,
        "sample": output,
    }[prediction_type].clamp(-1, 1)
    eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise that makes x_t with the clipped x0
    expected = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    prev_sample, pred_original = ours.step(output, t, x)
    torch.testing.assert_close(pred_original, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prev_sample, expected, atol=1e-4, rtol=1e-4)
    assert ours.prediction_type == prediction_type  # restored after the step


def test_monai_keeps_the_unclipped_noise_and_we_agree_with_it_when_nothing_is_clipped():
    torch.manual_seed(1)
    ours, monai = _pair("v_prediction")
    x, output = 2.0 * torch.randn(1, 1, 8, 8), 3.0 * torch.randn(1, 1, 8, 8)
    assert not torch.allclose(ours.step(output, 979, x)[0], monai.step(output, 979, x)[0], atol=1e-3)
    small_x, small_output = 0.1 * x, 0.1 * output  # x0 within [-1, 1]: the same step
    torch.testing.assert_close(ours.step(small_output, 500, small_x)[0], monai.step(small_output, 500, small_x)[0])
    unclipped, monai_unclipped = _pair("v_prediction", clip=False)
    torch.testing.assert_close(unclipped.step(output, 979, x)[0], monai_unclipped.step(output, 979, x)[0])


def test_eta_zero_is_first_order_dpm_solver_on_the_same_times():
    torch.manual_seed(2)
    kwargs = {"schedule": "cosine", "prediction_type": "v_prediction"}
    ddim = DDIMScheduler(1000, **kwargs)
    ddim.set_timesteps(4)  # steps of 1000 // 4 = 250: 749 -> 499
    solver = DPMSolverScheduler(1000, **kwargs, solver_order=1, timestep_spacing="trailing")
    solver.set_timesteps(4)  # 999, 749, 499, 249
    x, output = 1.5 * torch.randn(1, 1, 8, 8, dtype=torch.float64), 2.0 * torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ddim.alphas_cumprod = ddim.alphas_cumprod.double()  # float64, as the solver computes: equal to rounding
    torch.testing.assert_close(ddim.step(output, 749, x)[0], solver.step(output, 749, x)[0], atol=1e-6, rtol=1e-6)
    monai = MonaiDDIMScheduler(1000, **kwargs)
    monai.set_timesteps(4)
    monai.alphas_cumprod = monai.alphas_cumprod.double()
    assert not torch.allclose(monai.step(output, 749, x)[0], solver.step(output, 749, x)[0], atol=1e-3)


def test_sampler_drives_it_as_ddim():
    from echo_monai.inferers import Sampler, SchedulerKind

    sampler = Sampler(DDIMScheduler(10, prediction_type="v_prediction"), 5)
    assert sampler.kind == SchedulerKind.DDIM
    out = sampler(torch.randn(2, 1, 8, 8), lambda x, timesteps: torch.zeros_like(x), generator=torch.Generator())
    assert out.shape == (2, 1, 8, 8) and out.abs().max() <= 1.0
