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

MeanFlow (Geng et al. 2025) in the same convention: the average velocity ``u(z_s, r, s)`` over ``[r, s]``
(``r <= s``) moves ``z_r = z_s + (s - r) u``, and satisfies ``u = v - (s - r) du/ds`` with ``v = x_0 - eps`` and the
total derivative ``du/ds = (eps - x_0) . d_z u + d_s u`` along the path (a Jacobian-vector product).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch
from monai.networks.schedulers import RFlowScheduler, Scheduler

from echo_monai.engines.conditioning import Condition, Conditioning

__all__ = [
    "DenoisingPrepareBatch",
    "DDPMPrepareBatch",
    "FlowMatchingPrepareBatch",
    "MeanFlowPrepareBatch",
    "SamplingPrepareBatch",
]


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
        noise_key: batch key of the noise paired with each sample (a coupling: reflow's teacher pairs, see
            :func:`echo_monai.engines.reflow_couplings`); None: fresh Gaussian noise (``get_noise``) per batch.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        conditioning: Conditioning | None = None,
        image_key: str = "image",
        noise_key: str | None = None,
    ) -> None:
        if not hasattr(scheduler, "add_noise"):
            raise TypeError(
                f"{type(self).__name__}: scheduler must be a MONAI scheduler, got {type(scheduler).__name__}."
            )
        super().__init__(num_train_timesteps=int(scheduler.num_train_timesteps))
        self.scheduler = scheduler
        self.conditioning = conditioning if conditioning is not None else Conditioning()
        self.image_key = image_key
        self.noise_key = noise_key

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(images)

    def paired_noise(self, batchdata: Any, images: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
        """The batch's own noise under ``noise_key`` (same shape as the samples), or ``get_noise`` without one."""
        if self.noise_key is None:
            return self.get_noise(images)
        owner = type(self).__name__
        noise = _fetch(batchdata, self.noise_key, owner).to(images.device, non_blocking=non_blocking).float()
        if noise.shape != images.shape:
            raise ValueError(
                f"{owner}: batch key '{self.noise_key}' has shape {tuple(noise.shape)}, but '{self.image_key}' has "
                f"{tuple(images.shape)}; expected the noise each sample was generated from, of the same shape."
            )
        return noise

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        images = _fetch(batchdata, self.image_key, type(self).__name__).to(device, non_blocking=non_blocking).float()
        noise = self.paired_noise(batchdata, images, non_blocking)
        timesteps = self.get_timesteps(images).to(images.device)
        noisy = self.scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
        target, condition, extra = self.target_and_condition(batchdata, images, noise, noisy, timesteps, device,
                                                             non_blocking)  # fmt: skip
        network_kwargs = {"timesteps": timesteps, **extra, **condition.kwargs}
        return Conditioning.concat_input(noisy, condition), target, (), network_kwargs

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
        """The regression target, the (dropped-out) condition and more network keyword arguments of a batch; an
        objective whose target needs more than ``get_target``'s arguments overrides this."""
        target = self.get_target(images, noise, timesteps)
        return target, self._condition(batchdata, images, device, non_blocking), {}

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

    Reflow (Liu, Gong and Liu, "Flow Straight and Fast", ICLR 2023): with ``noise_key``, each sample is paired with the
    noise it was generated from by a trained flow model (:func:`echo_monai.engines.reflow_couplings`), instead of
    independent noise. The straight paths between the pairs no longer cross, so the flow fine-tuned on them is
    straighter and its 1-2 Euler steps land near the teacher's many-step sample; at ``t = T`` the loss is the
    one-step distillation error ``|| (eps - v(eps, T)) - x_teacher ||^2``.

    Example:
        >>> scheduler = RFlowScheduler(1000, use_discrete_timesteps=False, sample_method="logit-normal")
        >>> trainer = SupervisedTrainer(..., prepare_batch=FlowMatchingPrepareBatch(scheduler), loss_function=MSELoss())
    """

    def __init__(
        self,
        scheduler: Scheduler,
        conditioning: Conditioning | None = None,
        image_key: str = "image",
        noise_key: str | None = None,
    ) -> None:
        if not isinstance(scheduler, RFlowScheduler):
            raise TypeError(
                f"FlowMatchingPrepareBatch: scheduler must be an RFlowScheduler, got {type(scheduler).__name__}."
            )
        super().__init__(scheduler, conditioning, image_key, noise_key)

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        return self.scheduler.sample_timesteps(images)

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return images - noise


class MeanFlowPrepareBatch(FlowMatchingPrepareBatch):
    """MeanFlow objective (Geng et al. 2025): regress the average velocity ``u(z_t, r, t)`` of a
    :class:`echo_monai.networks.nets.MeanFlowDenoiser` on the MeanFlow identity, for one- and few-step sampling.

    For each sample: ``t`` and a second time from ``scheduler.sample_timesteps`` give ``r = min`` of the two, and for a
    fraction ``1 - interval_fraction`` of the batch ``r = t`` (plain flow matching, as in the paper); then with
    ``z_t = scheduler.add_noise(x_0, eps, t)``, ``s = t / T``::

        target = (x_0 - eps) - (s - r / T) * jvp(u_theta, (z_t, t), (eps - x_0, T))      (no gradient through it)

    ``torch.func.jvp`` gives ``du/ds`` in one forward pass with tangents (the conditional path's ``dz/ds``, and ``T``
    per unit ``s`` for the timestep input; ``r`` and the condition are held fixed). The trainer's loss is a plain
    ``MSELoss`` between the network's ``u(z_t, r, t)`` and the target, as for every objective here: the network input
    and ``{"timesteps": t, "r_timesteps": r, **condition}`` are returned as usual. Used from scratch or to fine-tune a
    trained flow model (wrap it in ``MeanFlowDenoiser(network, gate_init=0)``).

    With ``velocity_network`` (a trained flow model, frozen: the one a fine-tune starts from), its velocity
    ``v(z_t, t)`` replaces the conditional velocity ``x_0 - eps`` in both places, the identity's first term and the
    JVP's tangent ``dz/ds = -v``. That is the identity on the *marginal* flow, which the conditional one only
    estimates: the target no longer carries the noise of the ``(x_0, eps)`` pair, and for ``r = t`` it is the
    teacher's velocity (the average velocity of the teacher's ODE is learnt, as in a distillation). It costs one more
    forward pass per batch, without gradient.

    Fused attention: PyTorch's fused scaled-dot-product-attention kernels have no forward-mode AD. On the CPU (torch
    2.13) SDPA dispatches to ``_scaled_dot_product_flash_attention_for_cpu``, and a JVP through it raises
    ``NotImplementedError`` (seen in ``tests/engines/test_meanflow.py``); the GPU's flash and memory-efficient kernels
    have no forward AD either (not run here: no GPU). So the JVP runs under ``sdpa_kernel(SDPBackend.MATH)``
    (``math_attention``, the default): the same attention, composed of ordinary operations, which forward AD
    differentiates. The trainer's own forward and backward keep the fused kernels.

    Args:
        scheduler: the ``RFlowScheduler`` (its ``sample_timesteps`` draws both times).
        network: the network being trained (the one the trainer optimises), called as
            ``network(x, timesteps=t, r_timesteps=r, **condition)``.
        conditioning: how batch keys reach the network (condition dropout as for flow matching).
        image_key: batch key of the clean samples.
        interval_fraction: the fraction of the batch with ``r < t`` (the paper's best: 0.25).
        math_attention: run the JVP with the SDPA math kernel (False only for a network without attention).
        velocity_network: the flow model whose velocity replaces ``x_0 - eps`` (see above), called as
            ``velocity_network(x, timesteps=t, **condition)``; None: the conditional velocity (from scratch).

    Example:
        >>> network = MeanFlowDenoiser(flow_unet)          # fine-tune a trained flow model
        >>> prepare = MeanFlowPrepareBatch(RFlowScheduler(1000, use_discrete_timesteps=False), network)
        >>> trainer = SupervisedTrainer(..., network=network, prepare_batch=prepare, loss_function=MSELoss())
    """

    def __init__(
        self,
        scheduler: Scheduler,
        network: Callable[..., torch.Tensor],
        conditioning: Conditioning | None = None,
        image_key: str = "image",
        interval_fraction: float = 0.25,
        math_attention: bool = True,
        velocity_network: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        super().__init__(scheduler, conditioning, image_key)
        if not 0.0 <= float(interval_fraction) <= 1.0:
            raise ValueError(f"MeanFlowPrepareBatch: interval_fraction must be in [0, 1], got {interval_fraction}.")
        if velocity_network is not None and velocity_network is network:
            raise ValueError(
                "MeanFlowPrepareBatch: velocity_network is the network being trained; pass a frozen copy of the "
                "flow model it starts from."
            )
        self.network = network
        self.velocity_network = velocity_network
        self.interval_fraction = float(interval_fraction)
        self.math_attention = bool(math_attention)

    def get_interval_starts(self, images: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``r`` per sample: the smaller of ``t`` and a second draw, for ``interval_fraction`` of them; else ``t``."""
        other = self.scheduler.sample_timesteps(images).to(timesteps.device)
        with_interval = torch.rand(timesteps.shape[0], device=timesteps.device) < self.interval_fraction
        return torch.where(with_interval, torch.minimum(timesteps, other), timesteps)

    def target(
        self,
        images: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        r_timesteps: torch.Tensor,
        condition: Condition,
        noisy: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The MeanFlow target at ``z_t = add_noise(images, noise, timesteps)`` (``noisy`` when already made;
        detached)."""
        t, r = timesteps.float(), r_timesteps.float()
        if noisy is None:
            noisy = self.scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
        kwargs = dict(condition.kwargs)

        def average_velocity(z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return self.network(Conditioning.concat_input(z, condition), timesteps=time, r_timesteps=r, **kwargs)

        total = float(self.scheduler.num_train_timesteps)
        with torch.no_grad():
            if self.velocity_network is None:
                velocity = images - noise
            else:
                velocity = self.velocity_network(Conditioning.concat_input(noisy, condition), timesteps=t, **kwargs)
                if velocity.shape != images.shape:
                    raise ValueError(
                        f"MeanFlowPrepareBatch: velocity_network gave {tuple(velocity.shape)} for samples of shape "
                        f"{tuple(images.shape)}; expected the same shape (a flow model of these samples)."
                    )
            with self._attention():
                _, du_ds = torch.func.jvp(average_velocity, (noisy, t), (-velocity, torch.full_like(t, total)))
        interval = ((t - r) / total).reshape(-1, *([1] * (images.ndim - 1)))
        return (velocity - interval * du_ds).detach()

    def _attention(self) -> contextlib.AbstractContextManager:
        if not self.math_attention:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])

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
        r_timesteps = self.get_interval_starts(images, timesteps)
        condition = self._condition(batchdata, images, device, non_blocking)
        target = self.target(images, noise, timesteps, r_timesteps, condition, noisy=noisy)
        return target, condition, {"r_timesteps": r_timesteps}


class AdaptiveL2Loss(torch.nn.Module):
    """MeanFlow's adaptively weighted squared error (Geng et al. 2025, Sec. 4.3): per sample,
    ``sg(w) * e`` with ``e = mean((input - target) ** 2)`` and ``w = 1 / (e + eps) ** power``, averaged over the batch.

    ``power = 0`` is ``MSELoss``; ``power = 1`` (the paper's choice for MeanFlow) makes each sample's loss about
    ``e / (e + eps)``, close to a log of the error: samples with a large error (the JVP target is heavy-tailed) no
    longer dominate the gradient. The error is the per-sample *mean* over elements (the paper sums), so ``eps`` does
    not depend on the resolution. Use it as the trainer's ``loss_function`` with :class:`MeanFlowPrepareBatch`.

    Args:
        power: the exponent ``p`` (>= 0).
        eps: the constant ``c`` (> 0).
    """

    def __init__(self, power: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__()
        if float(power) < 0 or float(eps) <= 0:
            raise ValueError(f"AdaptiveL2Loss: power must be >= 0 and eps > 0, got power={power}, eps={eps}.")
        self.power, self.eps = float(power), float(eps)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape != target.shape:
            raise ValueError(f"AdaptiveL2Loss: input {tuple(input.shape)} and target {tuple(target.shape)} differ.")
        error = (input.float() - target.float()).pow(2).flatten(1).mean(1)
        weight = (error.detach() + self.eps).pow(-self.power)
        return (weight * error).mean()


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
