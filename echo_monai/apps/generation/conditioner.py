"""From requests to network inputs: the conditions of a batch of requests, placed by a ``Conditioning``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import list_data_collate
from monai.transforms import Randomizable

from echo_monai.apps.generation.requests import GenerationRequest
from echo_monai.engines.conditioning import Condition, Conditioning

__all__ = ["RequestConditioner", "request_error"]

_USER_ERRORS = (ValueError, FileNotFoundError, KeyError, TypeError)


def request_error(request: GenerationRequest, error: BaseException) -> Exception:
    """The innermost user error behind ``error`` (MONAI wraps transform errors in RuntimeErrors), as the same type
    with the request's name in front, so the message names the item and what was wrong with it."""
    inner: BaseException = error
    while inner.__cause__ is not None:
        inner = inner.__cause__
    if not isinstance(inner, _USER_ERRORS):
        inner = error if isinstance(error, _USER_ERRORS) else inner
    message = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
    kind = type(inner) if isinstance(inner, _USER_ERRORS) else ValueError
    return kind(f"request '{request.name}': {message}")


class RequestConditioner:
    """Turn requests (and their references) into conditioned items and the network's :class:`Condition`.

    For each request: its ``conditions`` (plus the reference under ``reference_key``), through ``transform`` with
    the request's own random state (so a random augmentation of item ``i`` is the same whatever else is generated
    with it, on a resumed or re-sharded run too); a network argument the item lacks takes the conditioning's null
    value (a model trained with condition dropout samples without it); then the batch is collated and placed.

    Args:
        conditioning: the training ``Conditioning`` of the network (None: unconditional).
        transform: a MONAI (dictionary) transform applied to each request's conditions, e.g. loading and one-hot
            encoding a label map, or :class:`echo_monai.transforms.ConditionMapd` for an optional mask.
        reference_key: the item key of the reference (a sampled latent, a real image).

    Example:
        >>> conditioner = RequestConditioner(Conditioning({"context": "ejection_fraction"}, concat_keys=["reference"]))
        >>> items, condition = conditioner(requests, references=[latent0, latent1])
    """

    def __init__(
        self,
        conditioning: Conditioning | None = None,
        transform: Callable[[dict], Mapping[str, Any]] | None = None,
        reference_key: str = "reference",
    ) -> None:
        self.conditioning = conditioning if conditioning is not None else Conditioning()
        self.transform = transform
        self.reference_key = reference_key

    @property
    def keys(self) -> list[str]:
        """The item keys the network reads."""
        return [*self.conditioning.network_kwargs.values(), *self.conditioning.concat_keys]

    def item(self, request: GenerationRequest, reference: torch.Tensor | None = None) -> dict[str, Any]:
        """The conditioned item of one request.

        Raises:
            ValueError / FileNotFoundError / KeyError: naming the request, for a condition that cannot be read or a
                network argument without a value and without a null value.
        """
        data: dict[str, Any] = dict(request.conditions)
        if reference is not None:
            data[self.reference_key] = reference
        try:
            if self.transform is not None:
                if isinstance(self.transform, Randomizable):
                    self.transform.set_random_state(seed=request.seed % (2**32))
                data = dict(self.transform(data))
        except Exception as error:  # noqa: BLE001 - re-raised as the user error behind it, naming the request
            raise request_error(request, error) from error
        for argument, key in self.conditioning.network_kwargs.items():
            if data.get(key) is None:
                if argument not in self.conditioning.null_values:
                    raise ValueError(
                        f"request '{request.name}' has no '{key}' (for the network's '{argument}') and the "
                        "conditioning has no null value for it."
                    )
                data[key] = self.conditioning.null_values[argument]
        missing = [k for k in self.conditioning.concat_keys if data.get(k) is None]
        if missing:
            raise ValueError(f"request '{request.name}' has no {missing} to concatenate to the network input.")
        return data

    def check(self, request: GenerationRequest) -> None:
        """Build the item of ``request`` once, so a bad condition fails before anything is generated."""
        if self.reference_key in self.conditioning.concat_keys:
            return  # the reference is made during generation; the rest is checked with it then
        self.item(request)

    def __call__(
        self,
        requests: Sequence[GenerationRequest],
        references: Sequence[torch.Tensor | None] | None = None,
        device: str | torch.device = "cpu",
    ) -> tuple[list[dict[str, Any]], Condition]:
        """The conditioned items of a batch of requests and their placed condition (batch in request order)."""
        references = list(references) if references is not None else [None] * len(requests)
        items = [self.item(r, ref) for r, ref in zip(requests, references, strict=True)]
        if not self.conditioning.is_conditional:
            return items, Condition()
        batch = list_data_collate([{k: _tensor(item[k]) for k in self.keys} for item in items])
        return items, self.conditioning.extract(batch, device)


def _tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(value).as_subclass(torch.Tensor)  # plain tensors: no MONAI metadata on the network path
