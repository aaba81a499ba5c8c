"""Consistency distillation: the teacher step against MONAI's DDIM step, the exact consistency function of a Gaussian as
the fixed point of the objective, one-step sampling of it, and a distillation step through MONAI's trainer."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

from echo_monai.engines import Condition, Conditioning, ConsistencyDistillationPrepareBatch, student_from_teacher
from echo_monai.inferers import Sampler
from echo_monai.networks.schedulers import ConsistencyScheduler, DPMSolverScheduler

T = 1000
SIGMA = 0.5  # the data: x_0 ~ N(0, SIGMA^2) per pixel


def _scales(scheduler, timesteps, x):
    abar = scheduler.alphas_cumprod.to(torch.float64)[timesteps.long()].reshape(-1, *([1] * (x.ndim - 1)))
    return abar.sqrt().to(x.dtype), (1 - abar).sqrt().to(x.dtype)


class GaussianTeacher(torch.nn.Module):
    """The exact epsilon-prediction of Gaussian data: E[x_0 | x_t] = alpha SIGMA^2 x_t / (alpha^2 SIGMA^2 + sigma^2)."""

    def __init__(self, scheduler):
        super().__init__()
        self.scheduler = scheduler

    def forward(self, x, timesteps):
        alpha, sigma = _scales(self.scheduler, timesteps, x)
        x0 = alpha * SIGMA**2 * x / (alpha**2 * SIGMA**2 + sigma**2)
        return (x - alpha * x0) / sigma


class GaussianConsistency(torch.nn.Module):
    """The exact consistency function (the probability-flow ODE's end point) of Gaussian data as a v-predictor:
    f(x_t, t) = SIGMA x_t / sqrt(alpha^2 SIGMA^2 + sigma^2), v = (alpha x_t - f) / sigma."""

    def __init__(self, scheduler):
        super().__init__()
        self.scheduler = scheduler

    def forward(self, x, timesteps):
        alpha, sigma = _scales(self.scheduler, timesteps, x)
        f = SIGMA * x / (alpha**2 * SIGMA**2 + sigma**2).sqrt()
        return (alpha * x - f) / sigma


class DenoiserAsV(GaussianTeacher):
    """The teacher's own data prediction as a v-predictor: a student that is not consistent."""

    def forward(self, x, timesteps):
        alpha, sigma = _scales(self.scheduler, timesteps, x)
        return (alpha * x - (x - sigma * super().forward(x, timesteps)) / alpha) / sigma


class TimedConv(torch.nn.Module):
    """A small network of (x, t) for the step test."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1).double()

    def forward(self, x, timesteps):
        return self.conv(x) * (1 + timesteps.to(x.dtype).reshape(-1, 1, 1, 1) / T)


def _batch(n=4096, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 1, 2, 2, generator=generator, dtype=torch.float64) * SIGMA}


def test_the_teacher_step_is_monais_ddim_step_on_the_grid():
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type="v_prediction")
    teacher = TimedConv()
    prepare = ConsistencyDistillationPrepareBatch(scheduler, teacher, torch.nn.Identity(), num_grid_steps=50,
                                                  clip_sample=False)  # fmt: skip
    ddim = DDIMScheduler(T, schedule="cosine", prediction_type="v_prediction", clip_sample=False, steps_offset=19)
    ddim.set_timesteps(50)
    assert prepare.grid[1:].tolist() == sorted(ddim.timesteps.tolist())
    sample = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    for t in (999, 519, 39, 19):  # 19 -> the clean data (DDIM's final alpha-bar = 1)
        timesteps = torch.tensor([t])
        previous = prepare.previous_time(timesteps)
        assert int(previous) == t - 20
        ours = prepare.teacher_step(sample, timesteps, previous, Condition())
        with torch.no_grad():
            expected = ddim.step(teacher(sample, timesteps), t, sample)[0]
        torch.testing.assert_close(ours, expected)


class LabelledConv(TimedConv):
    """(x, t, class label) -> a label-dependent output, for the guided teacher step."""

    def forward(self, x, timesteps, class_labels):
        return super().forward(x, timesteps) + 0.1 * class_labels.to(x.dtype).reshape(-1, 1, 1, 1) * x.abs()


def test_the_guided_teacher_step_is_ddim_on_the_guided_prediction():
    """guidance_scale w: the teacher's DDIM step follows uncond + w (cond - uncond), the two from separate calls; a
    sample whose label was dropped (the null class) steps on the unconditional prediction; w = 1 is the plain step."""
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type="v_prediction")
    teacher = LabelledConv()
    conditioning = Conditioning({"class_labels": "view"}, null_values={"class_labels": 2})
    ddim = DDIMScheduler(T, schedule="cosine", prediction_type="v_prediction", clip_sample=False, steps_offset=19)
    ddim.set_timesteps(50)
    sample = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])  # the third sample's label was dropped
    condition = Condition(kwargs={"class_labels": labels})
    timesteps, t = torch.tensor([519, 519, 519]), 519
    for w in (1.0, 3.0):
        prepare = ConsistencyDistillationPrepareBatch(
            scheduler,
            teacher,
            torch.nn.Identity(),
            conditioning,
            num_grid_steps=50,
            clip_sample=False,
            guidance_scale=w,
        )
        ours = prepare.teacher_step(sample, timesteps, prepare.previous_time(timesteps), condition)
        with torch.no_grad():
            cond = teacher(sample, timesteps, class_labels=labels)
            uncond = teacher(sample, timesteps, class_labels=torch.full_like(labels, 2))
            expected = ddim.step(uncond + w * (cond - uncond), t, sample)[0]
            plain = ddim.step(cond, t, sample)[0]
        torch.testing.assert_close(ours, expected)
        torch.testing.assert_close(ours[2], plain[2])  # dropped: the unconditional teacher either way
        assert torch.allclose(ours[:2], plain[:2]) == (w == 1.0)


def test_the_exact_consistency_function_is_the_fixed_point_of_the_objective():
    scheduler = DDPMScheduler(T, schedule="cosine")
    teacher = GaussianTeacher(scheduler)

    def loss(student) -> float:
        torch.manual_seed(0)
        prepare = ConsistencyDistillationPrepareBatch(scheduler, teacher, student, num_grid_steps=50, clip_sample=False)
        network_input, target, _, kwargs = prepare(_batch())
        # the loss in data space (x0 = alpha x - sigma v), where it is comparable across times
        alpha, sigma = _scales(scheduler, kwargs["timesteps"], network_input)
        error = sigma * (student(network_input, kwargs["timesteps"]) - target)
        return float(error.pow(2).mean())

    # what is left for the exact consistency function is the teacher's DDIM step error (measured 2.3e-7); the
    # teacher's own denoiser, which is not consistent along the trajectory, leaves 1.1e-4
    consistent, inconsistent = loss(GaussianConsistency(scheduler)), loss(DenoiserAsV(scheduler))
    assert consistent < 1e-6
    assert inconsistent > 5e-5
    assert consistent < 0.01 * inconsistent


def test_consistency_sampling_of_the_exact_consistency_function_samples_the_data():
    """The student's sampler lands on the data distribution in one and in two steps (fresh noise between them); DDIM's
    deterministic step re-uses the noise the sample was made from and over-disperses it; one step with the exact
    denoiser gives its mean (zero)."""
    noise = torch.randn(4096, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scheduler = DDPMScheduler(T, schedule="cosine")
    consistency = GaussianConsistency(scheduler)
    student = ConsistencyScheduler(T, schedule="cosine", clip_sample=False)
    stds = {}
    for steps in (1, 2, 4):
        sampled = Sampler(student, steps, clip_range=None)(
            noise, consistency, generator=torch.Generator().manual_seed(1)
        )
        stds[steps] = float(sampled.std())
    assert student.timesteps.tolist() == [999, 749, 499, 249]
    assert stds == pytest.approx({1: SIGMA, 2: SIGMA, 4: SIGMA}, rel=0.03)
    ddim = DPMSolverScheduler(T, schedule="cosine", prediction_type="v_prediction", solver_order=1,
                              timestep_spacing="trailing", clip_sample=False)  # fmt: skip
    assert float(Sampler(ddim, 2, clip_range=None)(noise, consistency).std()) > 1.2 * SIGMA
    teacher = DPMSolverScheduler(T, schedule="cosine", solver_order=1, timestep_spacing="trailing", clip_sample=False)
    assert float(Sampler(teacher, 1, clip_range=None)(noise, GaussianTeacher(scheduler)).std()) < 0.05 * SIGMA
    again = Sampler(student, 2, clip_range=None)(noise, consistency, generator=torch.Generator().manual_seed(1))
    assert float(again.std()) == stds[2]  # the generator makes it reproducible


def _unet() -> DiffusionModelUNet:
    return DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8),
                              attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)  # fmt: skip


def test_a_distillation_step_through_monais_trainer_moves_the_student_only():
    torch.manual_seed(0)
    scheduler = DDPMScheduler(10, schedule="cosine")
    teacher = _unet()
    student = student_from_teacher(teacher)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    before_teacher = [p.clone() for p in teacher.parameters()]
    before_student = [p.clone() for p in student.parameters()]
    prepare = ConsistencyDistillationPrepareBatch(scheduler, teacher, student, num_grid_steps=5)
    data = [{"image": torch.rand(2, 1, 16, 16) * 2 - 1} for _ in range(2)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=student,
        optimizer=torch.optim.Adam(student.parameters(), 1e-3), loss_function=torch.nn.MSELoss(),
        prepare_batch=prepare,
    )  # fmt: skip
    trainer.run()
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
    assert all(torch.equal(a, b) for a, b in zip(before_teacher, teacher.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_student, student.parameters(), strict=True))
    timesteps = prepare.get_timesteps(torch.zeros(64, 1, 1, 1))
    assert set(timesteps.tolist()) <= {1, 3, 5, 7, 9}  # the grid n T / N - 1


def test_bad_arguments_are_refused_in_one_line():
    scheduler = DDPMScheduler(10)
    teacher = torch.nn.Identity()
    with pytest.raises(ValueError, match="num_grid_steps must be in \\[1, 10\\]"):
        ConsistencyDistillationPrepareBatch(scheduler, teacher, torch.nn.Identity(), num_grid_steps=11)
    with pytest.raises(ValueError, match="the same module"):
        ConsistencyDistillationPrepareBatch(scheduler, teacher, teacher)
    with pytest.raises(ValueError, match="without --multi-gpu"):
        student_from_teacher(
            torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel)
        )
    with pytest.raises(TypeError, match="DDPMScheduler"):
        ConsistencyDistillationPrepareBatch(RFlowScheduler(10), teacher, torch.nn.Identity())
    with pytest.raises(ValueError, match="no droppable condition to guide on"):
        ConsistencyDistillationPrepareBatch(scheduler, teacher, torch.nn.Identity(), guidance_scale=3.0)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        ConsistencyDistillationPrepareBatch(scheduler, teacher, torch.nn.Identity(), guidance_scale=-1.0)
