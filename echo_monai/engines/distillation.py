"""Consistency distillation of a trained DDPM into a one- to few-step student (Song, Dhariwal, Chen and Sutskever,
"Consistency Models", ICML 2023, Algorithm 2), as one ``PrepareBatch`` for MONAI's ``SupervisedTrainer``.

Why consistency distillation (and not progressive distillation, Salimans & Ho 2022): one training run gives a student
that samples in 1, 2 or 4 steps from the same weights, where progressive distillation halves the step count per run
(about 8 runs from 1000 steps to 4); and the teacher step is the deterministic DDIM step the project already
samples with.

Notation (DDPM, ``abar_t`` = ``scheduler.alphas_cumprod[t]``, ``alpha_t = sqrt(abar_t)``, ``sigma_t =
sqrt(1 - abar_t)``; ``x_t = alpha_t x_0 + sigma_t eps``). The time grid has ``N`` points ``t_n = n T / N - 1``
(n = 1 .. N, so ``t_N = T - 1``) below which lies the clean data (``t_0``: ``abar = 1``). For a training pair
``(t_n, t_{n-1})``:

1. ``x_{t_n} = scheduler.add_noise(x_0, eps, t_n)``;
2. the teacher's deterministic DDIM step (= DPM-Solver++1) from ``t_n`` to ``t_{n-1}``:
   ``x_hat = alpha_{n-1} x0_teacher + sigma_{n-1} eps_teacher``, with the teacher's data prediction ``x0_teacher``
   (clipped to [-1, 1] with ``clip_sample``, and its noise recomputed from the clipped one, as
   :class:`echo_monai.networks.schedulers.DDIMScheduler` does);
3. the consistency target ``f_target(x_hat, t_{n-1})``: the target network's data prediction there, or ``x_hat``
   itself for ``n = 1`` (the boundary condition ``f(x, t_0) = x``);
4. the student regresses it from ``x_{t_n}``.

The student predicts ``v`` (``x_0 = alpha_t x_t - sigma_t v``), whatever the teacher predicts: ``f(x, t) = alpha_t x
- sigma_t F(x, t)`` is the consistency models' skip parametrisation (``c_skip = alpha_t -> 1``, ``c_out = -sigma_t ->
0`` at low noise), and it is well conditioned at ``t = T - 1``, where an epsilon network's data prediction divides by
``alpha_{T-1}`` (about 4e-5 for the cosine schedule). The target is returned in ``v``:
``v* = (alpha_t x_t - x0*) / sigma_t``, so the trainer's loss stays a plain ``MSELoss``; in data space that is the
squared error weighted by ``1 / sigma_t^2 = 1 + SNR_t`` (the "SNR + 1" weighting of Salimans & Ho 2022).

Guided distillation (Latent Consistency Models, Luo et al. 2023): with ``guidance_scale`` ``w > 1`` the teacher's
step follows the classifier-free guided prediction ``f_uncond + w (f_cond - f_uncond)`` (one doubled call,
:func:`echo_monai.engines.guided_output`), so the student learns the guided trajectory for its condition and
samples with guidance 1, one network call per step (the guidance is in its weights, at the one ``w`` it was
distilled with; LCM's ``w`` embedding is not used). A sample whose condition was dropped is the unconditional
teacher's either way. The teacher must have been trained with condition dropout for ``w`` to mean anything.

The target network defaults to the student itself without gradient (``mu = 0``, which Song & Dhariwal 2023 found
best); pass an EMA copy for the paper's ``mu > 0``. The student samples with
:class:`echo_monai.networks.schedulers.ConsistencyScheduler` (evaluations at 999; 999, 499; ...): each step takes its
data prediction and noises it afresh to the next time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.networks.schedulers import RFlowScheduler, Scheduler

from echo_monai.engines.conditioning import Condition, Conditioning, guided_output
from echo_monai.engines.prepare_batch import DenoisingPrepareBatch
from echo_monai.networks.schedulers.parametrisation import data_prediction

__all__ = [
    "ConsistencyDistillationPrepareBatch",
    "consistency_student",
    "meanflow_student",
    "reflow_couplings",
    "reflow_student",
    "student_from_teacher",
]


def student_from_teacher(teacher: torch.nn.Module) -> torch.nn.Module:
    """A trainable copy of ``teacher`` (the student starts from the teacher's weights); the teacher is frozen and put
    in eval mode, so only the student trains.

    Raises:
        ValueError: for a ``DistributedDataParallel`` teacher: the multi-GPU overlay wraps the teacher, not the
            student, so the ranks would train students of their own; distillation runs on one device for now.
    """
    if isinstance(teacher, torch.nn.parallel.DistributedDataParallel):
        raise ValueError(
            "student_from_teacher: the teacher is wrapped in DistributedDataParallel (the multi-GPU overlay); "
            "the stages that train a copy of a frozen teacher (--stage distill, --stage meanflow) run on one "
            "device: run the stage without --multi-gpu."
        )
    student = copy.deepcopy(teacher)
    teacher.eval().requires_grad_(False)
    return student.train().requires_grad_(True)


def _require_objective(owner: str, objective: str, expected: str, stage: str, instead: str) -> None:
    """Refuse, on one line naming the bundle's ``objective`` key, a teacher trained with another objective than the
    stage's; ``instead`` says what to run for such a model."""
    if objective != expected:
        raise ValueError(
            f"{owner}: objective is {objective!r}, but the {stage} stage needs a model trained with objective "
            f"{expected!r}: train models/model.pt with --objective {expected} first, or {instead}."
        )


def consistency_student(teacher: torch.nn.Module, objective: str = "ddpm") -> torch.nn.Module:
    """The network a consistency distillation trains: a trainable copy of the trained DDPM ``teacher``, which is
    frozen (:func:`student_from_teacher`). Every bundle's ``--stage distill`` builds its student so.

    Args:
        teacher: the trained DDPM denoiser (any prediction type: the student predicts v).
        objective: what the bundle trained ``teacher`` with (its ``objective`` key): only ``"ddpm"`` has the noise
            schedule :class:`ConsistencyDistillationPrepareBatch` steps the teacher along; a flow model has none.

    Raises:
        ValueError: for another objective than DDPM, naming the ``objective`` key.
    """
    _require_objective(
        "consistency_student", objective, "ddpm", "distill", "run --stage meanflow for a one-step flow-matching model"
    )
    return student_from_teacher(teacher)


def meanflow_student(teacher: torch.nn.Module, objective: str = "flow", gate_init: float = 0.0) -> torch.nn.Module:
    """The network a MeanFlow fine-tune trains: a copy of the trained flow model ``teacher`` (frozen, as by
    :func:`student_from_teacher`) wrapped in :class:`echo_monai.networks.nets.MeanFlowDenoiser`, which gives it the
    interval ``t - r`` through its own time embedding (gated by ``gate_init``: 0, it starts as the flow model).

    Every bundle's ``--stage meanflow`` builds its student so (the teacher is its ``models/model.pt``).

    Args:
        teacher: the trained velocity (flow-matching) denoiser.
        objective: what the bundle trained ``teacher`` with (its ``objective`` key): only ``"flow"`` has the velocity
            the MeanFlow identity starts from; a DDPM (epsilon / v) network does not.
        gate_init: the interval gate's initial value.

    Raises:
        ValueError: for another objective than flow matching, naming the ``objective`` key.
    """
    _require_objective(
        "meanflow_student",
        objective,
        "flow",
        "MeanFlow",
        "run --stage distill (a DDPM model predicts noise or v, not the velocity the MeanFlow identity starts from)",
    )
    from echo_monai.networks.nets import MeanFlowDenoiser

    return MeanFlowDenoiser(student_from_teacher(teacher), gate_init=gate_init)


def reflow_student(teacher: torch.nn.Module, objective: str = "flow") -> torch.nn.Module:
    """The network a reflow fine-tune trains: a trainable copy of the trained flow model ``teacher``, which is frozen
    (:func:`student_from_teacher`) and makes the couplings (:func:`reflow_couplings`). Every bundle's
    ``--stage reflow`` builds its student so.

    Args:
        teacher: the trained velocity (flow-matching) denoiser.
        objective: what the bundle trained ``teacher`` with: only ``"flow"`` has the straight paths reflow
            straightens.

    Raises:
        ValueError: for another objective than flow matching, naming the ``objective`` key.
    """
    _require_objective("reflow_student", objective, "flow", "reflow", "run --stage distill for a few-step DDPM model")
    return student_from_teacher(teacher)


@torch.no_grad()
def reflow_couplings(
    sampler: Callable[..., torch.Tensor],
    network: torch.nn.Module,
    items: Sequence[Mapping[str, Any]],
    shape: Sequence[int],
    conditioning: Conditioning | None = None,
    *,
    image_key: str = "image",
    noise_key: str = "noise",
    batch_size: int = 16,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """Reflow's training pairs (Liu, Gong and Liu, ICLR 2023): for each item (its condition: reference frame, EF,
    label map, ...) one noise ``eps`` and the sample the trained model ``network`` generates from it with ``sampler``
    (its deterministic many-step ODE solve, e.g. ``Sampler(RFlowScheduler(...), 32, solver="euler")``).

    Each returned item is a copy of the input with ``image_key`` set to the teacher's sample and ``noise_key`` to
    ``eps`` (both on the CPU, ``shape``); train on them with ``FlowMatchingPrepareBatch(..., image_key=image_key,
    noise_key=noise_key)`` to straighten the flow (a list of them is a plain MONAI ``Dataset``). Repeat an item in
    ``items`` for several pairs of one condition.

    Args:
        sampler: called as ``sampler(noise, network, condition=..., generator=...)``; a deterministic solver (an ODE
            step rule) gives a coupling, an ancestral one does not.
        network: the trained flow model, put in eval mode.
        items: the conditions, one dict per pair (keys read by ``conditioning``).
        shape: one sample's shape ``(C, [T,] H, W)`` (the latent shape for a latent model).
        conditioning: how the items' keys reach the network (its dropout is not applied here).
        image_key, noise_key: the keys the pairs are stored under.
        batch_size: items sampled per call.
        generator: RNG for the noise, all drawn first (in the order of ``items``, whatever the ``batch_size``).
        device: where the network runs.

    Raises:
        ValueError: for no items, a non-positive ``batch_size``, or a sampler output of another shape than ``shape``.
    """
    if not items or int(batch_size) < 1:
        raise ValueError(
            f"reflow_couplings: expected at least one item and batch_size >= 1, got {len(items)} items and "
            f"batch_size={batch_size}."
        )
    from monai.data import list_data_collate

    conditioning = conditioning if conditioning is not None else Conditioning()
    network.eval()
    couplings: list[dict[str, Any]] = []
    all_noise = torch.randn((len(items), *shape), generator=generator)  # drawn at once: batch_size changes nothing
    for start in range(0, len(items), int(batch_size)):
        chunk = [dict(item) for item in items[start : start + int(batch_size)]]
        noise = all_noise[start : start + len(chunk)]
        condition = conditioning.extract(list_data_collate(chunk), device) if conditioning.is_conditional else None
        samples = sampler(noise.to(device), network, condition=condition, generator=generator).cpu()
        if samples.shape != noise.shape:
            raise ValueError(
                f"reflow_couplings: the sampler gave {tuple(samples.shape)} for noise of shape {tuple(noise.shape)}; "
                f"expected samples of the noise's shape (shape={tuple(shape)} is one sample's)."
            )
        for item, sample, eps in zip(chunk, samples, noise, strict=True):
            couplings.append({**item, image_key: sample, noise_key: eps})
    return couplings


class ConsistencyDistillationPrepareBatch(DenoisingPrepareBatch):
    """Consistency distillation of a DDPM teacher (see the module docstring).

    Args:
        scheduler: the teacher's ``DDPMScheduler`` (its schedule and ``prediction_type``).
        teacher: the trained denoiser, frozen (:func:`student_from_teacher`), called as
            ``teacher(x, timesteps=t, **condition)``.
        student: the network being trained (the one the trainer optimises); a ``v`` predictor.
        conditioning: how batch keys reach both networks (the same, dropped-out, condition for both).
        image_key: batch key of the clean samples.
        num_grid_steps: ``N``, points of the distillation time grid, at most ``T``; None: 50 (latent consistency
            models' choice, a DDIM step of 20 training steps for T = 1000), or ``T`` when smaller.
        clip_sample: clip the teacher's and the target's data predictions to [-1, 1] (False for latents).
        target_network: the network giving the consistency target; None: ``student`` without gradient.
        guidance_scale: classifier-free guidance ``w`` of the teacher's step (1: none); needs a ``conditioning``
            with droppable conditions (their ``null_values`` are the unconditional input).

    Example:
        >>> student = student_from_teacher(teacher)
        >>> prepare = ConsistencyDistillationPrepareBatch(DDPMScheduler(1000, schedule="cosine"), teacher, student)
        >>> trainer = SupervisedTrainer(..., network=student, prepare_batch=prepare, loss_function=MSELoss())
    """

    def __init__(
        self,
        scheduler: Scheduler,
        teacher: Callable[..., torch.Tensor],
        student: Callable[..., torch.Tensor],
        conditioning: Conditioning | None = None,
        image_key: str = "image",
        num_grid_steps: int | None = None,
        clip_sample: bool = True,
        target_network: Callable[..., torch.Tensor] | None = None,
        guidance_scale: float = 1.0,
    ) -> None:
        name = type(self).__name__
        if isinstance(scheduler, RFlowScheduler) or not hasattr(scheduler, "alphas_cumprod"):
            raise TypeError(f"{name}: scheduler must be the teacher's DDPMScheduler, got {type(scheduler).__name__}.")
        super().__init__(scheduler, conditioning, image_key)
        total = int(scheduler.num_train_timesteps)
        num_grid_steps = min(50, total) if num_grid_steps is None else num_grid_steps
        if not 1 <= int(num_grid_steps) <= total:
            raise ValueError(
                f"{name}: num_grid_steps must be in [1, {total}] (num_train_timesteps), got {num_grid_steps}."
            )
        if teacher is student:
            raise ValueError(f"{name}: teacher and student are the same module; make the student with "
                             "student_from_teacher(teacher).")  # fmt: skip
        self.prediction_type = str(getattr(scheduler, "prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"{name}: unsupported scheduler.prediction_type '{self.prediction_type}'.")
        if guidance_scale < 0:
            raise ValueError(f"{name}: guidance_scale must be >= 0, got {guidance_scale}.")
        if guidance_scale != 1.0 and not (self.conditioning.is_conditional and self.conditioning.droppable):
            raise ValueError(
                f"{name}: guidance_scale is {guidance_scale}, but the conditioning has no droppable condition to "
                "guide on; give the teacher's training Conditioning, or guidance_scale 1."
            )
        self.teacher, self.student, self.target_network = teacher, student, target_network
        self.guidance_scale = float(guidance_scale)
        self.num_grid_steps = int(num_grid_steps)
        self.clip_sample = bool(clip_sample)
        # t_n = n T / N - 1 for n = 1 .. N; index 0 stands for the clean data (t = -1, abar = 1)
        grid = torch.arange(0, self.num_grid_steps + 1, dtype=torch.float64) * total / self.num_grid_steps - 1
        self.grid = grid.round().long()

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        """``t_n`` for ``n`` uniform in 1 .. N, per sample."""
        index = torch.randint(1, self.num_grid_steps + 1, (images.shape[0],), device=images.device)
        return self.grid.to(images.device)[index]

    def previous_time(self, timesteps: torch.Tensor) -> torch.Tensor:
        """``t_{n-1}`` of each ``t_n`` (-1: the clean data)."""
        grid = self.grid.to(timesteps.device)
        index = torch.searchsorted(grid, timesteps.long())
        return grid[(index - 1).clamp(min=0)]

    def _scales(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` shaped to broadcast over ``like``; ``t = -1`` is the clean data (1, 0)."""
        abar = self.scheduler.alphas_cumprod.to(like.device, torch.float64)
        values = torch.where(timesteps >= 0, abar[timesteps.clamp(min=0)], torch.ones_like(abar[:1]))
        shape = (-1, *([1] * (like.ndim - 1)))
        return values.sqrt().to(like.dtype).reshape(shape), (1 - values).sqrt().to(like.dtype).reshape(shape)

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(-1.0, 1.0) if self.clip_sample else x0

    @torch.no_grad()
    def teacher_step(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, previous: torch.Tensor, condition: Condition
    ) -> torch.Tensor:
        """The teacher's deterministic DDIM step from ``x_t`` at ``timesteps`` to ``previous`` (-1: clean data), on
        its guided prediction when ``guidance_scale`` is not 1."""
        alpha, sigma = self._scales(timesteps, noisy)
        output = guided_output(self.teacher, noisy, timesteps, condition, self.conditioning, self.guidance_scale)
        x0 = self._clip(data_prediction(output.float(), noisy, alpha, sigma, self.prediction_type))
        eps = (noisy - alpha * x0) / sigma
        alpha_prev, sigma_prev = self._scales(previous, noisy)
        return alpha_prev * x0 + sigma_prev * eps

    @torch.no_grad()
    def consistency_target(self, sample: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        """``f_target(x, t)``: the target network's data prediction (a ``v`` predictor), ``x`` itself at t = -1."""
        network = self.target_network if self.target_network is not None else self.student
        alpha, sigma = self._scales(timesteps, sample)
        output = network(Conditioning.concat_input(sample, condition), timesteps=timesteps.clamp(min=0),
                         **condition.kwargs)  # fmt: skip
        x0 = self._clip(alpha * sample - sigma * output.float())
        boundary = (timesteps < 0).reshape(-1, *([1] * (sample.ndim - 1)))
        return torch.where(boundary, sample, x0)

    def target_and_condition(
        self,
        batchdata: Any,
        images: torch.Tensor,
        noise: torch.Tensor,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        device: str | torch.device | None,
        non_blocking: bool,
    ) -> tuple[torch.Tensor, Condition, dict[str, Any]]:
        condition = self._condition(batchdata, images, device, non_blocking)
        previous = self.previous_time(timesteps)
        stepped = self.teacher_step(noisy, timesteps, previous, condition)
        target_x0 = self.consistency_target(stepped, previous, condition)
        alpha, sigma = self._scales(timesteps, noisy)
        return ((alpha * noisy - target_x0) / sigma).detach(), condition, {}
