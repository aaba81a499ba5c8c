from __future__ import annotations

import warnings

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import STEP_RULES, Sampler, SchedulerKind, double_batch, register_scheduler, scheduler_kind


@pytest.fixture
def tiny_unet(make_unet):
    return make_unet(seed=0, num_class_embeds=3).eval()


SCHEDULERS = {
    "ddpm": lambda: (DDPMScheduler(10), {}),
    "ddim": lambda: (DDIMScheduler(10), {}),
    "flow_euler": lambda: (RFlowScheduler(10, use_discrete_timesteps=False), {"solver": "euler"}),
    "flow_heun": lambda: (RFlowScheduler(10, use_discrete_timesteps=False), {"solver": "heun"}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("steps", [2, 4])
def test_shapes_and_seeded_determinism(tiny_unet, name, steps):
    scheduler, kw = SCHEDULERS[name]()
    sampler = Sampler(scheduler, steps, conditioning=Conditioning({"class_labels": "view"}), **kw)
    noise = torch.randn(2, 1, 16, 16)
    cond = Condition({"class_labels": torch.tensor([0, 2])})
    a = sampler(noise, tiny_unet, condition=cond, generator=torch.Generator().manual_seed(1))
    b = sampler(noise, tiny_unet, condition=cond, generator=torch.Generator().manual_seed(1))
    assert a.shape == noise.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.abs().max() <= 1
    torch.testing.assert_close(a, b)


class Recorder(torch.nn.Module):
    """A denoiser with an analytic output that records its calls: f = x * 0 + label."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, timesteps, class_labels=None):
        self.calls.append((x.shape[0], timesteps.clone(), None if class_labels is None else class_labels.clone()))
        return torch.zeros_like(x) + class_labels.float().reshape(-1, 1, 1, 1)


def test_guidance_scale_one_is_no_guidance():
    net = Recorder()
    sampler = Sampler(
        DDIMScheduler(10), 3, guidance_scale=1.0, conditioning=Conditioning({"class_labels": "v"}), clip_range=None
    )
    sampler(torch.zeros(2, 1, 4, 4), net, condition=Condition({"class_labels": torch.tensor([1, 2])}))
    assert [c[0] for c in net.calls] == [2, 2, 2]  # one plain conditional pass per step


def test_guidance_combines_conditional_and_null_outputs():
    net = Recorder()
    conditioning = Conditioning({"class_labels": "v"}, null_values={"class_labels": 5})
    sampler = Sampler(DDIMScheduler(10), 2, guidance_scale=3.0, conditioning=conditioning)
    out = sampler.predict(
        net, torch.zeros(2, 1, 4, 4), torch.tensor(9), Condition({"class_labels": torch.tensor([1, 2])})
    )
    assert net.calls[0][0] == 4 and net.calls[0][2].tolist() == [1, 2, 5, 5]
    # uncond + w * (cond - uncond) = 5 + 3 * (label - 5)
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([5 + 3 * (1 - 5.0), 5 + 3 * (2 - 5.0)]))


def test_heun_evaluation_count():
    net = Recorder()
    sampler = Sampler(RFlowScheduler(100, use_discrete_timesteps=False), 4, solver="heun", clip_range=None)
    sampler(torch.zeros(1, 1, 4, 4), net, condition=None, class_labels=torch.tensor([0]))
    assert len(net.calls) == sampler.network_evaluations == 7


class ExactVelocity(torch.nn.Module):
    """The exact flow-matching velocity towards a single data point x*: u = (x* - x_s) / s."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x, timesteps):
        s = (timesteps.float() / 1000).reshape(-1, 1, 1, 1)
        return (self.target - x) / s


class ExactEpsilon(torch.nn.Module):
    """The exact noise prediction for a single data point x*: eps = (x_t - sqrt(abar) x*) / sqrt(1 - abar)."""

    def __init__(self, target, scheduler):
        super().__init__()
        self.target, self.abar = target, scheduler.alphas_cumprod

    def forward(self, x, timesteps):
        abar = self.abar[timesteps.long()].reshape(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.target) / (1 - abar).sqrt()


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_flow_solvers_integrate_a_straight_path_exactly(solver):
    target = torch.rand(2, 1, 4, 4) - 0.5
    sampler = Sampler(RFlowScheduler(1000, use_discrete_timesteps=False), 3, solver=solver)
    out = sampler(torch.randn(2, 1, 4, 4), ExactVelocity(target))
    torch.testing.assert_close(out, target, atol=1e-4, rtol=1e-4)


def test_ddim_reaches_the_data_point_with_exact_noise_prediction():
    target = torch.rand(2, 1, 4, 4) - 0.5
    scheduler = DDIMScheduler(1000, schedule="cosine")
    out = Sampler(scheduler, 4)(torch.randn(2, 1, 4, 4), ExactEpsilon(target, scheduler))
    torch.testing.assert_close(out, target, atol=1e-3, rtol=1e-3)


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_inference_steps"):
        Sampler(DDPMScheduler(10), 11)
    with pytest.raises(ValueError, match="solver"):
        Sampler(RFlowScheduler(10), 2, solver="rk4")
    with pytest.raises(ValueError, match="guidance_scale"):
        Sampler(DDPMScheduler(10), 2, guidance_scale=-1)
    with pytest.raises(ValueError, match="eta"):
        Sampler(DDIMScheduler(10), 2, eta=-0.5)
    with pytest.raises(TypeError, match="scheduler"):
        Sampler(object(), 2)


def test_strided_ddpm_warns_and_points_at_ddim_eta_1():
    with pytest.warns(UserWarning, match="use DDIMScheduler with the same betas and eta=1.0"):
        Sampler(DDPMScheduler(1000), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sampler(DDPMScheduler(1000))  # every training step: no warning


class NestedRecorder(torch.nn.Module):
    """Records the batch sizes of nested keyword inputs; output = x * 0 + label + sum of the extras."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, timesteps, class_labels=None, extras=None):
        sizes = {k: [t.shape[0] for t in v] if isinstance(v, (list, tuple)) else v.shape[0] for k, v in extras.items()}
        self.seen.append((x.shape[0], sizes, type(extras["pair"]).__name__))
        bias = sum(t.reshape(t.shape[0], -1).sum(1) for t in [*extras["pair"], *extras["list"]])
        return torch.zeros_like(x) + (class_labels.float() + bias).reshape(-1, 1, 1, 1)


def test_guidance_doubles_nested_inputs():
    net = NestedRecorder()
    conditioning = Conditioning({"class_labels": "v"}, null_values={"class_labels": 0})
    sampler = Sampler(DDIMScheduler(10), 2, guidance_scale=2.0, conditioning=conditioning, clip_range=None)
    extras = {"pair": (torch.ones(2, 3), torch.ones(2, 1)), "list": [torch.zeros(2, 2)]}
    out = sampler.predict(
        net, torch.zeros(2, 1, 4, 4), torch.tensor(5), Condition({"class_labels": torch.tensor([1, 2])}), extras=extras
    )
    assert net.seen[0] == (4, {"pair": [4, 4], "list": [4]}, "tuple")  # every tensor doubled, containers kept
    # bias 4 in both halves: uncond (0 + 4) + 2 * ((label + 4) - (0 + 4)) = 4 + 2 label
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([6.0, 8.0]))


def test_double_batch_leaves_non_tensors():
    value = {"a": [torch.ones(1, 2), 3], "b": "text", "c": (torch.zeros(2),)}
    doubled = double_batch(value)
    assert doubled["a"][0].shape == (2, 2) and doubled["a"][1] == 3 and doubled["b"] == "text"
    assert doubled["c"][0].shape == (4,) and isinstance(doubled["c"], tuple)


def test_scheduler_kinds_follow_the_mro_and_the_registry():
    from echo_monai.networks.schedulers import DPMSolverScheduler

    assert scheduler_kind(DDPMScheduler(10)) == SchedulerKind.DDPM
    assert scheduler_kind(DDIMScheduler(10)) == SchedulerKind.DDIM
    assert scheduler_kind(RFlowScheduler(10)) == SchedulerKind.FLOW
    assert scheduler_kind(DPMSolverScheduler(10)) == SchedulerKind.MULTISTEP

    class MyDDIM(DDIMScheduler):
        pass

    assert scheduler_kind(MyDDIM(10)) == SchedulerKind.DDIM  # a subclass inherits its parent's rule

    class Plain(DDPMScheduler):
        pass

    register_scheduler(Plain, "multistep")
    try:
        assert Sampler(Plain(10), 2).kind == SchedulerKind.MULTISTEP  # no strided-DDPM warning either
    finally:
        from echo_monai.inferers import sampler as sampler_module

        sampler_module._SCHEDULER_KINDS.pop(Plain)
    with pytest.raises(ValueError, match="kind must be one of"):
        register_scheduler(Plain, "euler")
    assert set(STEP_RULES) == set(SchedulerKind)
