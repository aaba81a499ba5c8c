"""One sampling loop for every denoiser, with classifier-free guidance in one place.

Every network is called as ``network(x, timesteps=t, **condition.kwargs)`` with reference images concatenated to
``x`` on channels (:class:`echo_monai.engines.Conditioning`). The time stepping is MONAI's: ``DDPMScheduler.step``
(ancestral, every training step only: it always steps from t to t - 1), ``DDIMScheduler.step`` (deterministic for
``eta = 0``, strided ancestral for ``eta = 1``) and ``RFlowScheduler.step`` (Euler); Heun's
second-order correction for flow matching is added here because MONAI has none.

Classifier-free guidance (Ho & Salimans 2022) with scale ``w``::

    f = f_uncond + w * (f_cond - f_uncond)      # w = 1: plain conditional model, w = 0: unconditional

computed from one network call on the doubled batch ``[conditional, unconditional]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler, Scheduler
from monai.utils import StrEnum

from echo_monai.engines.conditioning import Condition, Conditioning

__all__ = ["Sampler", "FlowSolver"]


class FlowSolver(StrEnum):
    """ODE solvers for flow matching: ``euler`` (1 network evaluation a step) and ``heun`` (2, 1 on the last step)."""

    EULER = "euler"
    HEUN = "heun"


class Sampler(Inferer):
    """Generate samples from noise with a MONAI scheduler, a denoiser and optional classifier-free guidance.

    A MONAI ``Inferer``: use it as the ``inferer`` of a ``SupervisedEvaluator`` together with
    :class:`echo_monai.engines.SamplingPrepareBatch`, or call it directly.

    Args:
        scheduler: ``DDPMScheduler``, ``DDIMScheduler`` or ``RFlowScheduler`` (the one the network was trained with,
            or a DDIM scheduler with the same betas), or another scheduler with MONAI's ``set_timesteps(n, device)``
            and ``step(model_output, timestep, sample) -> (prev_sample, pred_original)`` interface.
        num_inference_steps: number of steps; None keeps the scheduler's ``num_train_timesteps``.
        guidance_scale: CFG scale ``w``; 1 disables guidance.
        conditioning: the training ``Conditioning``; it defines the unconditional input for guidance.
        solver: flow-matching solver, ``"euler"`` or ``"heun"`` (ignored for DDPM/DDIM).
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
        if isinstance(scheduler, DDPMScheduler) and steps < int(scheduler.num_train_timesteps):
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
        if isinstance(self.scheduler, RFlowScheduler) and self.solver == FlowSolver.HEUN:
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
            network: the denoiser.
            condition: conditioning of the batch (None for an unconditional model).
            generator: RNG for the stochastic DDPM/DDIM steps.
            clip: apply ``clip_range`` (a latent wrapper passes False and clips the decoded pixels instead).
            kwargs: extra network keyword arguments that are never guided (e.g. ControlNet residuals).
        """
        condition = condition if condition is not None else Condition()
        device = inputs.device
        if isinstance(self.scheduler, RFlowScheduler):
            self.scheduler.set_timesteps(
                self.num_inference_steps, device=device, input_img_size_numel=int(torch.tensor(inputs.shape[2:]).prod())
            )
        else:
            self.scheduler.set_timesteps(self.num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        x = inputs
        for i in self._steps(len(timesteps)):
            t = timesteps[i]
            output = self.predict(network, x, t, condition, **kwargs)
            if isinstance(self.scheduler, RFlowScheduler):
                next_t = timesteps[i + 1] if i + 1 < len(timesteps) else torch.zeros_like(t)
                x = self._flow_step(network, x, t, next_t, output, condition, **kwargs)
            elif isinstance(self.scheduler, DDIMScheduler):
                x, _ = self.scheduler.step(output, t, x, eta=self.eta, generator=generator)
            elif isinstance(self.scheduler, DDPMScheduler):
                x, _ = self.scheduler.step(output, t, x, generator=generator)
            else:  # deterministic multistep solvers (echo_monai.networks.schedulers) keep their own history
                x, _ = self.scheduler.step(output, t, x)
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
        """The (guided) network output at ``x``, time ``t``: the one place classifier-free guidance happens."""
        batch = x.shape[0]
        guided = self.guidance_scale != 1.0 and bool(condition)
        if guided:
            condition = condition.cat(self.conditioning.null(condition))
            x = torch.cat([x, x], dim=0)
            kwargs = {k: torch.cat([v, v], dim=0) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        timesteps = t.reshape(1).to(x.device).expand(x.shape[0])
        output = network(Conditioning.concat_input(x, condition), timesteps=timesteps, **condition.kwargs, **kwargs)
        if not guided:
            return output
        cond, uncond = output[:batch], output[batch:]
        return uncond + self.guidance_scale * (cond - uncond)

    def _flow_step(
        self,
        network: Callable[..., torch.Tensor],
        x: torch.Tensor,
        t: torch.Tensor,
        next_t: torch.Tensor,
        velocity: torch.Tensor,
        condition: Condition,
        **kwargs: Any,
    ) -> torch.Tensor:
        x_euler, _ = self.scheduler.step(velocity, t, x, next_t)
        if self.solver == FlowSolver.EULER or float(next_t) <= 0:
            return x_euler
        # Heun: average the velocity at both ends of the step (trapezoidal rule), dt = (t - t_next) / T
        velocity_next = self.predict(network, x_euler, next_t, condition, **kwargs)
        dt = (t.float() - next_t.float()) / float(self.scheduler.num_train_timesteps)
        return x + 0.5 * (velocity + velocity_next) * dt

    def _steps(self, n: int):
        if not self.progress:
            return range(n)
        from tqdm.auto import tqdm

        return tqdm(range(n), desc="sampling", leave=False)
