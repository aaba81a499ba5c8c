"""Reference sources of the generation pipeline: what a generated item starts from.

- :class:`NoReference`: nothing (label-map-guided images, unconditional samples);
- :class:`SampledReference`: a sample of another model, redrawn until the privacy gate lets it pass (EchoFlow /
  EchoNet-Synthetic: a latent reference frame of a new "patient" that no training patient is too close to);
- :class:`ImageReference`: a real image read from the request (image-to-video: the breast ultrasound image to animate).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from echo_monai.apps.generation.conditioner import RequestConditioner, request_error
from echo_monai.apps.generation.requests import GenerationRequest
from echo_monai.inferers.sampler import seeded_noise

__all__ = ["ImageReference", "NoReference", "Reference", "ReferenceSource", "SampledReference", "seeded_noise"]


@dataclass
class Reference:
    """What a reference source gave for one request.

    Attributes:
        value: the reference without a batch axis, e.g. a latent frame ``(C, h, w)``; None when given up or when the
            source gives none.
        attempts: references drawn (a sampled source counts every draw the gate rejected plus the accepted one).
        failed: True when the source gave up (every draw rejected).
    """

    value: torch.Tensor | None = None
    attempts: int = 0
    failed: bool = False


class ReferenceSource(ABC):
    """Gives each request its reference. ``is_latent``: the reference is already in the model's latent space (a
    latent sampler must then not encode it again)."""

    is_latent: bool = False

    @abstractmethod
    def __call__(self, request: GenerationRequest, device: str | torch.device = "cpu") -> Reference:
        """The reference of ``request``."""

    def check(self, request: GenerationRequest) -> None:
        """Refuse, before anything is generated, a request this source cannot serve (naming it)."""
        return None  # every request is fine unless a subclass says otherwise


class NoReference(ReferenceSource):
    """No reference: every request gets ``Reference()``."""

    def __call__(self, request: GenerationRequest, device: str | torch.device = "cpu") -> Reference:
        return Reference()


class SampledReference(ReferenceSource):
    """A reference sampled from a model, redrawn while the privacy gate rejects it.

    Draw ``a`` (0-based) of request ``r`` starts from the noise seeded ``r.seed * 1000 + a + 1``, so every request's
    references are reproducible and independent of the others.

    Args:
        sampler: the model's sampler, e.g. :class:`echo_monai.inferers.Sampler` on latents (called with
            ``clip=False``: the reference stays in the model's space).
        network: the model (a latent image denoiser).
        conditioner: places the request's conditions for that model (view, LV mask...).
        sample_shape: ``(C, h, w)`` of one reference.
        gate: returns a keep mask ``(B,)`` for a batch of references (:class:`echo_monai.metrics.PrivacyGate`);
            None keeps every draw.
        max_attempts: draws per request before giving up on it.
        latent: whether the references are latents (``is_latent``).

    Example:
        >>> references = SampledReference(image_sampler, image_network, RequestConditioner(image_conditioning),
        ...                               (4, 28, 28), gate=PrivacyGate(reid, train_frames, held_out_frames))
    """

    def __init__(
        self,
        sampler: Callable[..., torch.Tensor],
        network: torch.nn.Module,
        conditioner: RequestConditioner,
        sample_shape: Sequence[int],
        gate: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_attempts: int = 10,
        latent: bool = True,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"SampledReference: max_attempts must be >= 1, got {max_attempts}.")
        self.sampler, self.network, self.conditioner = sampler, network, conditioner
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.gate, self.max_attempts, self.is_latent = gate, int(max_attempts), bool(latent)

    def check(self, request: GenerationRequest) -> None:
        self.conditioner.check(request)

    @torch.no_grad()
    def __call__(self, request: GenerationRequest, device: str | torch.device = "cpu") -> Reference:
        _, condition = self.conditioner([request], device=device)
        self.network.eval()
        for attempt in range(self.max_attempts):
            noise = seeded_noise((1, *self.sample_shape), request.seed * 1000 + attempt + 1).to(device)
            sample = self.sampler(noise, self.network, condition=condition, clip=False)
            if self.gate is None or bool(self.gate(sample)[0]):
                return Reference(sample[0], attempts=attempt + 1)
        return Reference(None, attempts=self.max_attempts, failed=True)


class ImageReference(ReferenceSource):
    """A real image named by the request: ``transform({key: request.conditions[key]})[key]``, encoded into the model's
    latent space when ``encoder`` is given; requests without the image go to ``fallback`` when one is given.

    A user's own image is not put through a privacy gate: the gate keeps generated references away from the training
    patients, and an image the user brings is theirs to animate.

    Args:
        transform: a MONAI dictionary transform that loads and prepares the image (e.g. ``LoadImaged``,
            ``EnsureChannelFirstd``, resizing, scaling to [-1, 1]) into ``(C, H, W)``.
        key: the request condition holding the image (a path or an array).
        encoder: pixels ``(1, C, H, W)`` → latent ``(1, c, h, w)``, e.g. a latent sampler's ``encode`` (the
            autoencoder's posterior mean, normalised like the training latents); the references are then latents
            (``is_latent``).
        fallback: the source of requests that name no image (e.g. echo_flow's :class:`SampledReference`), which must
            give references in the same space; None refuses such requests.

    Example:
        >>> references = ImageReference(Compose([LoadImaged("image"), EnsureChannelFirstd("image"), ...]))
        >>> user_or_sampled = ImageReference(frame_transform, "reference_image", encoder=latent_sampler.encode,
        ...                                  fallback=SampledReference(...))
    """

    def __init__(
        self,
        transform: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        key: str = "image",
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        fallback: ReferenceSource | None = None,
    ) -> None:
        self.transform, self.key, self.encoder, self.fallback = transform, key, encoder, fallback
        self.is_latent = encoder is not None
        if fallback is not None and fallback.is_latent != self.is_latent:
            space = "latents" if fallback.is_latent else "pixels"
            raise ValueError(
                f"ImageReference: the fallback gives {space}, so the images must be "
                f"{'encoded (give an encoder)' if fallback.is_latent else 'left as pixels (no encoder)'}."
            )

    @property
    def max_attempts(self) -> int:
        """The fallback's draws per request (0 without one): the pipeline's report counts rejected draws with it."""
        return int(getattr(self.fallback, "max_attempts", 0))

    def _given(self, request: GenerationRequest) -> bool:
        return request.conditions.get(self.key) is not None

    def check(self, request: GenerationRequest) -> None:
        if self._given(request):
            return None
        if self.fallback is None:
            raise ValueError(f"request '{request.name}' has no '{self.key}' (the image to start from).")
        return self.fallback.check(request)

    @torch.no_grad()
    def __call__(self, request: GenerationRequest, device: str | torch.device = "cpu") -> Reference:
        self.check(request)
        if not self._given(request):
            return self.fallback(request, device)  # type: ignore[misc]  # check() refused a request without both
        try:
            value = self.transform({self.key: request.conditions[self.key]})[self.key]
            value = torch.as_tensor(value).as_subclass(torch.Tensor).float().to(device)
            if self.encoder is not None:
                value = self.encoder(value[None])[0]
        except Exception as error:  # noqa: BLE001 - re-raised as the user error behind it, naming the request
            raise request_error(request, error) from error
        return Reference(value, attempts=0)
