"""One sampling loop for every denoiser, with classifier-free guidance in one place.

Every network is called as ``network(x, timesteps=t, **condition.kwargs, **kwargs)`` with reference images
concatenated to ``x`` on channels (:class:`echo_monai.engines.Conditioning`). How ``x_t`` moves to the next time is
a *step rule* chosen by the scheduler's kind (:data:`STEP_RULES`, keyed by :class:`SchedulerKind`), not a chain of
type checks in the loop:

- ``ddpm``: MONAI's ``DDPMScheduler.step`` (ancestral; it always steps from t to t - 1, so only every training step
  integrates to a sample);
- ``ddim``: ``DDIMScheduler.step`` (deterministic for ``eta = 0``, strided ancestral for ``eta = 1``);
- ``flow``: ``RFlowScheduler.step`` (Euler) with Heun's second-order correction added here (MONAI has none);
- ``consistency``: a scheduler whose ``step(model_output, timestep, sample, generator)`` draws fresh noise each step
  (:class:`echo_monai.networks.schedulers.ConsistencyScheduler`, for a distilled consistency student);
- ``multistep``: any other scheduler with MONAI's ``step(model_output, timestep, sample)`` interface that keeps its
  own history (e.g. :class:`echo_monai.networks.schedulers.DPMSolverScheduler`).

A new scheduler family registers its kind with :func:`register_scheduler`.

Classifier-free guidance (Ho & Salimans 2022) with scale ``w``::

    f = f_uncond + w * (f_cond - f_uncond)      # w = 1: plain conditional model, w = 0: unconditional

computed from one network call on the doubled batch ``[conditional, unconditional]``
(:func:`echo_monai.engines.guided_output`). Extra network inputs that
are not guided (``kwargs``: tensors, or tuples, lists and dicts of tensors such as precomputed residuals) are
doubled alongside, so both halves see them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler, Scheduler
from monai.utils import StrEnum

from echo_monai.engines.conditioning import Condition, Conditioning, double_batch, guided_output
from echo_monai.networks.schedulers.consistency import ConsistencyScheduler

__all__ = [
    "FlowSolver",
    "seeded_noise",
    "STEP_RULES",
    "Sampler",
    "SchedulerKind",
    "StepRule",
    "double_batch",
    "register_scheduler",
    "scheduler_kind",
]


def seeded_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard normal noise of ``shape`` from its own CPU generator: the same on every device, run and batching
    (the generation pipeline and the study samplers start every item from the noise of its own seed)."""
    return torch.randn(tuple(int(s) for s in shape), generator=torch.Generator().manual_seed(int(seed)))


class FlowSolver(StrEnum):
    """Solvers for flow matching: ``euler`` (1 network evaluation a step), ``heun`` (2, 1 on the last step) and
    ``meanflow`` (1 a step, each step a jump with the average velocity over it: a MeanFlow network, 1-4 steps)."""

    EULER = "euler"
    HEUN = "heun"
    MEANFLOW = "meanflow"


class SchedulerKind(StrEnum):
    """How a scheduler's ``step`` is driven (see the module docstring)."""

    DDPM = "ddpm"
    DDIM = "ddim"
    FLOW = "flow"
    CONSISTENCY = "consistency"
    MULTISTEP = "multistep"


#: scheduler class -> kind, looked up along the scheduler's MRO (a subclass inherits its parent's kind)
_SCHEDULER_KINDS: dict[type, SchedulerKind] = {
    ConsistencyScheduler: SchedulerKind.CONSISTENCY,
    RFlowScheduler: SchedulerKind.FLOW,
    DDIMScheduler: SchedulerKind.DDIM,
    DDPMScheduler: SchedulerKind.DDPM,
}


def register_scheduler(scheduler_class: type, kind: str) -> None:
    """Declare how :class:`Sampler` drives a scheduler class (and its subclasses).

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in SchedulerKind.__members__.values():
        raise ValueError(f"register_scheduler: kind must be one of {[k.value for k in SchedulerKind]}, got '{kind}'.")
    _SCHEDULER_KINDS[scheduler_class] = SchedulerKind(kind)


def scheduler_kind(scheduler: Scheduler) -> SchedulerKind:
    """The kind of ``scheduler``: the registered kind of the nearest class in its MRO, else ``multistep``."""
    for cls in type(scheduler).__mro__:
        if cls in _SCHEDULER_KINDS:
            return _SCHEDULER_KINDS[cls]
    return SchedulerKind.MULTISTEP


@dataclass
class _Trajectory:
    """What a step rule may need besides ``x_t`` and the network output at it."""

    network: Callable[..., torch.Tensor]
    condition: Condition
    timesteps: torch.Tensor
    generator: torch.Generator | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


class StepRule(NamedTuple):
    """How one scheduler kind sets its time grid and moves ``x_t`` to the next time.

    Attributes:
        set_timesteps: ``(scheduler, num_inference_steps, device, sample_shape)``; ``sample_shape`` is the spatial
            shape of a sample (RFlowScheduler shifts its grid by resolution).
        step: ``(sampler, trajectory, i, x, output) -> x_next`` for the ``i``-th time of ``trajectory.timesteps``.
    """

    set_timesteps: Callable[[Scheduler, int, torch.device, tuple[int, ...]], None]
    step: Callable[[Sampler, _Trajectory, int, torch.Tensor, torch.Tensor], torch.Tensor]


def _set_timesteps(scheduler: Scheduler, steps: int, device: torch.device, sample_shape: tuple[int, ...]) -> None:
    scheduler.set_timesteps(steps, device=device)


def _set_flow_timesteps(scheduler: Scheduler, steps: int, device: torch.device, sample_shape: tuple[int, ...]) -> None:
    numel = 1
    for size in sample_shape:
        numel *= int(size)
    scheduler.set_timesteps(steps, device=device, input_img_size_numel=numel)


def _stochastic_step(
    sampler: Sampler, path: _Trajectory, i: int, x: torch.Tensor, output: torch.Tensor
) -> torch.Tensor:
    """A step that draws its noise from the trajectory's generator (DDPM ancestral, consistency)."""
    return sampler.scheduler.step(output, path.timesteps[i], x, generator=path.generator)[0]


def _ddim_step(sampler: Sampler, path: _Trajectory, i: int, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    return sampler.scheduler.step(output, path.timesteps[i], x, eta=sampler.eta, generator=path.generator)[0]


def _multistep_step(sampler: Sampler, path: _Trajectory, i: int, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    return sampler.scheduler.step(output, path.timesteps[i], x)[0]


def _next_time(path: _Trajectory, i: int) -> torch.Tensor:
    """The time after the ``i``-th of ``path.timesteps`` (0 after the last: the data)."""
    t = path.timesteps[i]
    return path.timesteps[i + 1] if i + 1 < len(path.timesteps) else torch.zeros_like(t)


def _flow_step(sampler: Sampler, path: _Trajectory, i: int, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Euler: ``x_next = x + u(x, t) dt``; Heun: ``x + (u(x, t) + u(x_euler, t_next)) dt / 2``, ``dt = (t - t_next)/T``
    (no correction on the last step, which ends at t = 0); MeanFlow: the Euler formula with the network's average
    velocity over ``[t_next, t]`` (``r_timesteps = t_next``), which is exact for a perfect MeanFlow network."""
    t = path.timesteps[i]
    next_t = _next_time(path, i)
    x_euler = sampler.scheduler.step(output, t, x, next_t)[0]
    if sampler.solver != FlowSolver.HEUN or float(next_t) <= 0:
        return x_euler
    velocity_next = sampler.predict(path.network, x_euler, next_t, path.condition, **path.kwargs)
    dt = (t.float() - next_t.float()) / float(sampler.scheduler.num_train_timesteps)
    return x + 0.5 * (output + velocity_next) * dt


#: the step rule of every scheduler kind
STEP_RULES: dict[SchedulerKind, StepRule] = {
    SchedulerKind.DDPM: StepRule(_set_timesteps, _stochastic_step),
    SchedulerKind.DDIM: StepRule(_set_timesteps, _ddim_step),
    SchedulerKind.FLOW: StepRule(_set_flow_timesteps, _flow_step),
    SchedulerKind.CONSISTENCY: StepRule(_set_timesteps, _stochastic_step),
    SchedulerKind.MULTISTEP: StepRule(_set_timesteps, _multistep_step),
}


class Sampler(Inferer):
    """Generate samples from noise with a MONAI scheduler, a denoiser and optional classifier-free guidance.

    A MONAI ``Inferer``: use it as the ``inferer`` of a ``SupervisedEvaluator`` together with
    :class:`echo_monai.engines.SamplingPrepareBatch`, or call it directly. ControlNet-guided models are sampled by
    passing an :class:`echo_monai.inferers.ControlNetDenoiser` as the network.

    Args:
        scheduler: ``DDPMScheduler``, ``DDIMScheduler`` or ``RFlowScheduler`` (the one the network was trained with,
            or a DDIM scheduler with the same betas), or another scheduler with MONAI's ``set_timesteps(n, device)``
            and ``step(model_output, timestep, sample) -> (prev_sample, pred_original)`` interface.
        num_inference_steps: number of steps; None keeps the scheduler's ``num_train_timesteps``.
        guidance_scale: CFG scale ``w``; 1 disables guidance.
        conditioning: the training ``Conditioning``; it defines the unconditional input for guidance.
        solver: flow-matching solver, ``"euler"``, ``"heun"`` or ``"meanflow"`` (a
            :class:`echo_monai.networks.nets.MeanFlowDenoiser`, given ``r_timesteps``; ignored for other kinds).
        eta: DDIM stochasticity (0 = deterministic DDIM).
        clip_range: clamp the final sample to this range (model space is [-1, 1]); None to leave it.
        progress: show a tqdm bar over the steps.

    Example:
        >>> sampler = Sampler(DDIMScheduler(1000, schedule="cosine"), num_inference_steps=50, guidance_scale=2.0,
        ...                   conditioning=Conditioning({"class_labels": "view"}, null_values={"class_labels": 2}))
        >>> images = sampler(torch.randn(4, 1, 64, 64), network, condition=Condition({"class_labels": views}))
    """

    def __init__(
        self,
        scheduler: Scheduler,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        conditioning: Conditioning | None = None,
        solver: str = FlowSolver.EULER,
        eta: float = 0.0,
        clip_range: tuple[float, float] | None = (-1.0, 1.0),
        progress: bool = False,
    ) -> None:
        super().__init__()
        if not all(hasattr(scheduler, a) for a in ("set_timesteps", "step", "num_train_timesteps")):
            raise TypeError(
                "Sampler: scheduler must be a MONAI scheduler (DDPMScheduler, DDIMScheduler, RFlowScheduler) or one "
                f"with set_timesteps/step/num_train_timesteps, got {type(scheduler).__name__}."
            )
        steps = int(scheduler.num_train_timesteps) if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= steps <= int(scheduler.num_train_timesteps):
            raise ValueError(
                f"Sampler: num_inference_steps must be in [1, {scheduler.num_train_timesteps}], "
                f"got {num_inference_steps}."
            )
        self.kind = scheduler_kind(scheduler)
        if self.kind == SchedulerKind.DDPM and steps < int(scheduler.num_train_timesteps):
            warnings.warn(
                f"Sampler: MONAI's DDPMScheduler.step always steps from t to t - 1, so {steps} of "
                f"{scheduler.num_train_timesteps} steps do not integrate to a sample; for strided ancestral sampling "
                "use DDIMScheduler with the same betas and eta=1.0.",
                stacklevel=2,
            )
        if guidance_scale < 0:
            raise ValueError(f"Sampler: guidance_scale must be >= 0, got {guidance_scale}.")
        if solver not in FlowSolver.__members__.values():
            raise ValueError(f"Sampler: solver must be one of {[s.value for s in FlowSolver]}, got '{solver}'.")
        if eta < 0:
            raise ValueError(f"Sampler: eta must be >= 0, got {eta}.")
        self.scheduler = scheduler
        self.num_inference_steps = steps
        self.guidance_scale = float(guidance_scale)
        self.conditioning = conditioning if conditioning is not None else Conditioning()
        self.solver = FlowSolver(solver)
        self.eta = float(eta)
        self.clip_range = tuple(clip_range) if clip_range is not None else None
        self.progress = progress

    @property
    def network_evaluations(self) -> int:
        """Network evaluations per sample (a guided evaluation counts once: both halves run in one batch)."""
        if self.kind == SchedulerKind.FLOW and self.solver == FlowSolver.HEUN:
            return 2 * self.num_inference_steps - 1
        return self.num_inference_steps

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
        clip: bool = True,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Integrate from the noise ``inputs`` (B, C, [T,] H, W) to a sample of the same shape.

        Args:
            inputs: initial Gaussian noise.
            network: the denoiser (or a denoiser wrapper: ControlNet, temporal windows, context embedding).
            condition: conditioning of the batch (None for an unconditional model).
            generator: RNG for the stochastic DDPM/DDIM steps.
            clip: apply ``clip_range`` (a latent wrapper passes False and clips the decoded pixels instead).
            kwargs: extra network keyword arguments that are never guided (tensors or nested containers of them).
        """
        # 1. the time grid of this scheduler kind
        rule = STEP_RULES[self.kind]
        rule.set_timesteps(self.scheduler, self.num_inference_steps, inputs.device, tuple(inputs.shape[2:]))
        path = _Trajectory(
            network, condition if condition is not None else Condition(), self.scheduler.timesteps, generator, kwargs
        )
        x = inputs
        meanflow = self.kind == SchedulerKind.FLOW and self.solver == FlowSolver.MEANFLOW
        for i in self._steps(len(path.timesteps)):
            # 2. the (guided) network output at x_t (MeanFlow: the average velocity over [t_next, t])
            extra = {"r_timesteps": _next_time(path, i).reshape(1).expand(x.shape[0])} if meanflow else {}
            output = self.predict(network, x, path.timesteps[i], path.condition, **kwargs, **extra)
            # 3. x_t -> x_{t_next} by the step rule
            x = rule.step(self, path, i, x, output)
        # 4. clip to the model range
        if clip and self.clip_range is not None:
            x = x.clamp(*self.clip_range)
        return x

    def predict(
        self,
        network: Callable[..., torch.Tensor],
        x: torch.Tensor,
        t: torch.Tensor,
        condition: Condition,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The (guided) network output at ``x``, time ``t``, through :func:`echo_monai.engines.guided_output` (the one
        place classifier-free guidance happens; a guided distillation teacher uses it too)."""
        timesteps = torch.as_tensor(t, device=x.device).reshape(1).expand(x.shape[0])
        return guided_output(network, x, timesteps, condition, self.conditioning, self.guidance_scale, **kwargs)

    def _steps(self, n: int):
        if not self.progress:
            return range(n)
        from tqdm.auto import tqdm

        return tqdm(range(n), desc="sampling", leave=False)
