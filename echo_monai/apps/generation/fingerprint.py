"""What made a synthetic dataset: a fingerprint of its requests, sampler, networks, reference source and writer.

The generation pipeline writes it into the output folder (``generation_fingerprint.json``) and refuses to resume into
a folder whose fingerprint differs, so a rerun with other EF values, other seeds, fewer videos, another sampler or
another checkpoint never mixes its items with the old ones (unless told to overwrite them).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["describe", "digest", "module_fingerprint"]

_STATEFUL = {"timesteps", "num_inference_steps", "training"}  # a module's (a scheduler's) state, changed by use


def module_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and values)."""
    sha = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        sha.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        sha.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return sha.hexdigest()


def _tensor(value: torch.Tensor) -> Any:
    value = value.detach().cpu().contiguous()
    if value.numel() <= 16:
        return value.tolist()
    return hashlib.sha256(value.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON description of the settings of ``value``: modules by class, scalar settings and weights; other objects
    by class and their public non-callable attributes (tensors by value when tiny, else by hash)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return _tensor(value)
    if isinstance(value, (list, tuple)):
        return [describe(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, torch.nn.Module):
        settings = {k: describe(v, depth + 1) for k, v in vars(value).items() if _setting(k, v)}
        try:
            settings["weights"] = module_fingerprint(value)
        except AttributeError:  # a Module subclass that never ran nn.Module.__init__ (MONAI's RFlowScheduler)
            pass
        return {"type": type(value).__name__, **settings}
    if depth > 4 or not hasattr(value, "__dict__"):
        return type(value).__name__
    attributes = {k: describe(v, depth + 1) for k, v in vars(value).items() if _setting(k, v, objects=True)}
    return {"type": type(value).__name__, **attributes}


def _setting(key: str, value: Any, objects: bool = False) -> bool:
    """Which attributes describe: public, not a method, not changed by use; a module's submodules are in its
    weights, an object's modules are settings of their own."""
    if key.startswith("_") or (key in _STATEFUL and not objects) or inspect.isroutine(value):
        return False
    if isinstance(value, torch.nn.Module):
        return objects
    return objects or isinstance(value, (str, int, float, bool, tuple, list, torch.Tensor)) or value is None


def digest(description: Any) -> str:
    """A short hash of a JSON description."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]
