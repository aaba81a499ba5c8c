"""Conditioning plumbing shared by training (``PrepareBatch``) and sampling (``Sampler``).

Every denoiser in echo_monai is called as ``net(x, timesteps, **conditioning)``: MONAI's ``DiffusionModelUNet``
takes ``context`` (cross-attention tokens) and ``class_labels``, ``SPADEDiffusionModelUNet`` also takes ``seg``
(a label map), and the spatio-temporal nets take the same names. Reference images or latents are concatenated to
the noisy input on the channel axis. :class:`Conditioning` maps batch keys to those places, and blanks conditions
for classifier-free guidance (CFG): randomly per sample during training (condition dropout, Ho & Salimans 2022),
and for the whole unconditional half of the batch during guided sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Condition", "Conditioning", "double_batch", "guided_output"]


@dataclass
class Condition:
    """Conditioning of one batch, already placed.

    Attributes:
        kwargs: network keyword arguments, e.g. ``{"seg": (B, K, H, W), "class_labels": (B,), "context": (B, N, D)}``.
        concat: tensors concatenated to the noisy input on the channel axis, in order; each ``(B, C', ...)``.
    """

    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)
    concat: list[torch.Tensor] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.kwargs) or bool(self.concat)

    def cat(self, other: Condition) -> Condition:
        """Concatenate two conditions along the batch axis (used to run conditional and unconditional at once)."""
        return Condition(
            kwargs={k: torch.cat([v, other.kwargs[k]], dim=0) for k, v in self.kwargs.items()},
            concat=[torch.cat([a, b], dim=0) for a, b in zip(self.concat, other.concat, strict=True)],
        )


class Conditioning:
    """Maps batch keys to network conditioning and blanks them for classifier-free guidance.

    Args:
        network_kwargs: network keyword argument -> batch key, e.g. ``{"seg": "label_map", "class_labels": "view"}``.
            A ``context`` tensor of shape ``(B,)`` or ``(B, D)`` becomes one token ``(B, 1, D)`` (``D = 1`` for a
            scalar such as the ejection fraction); ``(B, N, D)`` is passed as is.
        concat_keys: batch keys concatenated to the noisy input on channels (reference frame, reference latent).
            An image ``(B, C, H, W)`` concatenated to a video ``(B, C, T, H, W)`` is repeated over ``T``.
        dropout: probability of blanking a sample's droppable conditions in training (CFG condition dropout); 1
            blanks every one, which trains an unconditional model.
        droppable: keys (network kwarg names or concat batch keys) that dropout and guidance blank; default all.
        null_values: fill value of a blanked condition per key (kwarg name or concat batch key); default 0.
            Use the extra "null" class index for ``class_labels`` (e.g. ``{"class_labels": 3}`` with 3 real classes).

    Example:
        >>> cond = Conditioning({"seg": "label_map"}, dropout=0.1)
        >>> c = cond.extract({"image": x, "label_map": y})
        >>> c = cond.drop(c, cond.dropout_mask(x.shape[0]))
    """

    def __init__(
        self,
        network_kwargs: Mapping[str, str] | None = None,
        concat_keys: Sequence[str] = (),
        dropout: float = 0.0,
        droppable: Sequence[str] | None = None,
        null_values: Mapping[str, float] | None = None,
    ) -> None:
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"Conditioning: dropout must be in [0, 1], got {dropout}.")
        if isinstance(concat_keys, str):
            concat_keys = [concat_keys]
        self.network_kwargs = dict(network_kwargs or {})
        self.concat_keys = list(concat_keys)
        self.dropout = float(dropout)
        names = set(self.network_kwargs) | set(self.concat_keys)
        self.droppable = set(names if droppable is None else droppable)
        unknown = self.droppable - names
        if unknown:
            raise ValueError(
                f"Conditioning: droppable names {sorted(unknown)} are not among the conditions {sorted(names)}."
            )
        self.null_values = dict(null_values or {})

    @property
    def is_conditional(self) -> bool:
        return bool(self.network_kwargs) or bool(self.concat_keys)

    def extract(
        self, batch: Mapping[str, torch.Tensor], device: torch.device | str | None = None, non_blocking: bool = False
    ) -> Condition:
        """Read the conditions from a batch dict and move them to ``device``.

        Raises:
            KeyError: naming the missing batch key and the network argument it feeds.
        """
        kwargs: dict[str, torch.Tensor] = {}
        for name, key in self.network_kwargs.items():
            kwargs[name] = self._as_network_input(name, self._get(batch, key, name), device, non_blocking)
        concat = [self._get(batch, key, "concat").to(device, non_blocking=non_blocking) for key in self.concat_keys]
        return Condition(kwargs=kwargs, concat=[torch.as_tensor(c).float() for c in concat])

    def dropout_mask(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor | None:
        """Boolean ``(B,)`` mask of samples whose conditions are blanked, or None when dropout is off."""
        if self.dropout <= 0.0 or not self.droppable:
            return None
        return torch.rand(batch_size, device=device) < self.dropout

    def drop(self, condition: Condition, mask: torch.Tensor | None) -> Condition:
        """Blank the droppable conditions of the samples where ``mask`` is True (all samples when ``mask`` is None)."""
        kwargs = {
            name: self._blank(name, value, mask) if name in self.droppable else value
            for name, value in condition.kwargs.items()
        }
        concat = [
            self._blank(key, value, mask) if key in self.droppable else value
            for key, value in zip(self.concat_keys, condition.concat, strict=True)
        ]
        return Condition(kwargs=kwargs, concat=concat)

    def null(self, condition: Condition) -> Condition:
        """The unconditional counterpart of ``condition`` used by classifier-free guidance."""
        return self.drop(condition, None)

    @staticmethod
    def concat_input(x: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Concatenate reference images/latents to ``x`` (B, C, [T,] H, W) on channels, repeating images over T."""
        if not condition.concat:
            return x
        parts = [x]
        for ref in condition.concat:
            if ref.ndim == x.ndim - 1:  # image (B, C, H, W) next to a video (B, C, T, H, W)
                ref = ref.unsqueeze(2).expand(-1, -1, x.shape[2], *ref.shape[2:])
            if ref.shape[0] != x.shape[0] or ref.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"Conditioning: concatenated condition of shape {tuple(ref.shape)} does not match the input "
                    f"{tuple(x.shape)} in batch and spatial size."
                )
            parts.append(ref.to(x.dtype))
        return torch.cat(parts, dim=1)

    @staticmethod
    def _get(batch: Mapping[str, torch.Tensor], key: str, name: str) -> torch.Tensor:
        if not isinstance(batch, Mapping) or key not in batch:
            have = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise KeyError(f"Conditioning: batch key '{key}' (for '{name}') is missing; the batch has {have}.")
        return torch.as_tensor(batch[key])

    @staticmethod
    def _as_network_input(
        name: str, value: torch.Tensor, device: torch.device | str | None, non_blocking: bool
    ) -> torch.Tensor:
        value = value.to(device, non_blocking=non_blocking)
        if name == "class_labels":
            return value.reshape(value.shape[0]).long()
        value = value.float()
        if name == "context" and value.ndim == 1:
            value = value[:, None, None]
        elif name == "context" and value.ndim == 2:
            value = value[:, None, :]
        return value

    def _blank(self, name: str, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        null = torch.full_like(value, self.null_values.get(name, 0))
        if mask is None:
            return null
        mask = mask.to(value.device).reshape(-1, *([1] * (value.ndim - 1)))
        return torch.where(mask, null, value)


def double_batch(value: Any) -> Any:
    """Repeat every tensor of ``value`` (a tensor, or tuples, lists and dicts of them) twice along the batch axis.

    Used for the inputs of the doubled guidance batch; anything that is not a tensor or a container passes unchanged.
    """
    if isinstance(value, torch.Tensor):
        return torch.cat([value, value], dim=0)
    if isinstance(value, Mapping):
        return {k: double_batch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(double_batch(v) for v in value)
    return value


def guided_output(
    network: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    condition: Condition,
    conditioning: Conditioning,
    guidance_scale: float = 1.0,
    **kwargs: Any,
) -> torch.Tensor:
    """The network output at ``x`` with classifier-free guidance (Ho & Salimans 2022) of scale ``w``:
    ``f_uncond + w (f_cond - f_uncond)``, from one call on the doubled batch ``[conditional, unconditional]``
    (``conditioning.null`` blanks the second half's droppable conditions). ``w = 1`` or an empty ``condition`` is one
    plain call. The sampler (:class:`echo_monai.inferers.Sampler`) and a guided distillation teacher
    (:class:`echo_monai.engines.ConsistencyDistillationPrepareBatch`) both guide here.

    Args:
        network: called as ``network(x, timesteps=t, **condition.kwargs, **kwargs)`` (concatenated conditions
            joined to ``x`` first).
        x: the noisy input ``(B, ...)``.
        timesteps: ``(B,)`` times.
        condition: the batch's (conditional) condition.
        conditioning: what defines the unconditional input.
        guidance_scale: ``w``; 1 for none.
        kwargs: extra network inputs that are not guided (doubled with the batch).
    """
    batch = x.shape[0]
    guided = guidance_scale != 1.0 and bool(condition)
    if guided:
        condition = condition.cat(conditioning.null(condition))
        x, timesteps, kwargs = double_batch(x), double_batch(timesteps), double_batch(kwargs)
    output = network(Conditioning.concat_input(x, condition), timesteps=timesteps, **condition.kwargs, **kwargs)
    if not guided:
        return output
    cond, uncond = output[:batch], output[batch:]
    return uncond + guidance_scale * (cond - uncond)
