"""DPM-Solver++ (1 and 2M): a few-step multistep ODE solver for DDPMs trained with MONAI's ``DDPMScheduler``.

Lu, Zhou, Bao, Chen, Li and Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
2022, https://arxiv.org/abs/2211.01095 (data-prediction form; DPM-Solver++1 is DDIM with eta = 0).

Notation (<variable name> -> <symbol in the paper>)::

    abar[t]          -> alpha-bar_t, MONAI's ``alphas_cumprod``
    alpha[t]         -> alpha_t = sqrt(abar_t)              (signal scale)
    sigma[t]         -> sigma_t = sqrt(1 - abar_t)          (noise scale), so x_t = alpha_t x_0 + sigma_t eps
    log_snr[t]       -> lambda_t = log(alpha_t) - log(sigma_t)   (half log-SNR, increasing as t decreases)
    t, s             -> t_{i-1}, t_i: the current time and the one the step goes to (s < t)
    pred_original    -> x_theta(x_t, t): the data prediction (x_0) made from the network output
    h                -> h_i = lambda_s - lambda_t > 0
    r                -> r_i = h_{i-1} / h_i
    derivative_term  -> D_i (second-order combination of the last two data predictions)

The probability-flow ODE written for the data prediction has the exact solution (variation of constants)::

    x_s = (sigma_s / sigma_t) x_t + sigma_s * integral_{lambda_t}^{lambda_s} e^{lambda} x_theta(x_lambda) d lambda

DPM-Solver++ approximates x_theta in lambda by a polynomial: constant (order 1) or linear through the previous data
prediction (order 2, multistep "2M": one network evaluation per step, the previous one is reused).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from monai.networks.schedulers import Scheduler
from monai.networks.schedulers.ddpm import DDPMPredictionType
from monai.utils import StrEnum

from .parametrisation import data_prediction

__all__ = ["DPMSolverPredictionType", "DPMSolverScheduler", "DPMSolverTimestepSpacing"]

DPMSolverPredictionType = DDPMPredictionType


class DPMSolverTimestepSpacing(StrEnum):
    """How ``num_inference_steps`` evaluation times are placed on the training grid ``0 .. T - 1``.

    All start at ``T - 1`` (the noisiest training time) and leave the final step to the clean-data target:

    - ``quadratic``: ``(T - 1) (1 - i / n)^2``, i = 0 .. n - 1 (999, 809, 639, ..., 40, 10 for T = 1000, n = 10),
      the "quadratic" time steps of DDIM (Song et al. 2021, App. D.2) and DPM-Solver's ``time_quadratic``: steps
      shrink towards low noise, where the trajectories of fine-scale (low-variance) data bend most.
    - ``trailing``: ``T - i T / n - 1`` (999, 899, ..., 99): every step covers ``T / n`` training steps (Lin et al.
      2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed").
    - ``linspace``: ``(T - 1) (1 - i / n)`` (999, 899, ..., 100), the diffusers convention.

    Times are rounded and then kept strictly decreasing (at least one training step apart), so every
    ``n <= T`` is valid.
    """

    QUADRATIC = "quadratic"
    TRAILING = "trailing"
    LINSPACE = "linspace"


def _fractions(num_inference_steps: int) -> torch.Tensor:
    """1 - i / n for i = 0 .. n - 1: the position of each evaluation between the final target (0) and T - 1 (1)."""
    return torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)[:-1]


_SPACINGS: dict[str, Callable[[int, int], torch.Tensor]] = {
    DPMSolverTimestepSpacing.QUADRATIC: lambda train, steps: (train - 1) * _fractions(steps) ** 2,
    DPMSolverTimestepSpacing.TRAILING: lambda train, steps: train * _fractions(steps) - 1,
    DPMSolverTimestepSpacing.LINSPACE: lambda train, steps: (train - 1) * _fractions(steps),
}


def _strictly_decreasing(times: torch.Tensor) -> torch.Tensor:
    """Round descending times to integers at least 1 apart and >= 0 (needs n <= T; a repeated time has h = 0)."""
    rounded = times.round().long().tolist()
    count = len(rounded)
    for i in range(1, count):
        rounded[i] = max(min(rounded[i], rounded[i - 1] - 1), count - 1 - i)
    return torch.tensor(rounded, dtype=torch.long)


class DPMSolverScheduler(Scheduler):
    """Deterministic DPM-Solver++ (order 1 or 2M) sampling for a DDPM trained on MONAI's noise schedules.

    Takes the same schedule as the ``DDPMScheduler`` the network was trained with (``schedule`` and
    ``schedule_args``) and MONAI's scheduler interface, so it drops into :class:`echo_monai.inferers.Sampler`:
    ``set_timesteps(n)`` then ``step(model_output, t, sample)`` for each ``t`` in ``timesteps``. Order 2 keeps
    the previous data prediction between calls; ``set_timesteps`` clears it.

    The network output is converted to a data prediction x_0 (``prediction_type``), optionally clipped, and the
    step is taken in log-SNR. Coefficients are computed in float64 (the cosine schedule has
    ``alphas_cumprod[T - 1]`` near 2e-9) and applied in the sample's dtype.

    Args:
        num_train_timesteps: number of diffusion steps used to train the model.
        schedule: member of MONAI's ``NoiseSchedules`` (``"linear_beta"``, ``"cosine"``, ...), as in training.
        prediction_type: what the network predicts, member of ``DDPMPredictionType``: ``"epsilon"``,
            ``"sample"`` (x_0) or ``"v_prediction"`` (v = alpha_t eps - sigma_t x_0).
        solver_order: 1 (DPM-Solver++1, identical to DDIM with eta = 0) or 2 (DPM-Solver++(2M)).
        lower_order_final: take the last step with order 1. Always the case when ``set_alpha_to_one`` (a step to
            sigma = 0 has h = infinity and order 1 is exact in the data prediction there).
        timestep_spacing: member of :class:`DPMSolverTimestepSpacing`. The default ``"quadratic"`` starts at ``T - 1``
            (pure noise for the cosine schedule) and refines the steps towards low noise; at 10-20 steps it keeps
            the sample std within a few percent for data std 0.1 to 1 where ``"trailing"`` loses up to 50 % at std
            0.1 (``benchmarks/sampler_accuracy.py``).
        set_alpha_to_one: the last step goes to clean data (alpha-bar = 1, sigma = 0), i.e. returns the data
            prediction at the last evaluation time; False stops at ``t = 0`` with ``alphas_cumprod[0]``
            (noise ``sqrt(1 - alphas_cumprod[0])`` left), as MONAI's ``DDIMScheduler(set_alpha_to_one=False)``.
        clip_sample: clip the predicted x_0 to ``clip_sample_values`` (for data in [-1, 1]; False for latents).
        clip_sample_values: (min, max) for ``clip_sample``.
        schedule_args: arguments of the schedule function (e.g. ``beta_start``, ``beta_end``).

    Example:
        >>> scheduler = DPMSolverScheduler(1000, schedule="cosine", prediction_type="v_prediction")
        >>> sampler = Sampler(scheduler, num_inference_steps=20)
        >>> images = sampler(torch.randn(4, 1, 64, 64), network)
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        prediction_type: str = DPMSolverPredictionType.EPSILON,
        solver_order: int = 2,
        lower_order_final: bool = True,
        timestep_spacing: str = DPMSolverTimestepSpacing.QUADRATIC,
        set_alpha_to_one: bool = True,
        clip_sample: bool = True,
        clip_sample_values: tuple[float, float] = (-1.0, 1.0),
        **schedule_args,
    ) -> None:
        name = type(self).__name__
        if int(num_train_timesteps) < 2:
            raise ValueError(f"{name}: num_train_timesteps must be >= 2, got {num_train_timesteps}.")
        if prediction_type not in DPMSolverPredictionType.__members__.values():
            raise ValueError(
                f"{name}: prediction_type must be one of {[p.value for p in DPMSolverPredictionType]}, "
                f"got '{prediction_type}'."
            )
        if solver_order not in (1, 2):
            raise ValueError(f"{name}: solver_order must be 1 or 2, got {solver_order}.")
        if timestep_spacing not in DPMSolverTimestepSpacing.__members__.values():
            raise ValueError(
                f"{name}: timestep_spacing must be one of {[s.value for s in DPMSolverTimestepSpacing]}, "
                f"got '{timestep_spacing}'."
            )
        if len(clip_sample_values) != 2 or not clip_sample_values[0] < clip_sample_values[1]:
            raise ValueError(f"{name}: clip_sample_values must be (min, max) with min < max, got {clip_sample_values}.")
        super().__init__(int(num_train_timesteps), schedule, **schedule_args)

        self.prediction_type = DPMSolverPredictionType(prediction_type)
        self.solver_order = int(solver_order)
        self.lower_order_final = bool(lower_order_final)
        self.timestep_spacing = DPMSolverTimestepSpacing(timestep_spacing)
        self.set_alpha_to_one = bool(set_alpha_to_one)
        self.clip_sample = bool(clip_sample)
        self.clip_sample_values = (float(clip_sample_values[0]), float(clip_sample_values[1]))

        # alpha_t, sigma_t, lambda_t on the training grid, in float64: lambda spans about [-10, 5] for the cosine
        # schedule, whose alphas_cumprod[T - 1] ~ 2e-9 leaves no precision for 1 - abar in float32 arithmetic.
        abar = self.alphas_cumprod.to(torch.float64)
        self._alpha = abar.sqrt()
        self._sigma = (1.0 - abar).sqrt()
        self._log_snr = 0.5 * (abar.log() - torch.log1p(-abar))
        # the point after the last evaluation: clean data (alpha, sigma, lambda) = (1, 0, inf), or t = 0
        self._final = (1.0, 0.0, math.inf) if self.set_alpha_to_one else self._coefficients(0)

        self._previous_index: int | None = None  # index into `timesteps` of the stored data prediction
        self._previous_pred_original: torch.Tensor | None = None
        self.set_timesteps(self.num_train_timesteps)

    def _coefficients(self, timestep: int) -> tuple[float, float, float]:
        """(alpha_t, sigma_t, lambda_t) at a training timestep, as float64 Python numbers."""
        return float(self._alpha[timestep]), float(self._sigma[timestep]), float(self._log_snr[timestep])

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Set ``timesteps`` (descending int64, one network evaluation each) and clear the multistep history.

        Args:
            num_inference_steps: number of steps (= network evaluations), 1 to ``num_train_timesteps``.
            device: device of ``timesteps``.
        """
        steps = int(num_inference_steps)
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(
                f"{type(self).__name__}: num_inference_steps must be in [1, {self.num_train_timesteps}], "
                f"got {num_inference_steps}."
            )
        timesteps = _strictly_decreasing(_SPACINGS[self.timestep_spacing](self.num_train_timesteps, steps))
        self.num_inference_steps = steps
        self.timesteps = timesteps.to(device)
        self._timestep_list = timesteps.tolist()
        self._previous_index = None
        self._previous_pred_original = None

    def step_index(self, timestep: int) -> int:
        """The position of ``timestep`` in ``timesteps``; a time ``set_timesteps`` did not set is refused."""
        if timestep not in self._timestep_list:
            raise ValueError(
                f"{type(self).__name__}: timestep {timestep} is not one of the {self.num_inference_steps} "
                "timesteps set by set_timesteps."
            )
        return self._timestep_list.index(timestep)

    def _pred_original(self, model_output: torch.Tensor, sample: torch.Tensor, alpha: float, sigma: float):
        """The data prediction x_theta(x_t, t) from the network output (x_t = alpha x_0 + sigma eps)."""
        pred_original = data_prediction(model_output, sample, alpha, sigma, self.prediction_type)
        if self.clip_sample:
            pred_original = pred_original.clamp(*self.clip_sample_values)
        return pred_original

    def step(
        self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DPM-Solver++ step from ``timestep`` to the next time of ``timesteps`` (or to the final target).

        Args:
            model_output: network output at (``sample``, ``timestep``), (B, C, [T,] H, W).
            timestep: current time, one of ``timesteps`` (a scalar shared by the batch).
            sample: current x_t, (B, C, [T,] H, W).

        Returns:
            the sample at the next time, and the data prediction x_0 at ``timestep``.
        """
        t = int(timestep)
        index = self.step_index(t)
        last = index == len(self._timestep_list) - 1

        # 1. alpha, sigma, lambda at the current time t and the target s
        alpha_t, sigma_t, lambda_t = self._coefficients(t)
        alpha_s, sigma_s, lambda_s = self._final if last else self._coefficients(self._timestep_list[index + 1])
        h = lambda_s - lambda_t  # h_i > 0; infinite for the step to clean data

        # 2. data prediction x_theta(x_t, t), clipped if asked
        pred_original = self._pred_original(model_output, sample, alpha_t, sigma_t)

        # 3. the data prediction integrated over [lambda_t, lambda_s]: order 1 takes it constant,
        #    D_i = x_theta(t_{i-1}); 2M (Algorithm 2) extrapolates linearly in lambda through the previous one,
        #    D_i = (1 + 1 / (2 r_i)) x_theta(t_{i-1}) - 1 / (2 r_i) x_theta(t_{i-2}),  r_i = h_{i-1} / h_i
        derivative_term = pred_original
        second_order = (
            self.solver_order == 2
            and self._previous_index == index - 1
            and self._previous_pred_original is not None
            and 0.0 < h < math.inf  # h = inf: the step to clean data; h = 0: n = T ends on t = 0 itself
            and not (last and self.lower_order_final)
        )
        if second_order:
            _, _, lambda_previous = self._coefficients(self._timestep_list[index - 1])
            r = (lambda_t - lambda_previous) / h
            derivative_term = pred_original + (pred_original - self._previous_pred_original) / (2.0 * r)

        # 4. x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D_i; -expm1(-h) = 1 - e^{-h} keeps precision for
        #    small h, and for h = inf (sigma_s = 0, alpha_s = 1) the step returns D_i = x_theta(t_{i-1})
        prev_sample = (sigma_s / sigma_t) * sample + (alpha_s * -math.expm1(-h)) * derivative_term

        self._previous_index = index
        self._previous_pred_original = pred_original
        return prev_sample, pred_original
