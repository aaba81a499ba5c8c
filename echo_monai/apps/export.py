"""A trained denoiser as TorchScript (``models/model.ts``) for deployment, by tracing.

MONAI's ``ckpt_export`` scripts the network (``torch.jit.script``), which fails on MONAI's diffusion networks, and its
tracing path takes one input tensor, while a denoiser takes several (the noisy sample, the timesteps and a condition).
:func:`export_traced` traces ``network(**inputs)`` with ``torch.jit.trace`` on inputs of the shapes a bundle declares,
checks that the traced module gives the eager network's output on other inputs of those shapes, and writes the file
under a temporary name, then renames it.

The traced module takes the inputs positionally, in the declared order, at the declared shapes (tracing records one
path through the network: other shapes are not guaranteed). The file's ``extra_files`` hold
``{"inputs": {name: {"shape", "dtype"}}, "max_abs_difference": ...}`` under ``metadata.json``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["export_traced", "example_tensors"]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}


class _Positional(torch.nn.Module):
    """``network(**dict(zip(names, args)))``: a keyword-taking network as one with positional inputs, for tracing."""

    def __init__(self, network: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.network, self.names = network, list(names)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.network(**dict(zip(self.names, args, strict=True)))


def _spec(name: str, spec: Any) -> dict[str, Any]:
    spec = {"shape": spec} if not isinstance(spec, Mapping) else dict(spec)
    shape = spec.get("shape")
    if not isinstance(shape, Sequence) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"example_inputs['{name}']: shape must be a list of positive integers, got {shape!r}.")
    dtype = str(spec.get("dtype", "float32"))
    if dtype not in _DTYPES:
        raise ValueError(f"example_inputs['{name}']: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    if dtype.startswith("int") and not (isinstance(spec.get("high"), int) and spec["high"] > 0):
        raise ValueError(f"example_inputs['{name}']: an integer input needs 'high' (a positive int: values 0..high-1).")
    low, high = spec.get("low", 0), spec.get("high")
    if high is not None and not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and high > low):
        raise ValueError(f"example_inputs['{name}']: needs low < high, got low {low!r}, high {high!r}.")
    return {"shape": [int(s) for s in shape], "dtype": dtype, "low": low if high is not None else None, "high": high}


def example_tensors(
    example_inputs: Mapping[str, Any], generator: torch.Generator, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Random inputs for `example_inputs` (name -> shape, or ``{"shape", "dtype", "low", "high"}``): floats standard
    normal, or uniform in ``[low, high)`` when ``high`` is given (timesteps of a flow, an EF); integers uniform in
    ``0..high-1``.

    Raises:
        ValueError: naming the input, for a shape, dtype or ``high`` that does not fit.
    """
    tensors = {}
    for name, raw in example_inputs.items():
        spec = _spec(name, raw)
        if spec["dtype"].startswith("int"):
            value = torch.randint(0, spec["high"], spec["shape"], generator=generator, dtype=_DTYPES[spec["dtype"]])
        elif spec["high"] is not None:
            value = spec["low"] + (spec["high"] - spec["low"]) * torch.rand(spec["shape"], generator=generator)
            value = value.to(_DTYPES[spec["dtype"]])
        else:
            value = torch.randn(spec["shape"], generator=generator).to(_DTYPES[spec["dtype"]])
        tensors[name] = value.to(device)
    return tensors


def export_traced(
    network: torch.nn.Module,
    example_inputs: Mapping[str, Any],
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    seed: int = 0,
    atol: float = 1e-4,
) -> Path:
    """Trace `network` on `example_inputs` and save it as TorchScript at `path` (written under a temporary name,
    then renamed).

    Args:
        network: the trained network; called as ``network(**inputs)``.
        example_inputs: input name -> shape (a float input), or ``{"shape": [...], "dtype": "int64", "high": N}``;
            the traced module takes them positionally, in this order.
        path: the ``.ts`` file to write.
        device: where to trace (the file loads on any device with ``torch.jit.load(map_location=...)``).
        seed: seeds the example and check inputs.
        atol: the largest absolute difference between traced and eager outputs accepted on the check inputs.

    Returns:
        the path written.

    Raises:
        ValueError: an input spec that does not fit, or a traced module whose output differs from the eager one by
            more than `atol` (nothing is written then).
    """
    if not example_inputs:
        raise ValueError("example_inputs: give at least one input (name -> shape).")
    generator = torch.Generator().manual_seed(int(seed))
    trace_inputs = example_tensors(example_inputs, generator, device)
    check_inputs = example_tensors(example_inputs, generator, device)
    module = _Positional(network.to(device).eval(), list(example_inputs))
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks inside the network become constants: fine at the declared shapes, which the check below uses
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, tuple(trace_inputs.values()), check_trace=False)
        eager, again = module(*check_inputs.values()), traced(*check_inputs.values())
    difference = float((eager.float() - again.float()).abs().max())
    if not difference <= atol:
        raise ValueError(
            f"export_traced: the traced network differs from the eager one by {difference:.3g} (> atol {atol}) on "
            "inputs of the declared shapes; it has shape- or value-dependent control flow that tracing cannot keep."
        )
    specs = {name: {k: v for k, v in _spec(name, raw).items() if v is not None} for name, raw in example_inputs.items()}
    metadata = {"inputs": specs, "max_abs_difference": difference}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.jit.save(traced, str(partial), _extra_files={"metadata.json": json.dumps(metadata)})
    os.replace(partial, path)
    logger.info("export_traced: wrote %s (traced vs eager: max abs difference %.3g)", path, difference)
    return path
