"""Multistep consistency sampling (Song et al., "Consistency Models", ICML 2023, Algorithm 1) for a student distilled
with :class:`echo_monai.engines.ConsistencyDistillationPrepareBatch`.

A consistency model maps any ``x_t`` to the end of its probability-flow trajectory, ``x_0 = f(x_t, t)``. One step
returns ``f`` at ``T - 1``. Each further step noises that sample afresh to the next, lower time,
``x_s = alpha_s x_0 + sigma_s z`` with new noise ``z``, and applies ``f`` again. The noise has to be new: DDIM's
deterministic step re-uses the noise implied by ``x_t``, which for a consistency model (whose ``x_0`` is a function
of that very noise, not the posterior mean) over-disperses the sample. For exact Gaussian data two DDIM steps gave a
standard deviation 35 % too large (``tests/engines/test_distillation.py``).
"""

from __future__ import annotations

import torch

from .dpm_solver import DPMSolverScheduler, DPMSolverTimestepSpacing

__all__ = ["ConsistencyScheduler"]


class ConsistencyScheduler(DPMSolverScheduler):
    """Consistency sampling on a DDPM noise schedule, in MONAI's scheduler interface.

    ``set_timesteps(n)`` places the ``n`` evaluations (default ``"trailing"``: 999; 999, 499; 999, 749, 499, 249
    for T = 1000), ``step(model_output, t, sample, generator)`` returns the next sample and the data prediction. The
    student predicts ``v`` (the default ``prediction_type``); see
    :class:`echo_monai.engines.ConsistencyDistillationPrepareBatch`. :class:`echo_monai.inferers.Sampler` passes
    its ``generator`` (the generation pipeline's per-item seed), so samples are reproducible.

    Args:
        num_train_timesteps: the teacher's number of diffusion steps.
        schedule: the teacher's MONAI noise schedule (``"cosine"``, ``"linear_beta"``, ...).
        prediction_type: what the student predicts (``"v_prediction"``; ``"epsilon"`` or ``"sample"`` also read).
        timestep_spacing: member of :class:`echo_monai.networks.schedulers.DPMSolverTimestepSpacing`.
        clip_sample: clip the data predictions to ``clip_sample_values``.
        clip_sample_values: (min, max) for ``clip_sample``.
        schedule_args: arguments of the schedule function.

    Example:
        >>> scheduler = ConsistencyScheduler(1000, schedule="cosine")
        >>> images = Sampler(scheduler, num_inference_steps=2)(torch.randn(4, 1, 112, 112), student, condition=c)
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        prediction_type: str = "v_prediction",
        timestep_spacing: str = DPMSolverTimestepSpacing.TRAILING,
        clip_sample: bool = True,
        clip_sample_values: tuple[float, float] = (-1.0, 1.0),
        **schedule_args,
    ) -> None:
        super().__init__(num_train_timesteps, schedule, prediction_type, solver_order=1,
                         timestep_spacing=timestep_spacing, set_alpha_to_one=True, clip_sample=clip_sample,
                         clip_sample_values=clip_sample_values, **schedule_args)  # fmt: skip

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The data prediction at ``timestep``, noised afresh to the next time (returned as is after the last)."""
        t = int(timestep)
        index = self.step_index(t)
        alpha_t, sigma_t, _ = self._coefficients(t)
        pred_original = self._pred_original(model_output, sample, alpha_t, sigma_t)
        if index == len(self._timestep_list) - 1:
            return pred_original, pred_original
        alpha_s, sigma_s, _ = self._coefficients(self._timestep_list[index + 1])
        device = generator.device if generator is not None else sample.device
        noise = torch.randn(sample.shape, generator=generator, device=device, dtype=sample.dtype).to(sample.device)
        return alpha_s * pred_original + sigma_s * noise, pred_original
