"""One ``PrepareBatch`` per training objective, for MONAI's stock ``SupervisedTrainer``.

Each class turns a batch of clean samples into ``(network_input, target, (), {"timesteps": t, **conditioning})``:
the noisy sample (with reference images concatenated on channels), the regression target of the objective, and
the network keyword arguments. The trainer's inferer is then MONAI's plain ``SimpleInferer``, which calls
``network(network_input, timesteps=t, **conditioning)``, and the loss is a plain ``MSELoss``.

They extend MONAI's ``DiffusionPrepareBatch`` through its template hooks (``get_noise``, ``get_timesteps``,
``get_target``), so a new objective overrides one hook.

Notation (DDPM, Ho et al. 2020; v-prediction, Salimans & Ho 2022), with ``abar_t`` = ``scheduler.alphas_cumprod[t]``::

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps            (scheduler.add_noise)
    v   = sqrt(abar_t) * eps - sqrt(1 - abar_t) * x_0            (scheduler.get_velocity)

Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) in MONAI's ``RFlowScheduler`` convention,
``s = t / T`` running from 1 (noise) to 0 (data)::

    x_s = (1 - s) * x_0 + s * eps,      target u = x_0 - eps      (the velocity towards the data)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch
from monai.networks.schedulers import RFlowScheduler, Scheduler

from echo_monai.engines.conditioning import Condition, Conditioning

__all__ = ["DenoisingPrepareBatch", "DDPMPrepareBatch", "FlowMatchingPrepareBatch", "SamplingPrepareBatch"]


def _fetch(batchdata: Any, key: str, owner: str) -> torch.Tensor:
    if isinstance(batchdata, Mapping):
        if key not in batchdata:
            raise KeyError(f"{owner}: batch key '{key}' is missing; the batch has {sorted(batchdata)}.")
        return torch.as_tensor(batchdata[key])
    if isinstance(batchdata, torch.Tensor):
        return batchdata
    raise TypeError(f"{owner}: expected a dict batch or a tensor, got {type(batchdata).__name__}.")


class DenoisingPrepareBatch(DiffusionPrepareBatch):
    """Base: noise a clean batch with ``scheduler.add_noise`` and place the conditioning.

    Args:
        scheduler: the MONAI scheduler whose forward process and timestep range the network learns.
        conditioning: how batch keys reach the network; its ``dropout`` drives CFG condition dropout.
        image_key: batch key of the clean samples ``(B, C, H, W)`` or ``(B, C, T, H, W)`` (``"latent"`` for a latent
            cache).
    """

    def __init__(
        self, scheduler: Scheduler, conditioning: Conditioning | None = None, image_key: str = "image"
    ) -> None:
        if not hasattr(scheduler, "add_noise"):
            raise TypeError(
                f"{type(self).__name__}: scheduler must be a MONAI scheduler, got {type(scheduler).__name__}."
            )
        super().__init__(num_train_timesteps=int(scheduler.num_train_timesteps))
        self.scheduler = scheduler
        self.conditioning = conditioning if conditioning is not None else Conditioning()
        self.image_key = image_key

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(images)

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images = _fetch(batchdata, self.image_key, type(self).__name__).to(device, non_blocking=non_blocking).float()
        noise = self.get_noise(images)
        timesteps = self.get_timesteps(images).to(images.device)
        target = self.get_target(images, noise, timesteps)
        noisy = self.scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
        condition = self._condition(batchdata, images, device, non_blocking)
        return Conditioning.concat_input(noisy, condition), target, (), {"timesteps": timesteps, **condition.kwargs}

    def _condition(
        self, batchdata: Any, images: torch.Tensor, device: str | torch.device | None, non_blocking: bool
    ) -> Condition:
        if not self.conditioning.is_conditional:
            return Condition()
        condition = self.conditioning.extract(batchdata, device, non_blocking)
        mask = self.conditioning.dropout_mask(images.shape[0], images.device)
        return condition if mask is None else self.conditioning.drop(condition, mask)


class DDPMPrepareBatch(DenoisingPrepareBatch):
    """DDPM objective whose target follows ``scheduler.prediction_type``: ``epsilon`` (noise), ``v_prediction`` or
    ``sample`` (x_0). Training and sampling share the scheduler, so they cannot disagree on the parametrisation.

    Example:
        >>> scheduler = DDPMScheduler(1000, schedule="cosine", prediction_type="v_prediction")
        >>> trainer = SupervisedTrainer(..., prepare_batch=DDPMPrepareBatch(scheduler), loss_function=MSELoss())
    """

    def __init__(
        self, scheduler: Scheduler, conditioning: Conditioning | None = None, image_key: str = "image"
    ) -> None:
        if isinstance(scheduler, RFlowScheduler) or not hasattr(scheduler, "alphas_cumprod"):
            raise TypeError(
                f"DDPMPrepareBatch: scheduler must be a DDPM-family scheduler (DDPMScheduler, DDIMScheduler), "
                f"got {type(scheduler).__name__}; use FlowMatchingPrepareBatch with RFlowScheduler."
            )
        super().__init__(scheduler, conditioning, image_key)
        self.prediction_type = str(getattr(scheduler, "prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"DDPMPrepareBatch: unsupported scheduler.prediction_type '{self.prediction_type}'.")

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(images, noise, timesteps)
        return images


class FlowMatchingPrepareBatch(DenoisingPrepareBatch):
    """Flow-matching (rectified-flow) velocity objective on MONAI's ``RFlowScheduler``.

    Training times come from ``scheduler.sample_timesteps``: uniform, or logit-normal (Esser et al. 2024) with
    ``RFlowScheduler(sample_method="logit-normal", loc=..., scale=...)``. The target is ``x_0 - eps``, which is what
    ``RFlowScheduler.step`` integrates from noise (t = T) to data (t = 0).

    Example:
        >>> scheduler = RFlowScheduler(1000, use_discrete_timesteps=False, sample_method="logit-normal")
        >>> trainer = SupervisedTrainer(..., prepare_batch=FlowMatchingPrepareBatch(scheduler), loss_function=MSELoss())
    """

    def __init__(
        self, scheduler: Scheduler, conditioning: Conditioning | None = None, image_key: str = "image"
    ) -> None:
        if not isinstance(scheduler, RFlowScheduler):
            raise TypeError(
                f"FlowMatchingPrepareBatch: scheduler must be an RFlowScheduler, got {type(scheduler).__name__}."
            )
        super().__init__(scheduler, conditioning, image_key)

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        return self.scheduler.sample_timesteps(images)

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return images - noise


class SamplingPrepareBatch:
    """``PrepareBatch`` for generation with ``SupervisedEvaluator``: initial noise plus the batch's conditioning.

    The evaluator then calls its inferer (a :class:`echo_monai.inferers.Sampler`) as
    ``sampler(noise, network, condition=condition)``.

    Args:
        conditioning: the same object the training ``PrepareBatch`` used.
        sample_shape: ``(C, H, W)`` or ``(C, T, H, W)`` of one sample; or None to take the spatial size of
            ``like_key`` with ``channels`` channels.
        like_key: batch key whose spatial size (and batch size) the samples follow, e.g. the label map.
        channels: channels of the samples when ``sample_shape`` is None.
        seed: seed of the noise generator (CPU generator, so samples do not depend on the device); None for random.
        decoder_condition: decoder argument -> batch key, passed to a latent sampler as ``decoder_condition`` (an
            image-to-video decoder's ``first_frame``).

    Example:
        >>> prep = SamplingPrepareBatch(Conditioning({"seg": "label_map"}), like_key="label_map", channels=1, seed=0)
        >>> evaluator = SupervisedEvaluator(..., prepare_batch=prep, inferer=Sampler(scheduler, 50))
    """

    def __init__(
        self,
        conditioning: Conditioning | None = None,
        sample_shape: tuple[int, ...] | list[int] | None = None,
        like_key: str | None = None,
        channels: int = 1,
        seed: int | None = None,
        decoder_condition: Mapping[str, str] | None = None,
    ) -> None:
        if sample_shape is None and like_key is None:
            raise ValueError("SamplingPrepareBatch: give sample_shape or like_key.")
        if sample_shape is not None and len(sample_shape) not in (3, 4):
            raise ValueError(
                f"SamplingPrepareBatch: sample_shape must be (C, H, W) or (C, T, H, W), got {sample_shape}."
            )
        self.conditioning = conditioning if conditioning is not None else Conditioning()
        self.sample_shape = tuple(int(s) for s in sample_shape) if sample_shape is not None else None
        self.like_key = like_key
        self.channels = int(channels)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.decoder_condition = dict(decoder_condition or {})

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, None, tuple, dict]:
        if self.like_key is not None:
            like = _fetch(batchdata, self.like_key, "SamplingPrepareBatch")
            shape = (like.shape[0], *(self.sample_shape or (self.channels, *like.shape[2:])))
        else:
            size = _batch_size(batchdata)
            shape = (size, *self.sample_shape)  # type: ignore[misc]
        noise = torch.randn(shape, generator=self.generator).to(device, non_blocking=non_blocking)
        condition = (
            self.conditioning.extract(batchdata, device, non_blocking)
            if self.conditioning.is_conditional
            else Condition()
        )
        kwargs = {"condition": condition}
        if self.decoder_condition:
            kwargs["decoder_condition"] = {
                argument: _fetch(batchdata, key, "SamplingPrepareBatch").float().to(device, non_blocking=non_blocking)
                for argument, key in self.decoder_condition.items()
            }
        return noise, None, (), kwargs


def _batch_size(batchdata: Any) -> int:
    if isinstance(batchdata, Mapping):
        for value in batchdata.values():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                return int(value.shape[0])
            if isinstance(value, (list, tuple)):
                return len(value)
    raise ValueError("SamplingPrepareBatch: cannot infer the batch size; give like_key.")
