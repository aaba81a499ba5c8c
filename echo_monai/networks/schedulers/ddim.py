"""DDIM whose noise estimate agrees with the clipped data prediction.

Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. (12)::

    x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,   sigma = eta * sigma_DDIM

with ``x0`` and ``eps`` the data and noise predictions at ``x_t``, tied by ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t)
eps``. MONAI's ``DDIMScheduler`` clips ``x0`` to ``clip_sample_values`` but keeps the ``eps`` of the unclipped
prediction, so the two no longer describe the same ``x_t``: the step moves towards the clipped image while keeping
the noise of the unclipped one. This subclass recomputes ``eps`` from the clipped ``x0``,
``eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)`` (as diffusers' DDIM does when it clips or thresholds); with
``eta = 0`` it is then the first-order DPM-Solver++ step on the same grid. Without clipping, or when nothing is
clipped, it is MONAI's step exactly.

On the hard CAMUS phantom (``benchmarks/seg_ddpm_samplers.py``, 6 paired runs) MONAI's DDIM-50 trained the downstream
segmentation 1.4 ± 0.5 Dice points below DDPM-1000; this one -0.2 ± 0.7.
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler as MonaiDDIMScheduler
from monai.networks.schedulers.ddim import DDIMPredictionType

from .parametrisation import data_prediction

__all__ = ["DDIMScheduler"]


class DDIMScheduler(MonaiDDIMScheduler):
    """MONAI's ``DDIMScheduler`` with the noise estimate recomputed from the clipped data prediction.

    Same arguments and interface as MONAI's (``set_timesteps``, ``step(model_output, timestep, sample, eta,
    generator)``), so it drops into :class:`echo_monai.inferers.Sampler` and bundle configs unchanged.

    Example:
        >>> scheduler = DDIMScheduler(1000, schedule="cosine", prediction_type="v_prediction")
        >>> images = Sampler(scheduler, num_inference_steps=50)(torch.randn(4, 1, 64, 64), network)
    """

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step from ``timestep`` (see the module docstring); returns ``(x_prev, x0)``."""
        if not self.clip_sample:
            return super().step(model_output, timestep, sample, eta, generator)
        # 1. the data prediction x0 at x_t, clipped
        t = int(timestep)
        abar_t = self.alphas_cumprod[t].to(sample.device, sample.dtype)
        signal, noise_scale = abar_t.sqrt(), (1.0 - abar_t).sqrt()
        pred_original = data_prediction(model_output, sample, signal, noise_scale, self.prediction_type)
        pred_original = pred_original.clamp(*self.clip_sample_values)
        # 2. the noise that, with the clipped x0, makes x_t: the model output of an eps-model that agrees with it
        pred_epsilon = (sample - signal * pred_original) / noise_scale
        prediction_type = self.prediction_type
        self.prediction_type = DDIMPredictionType.EPSILON  # MONAI's step then recovers the clipped x0 from it
        try:
            return super().step(pred_epsilon, timestep, sample, eta, generator)
        finally:
            self.prediction_type = prediction_type
