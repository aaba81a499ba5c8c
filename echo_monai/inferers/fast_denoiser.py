"""GPU fast paths for any denoiser, chosen by config, each falling back to plain float32 eager where it cannot help.

:class:`FastDenoiser` wraps the network a :class:`echo_monai.inferers.Sampler` calls (``network(x, timesteps=t,
**kwargs)``) and adds:

- ``precision="bf16"``: ``torch.autocast`` in bfloat16 on CUDA devices that support it; the output is cast back to
  the input's dtype, so the sampler's arithmetic (scheduler steps, guidance) stays in float32. Fallback: float32
  elsewhere (bf16 on a CPU without AMX is slower than float32); ``precision_on_cpu=True`` forces it (tests).
- ``channels_last``: the network and its 4-D (5-D: ``channels_last_3d``) inputs in channels-last memory format, which
  cuDNN's tensor-core convolutions prefer. The same numbers on any device (to float rounding).
- ``compile``: ``torch.compile`` of the network (``compile_mode``; ``"reduce-overhead"`` records CUDA graphs). Fallback:
  eager on the CPU unless ``compile_on_cpu`` (inductor needs a C++ compiler and minutes there).
- ``static_batch``: every call reaches the network with exactly this batch: a smaller batch (the last of a
  generation job) is padded by repeating its last item, a larger one (the doubled guidance batch) runs in chunks, and
  the outputs are cut back. A compiled network then sees one shape and is never recompiled, and CUDA graphs replay.
  Items do not interact in the denoisers here (GroupNorm and attention are per item), so the result is the same.

Fused attention (SDPA) is a network argument (``use_flash_attention`` of MONAI's and our UNets), and classifier-free
guidance already runs as one doubled batch in :meth:`echo_monai.inferers.Sampler.predict`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FastDenoiser"]


def _memory_format(value: torch.Tensor) -> torch.memory_format | None:
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(value.ndim)


def _map_batch(value: Any, batch: int, function) -> Any:
    """``function`` applied to every tensor of ``value`` (a tensor, or dicts, lists and tuples of them) whose first
    axis is the batch (``batch`` long); anything else passes unchanged."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return function(value)
    if isinstance(value, dict):
        return {k: _map_batch(v, batch, function) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_batch(v, batch, function) for v in value)
    return value


def _pad_rows(value: torch.Tensor, size: int) -> torch.Tensor:
    """``value`` padded to ``size`` rows by repeating its last row."""
    return torch.cat([value, value[-1:].expand(size - value.shape[0], *value.shape[1:])], dim=0)


class FastDenoiser(torch.nn.Module):
    """A denoiser with bf16 autocast, channels-last, ``torch.compile`` and a static batch, each by config (see the
    module docstring); ``state_dict`` is the wrapped network's under ``network.``.

    Args:
        network: the denoiser, called as ``network(x, timesteps=t, **kwargs)``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).
        channels_last: channels-last memory format for the network and its inputs.
        compile: ``torch.compile`` the network.
        compile_mode: ``torch.compile``'s ``mode`` (``"default"``, ``"reduce-overhead"`` for CUDA graphs,
            ``"max-autotune"``).
        compile_backend: ``torch.compile``'s ``backend`` (``"inductor"``; ``"eager"`` to trace only, for tests).
        static_batch: the one batch size the network sees; None leaves batches as they come.
        precision_on_cpu: use bf16 autocast on the CPU too.
        compile_on_cpu: compile on the CPU too.

    Example:
        >>> fast = FastDenoiser(unet, precision="bf16", channels_last=True, compile=True, static_batch=16)
        >>> images = Sampler(scheduler, 10)(noise, fast, condition=condition)
    """

    def __init__(
        self,
        network: torch.nn.Module,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str = "default",
        compile_backend: str = "inductor",
        static_batch: int | None = None,
        precision_on_cpu: bool = False,
        compile_on_cpu: bool = False,
    ) -> None:
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"FastDenoiser: precision must be 'fp32' or 'bf16', got '{precision}'.")
        if static_batch is not None and int(static_batch) < 1:
            raise ValueError(f"FastDenoiser: static_batch must be >= 1, got {static_batch}.")
        self.network = network
        self.precision, self.channels_last = precision, bool(channels_last)
        self.compile, self.compile_mode, self.compile_backend = bool(compile), compile_mode, compile_backend
        self.static_batch = None if static_batch is None else int(static_batch)
        self.precision_on_cpu, self.compile_on_cpu = bool(precision_on_cpu), bool(compile_on_cpu)
        self._compiled: Any = None
        self._formatted = False

    def uses_bf16(self, device: torch.device) -> bool:
        """Whether a call on ``device`` autocasts to bfloat16 (False: the float32 fallback)."""
        if self.precision != "bf16":
            return False
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and self.precision_on_cpu

    def uses_compile(self, device: torch.device) -> bool:
        """Whether a call on ``device`` runs the compiled network (False: eager)."""
        return self.compile and (device.type != "cpu" or self.compile_on_cpu)

    def _callable(self, device: torch.device):
        if self.channels_last and not self._formatted:
            self.network.to(memory_format=torch.channels_last)
            self._formatted = True
        if not self.uses_compile(device):
            return self.network
        if self._compiled is None:
            self._compiled = torch.compile(self.network, mode=self.compile_mode, backend=self.compile_backend)
        return self._compiled

    def _run(self, x: torch.Tensor, timesteps: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        network = self._callable(x.device)
        if self.channels_last and _memory_format(x) is not None:
            x = x.contiguous(memory_format=_memory_format(x))
            kwargs = {k: v.contiguous(memory_format=_memory_format(v))
                      if isinstance(v, torch.Tensor) and _memory_format(v) is not None else v
                      for k, v in kwargs.items()}  # fmt: skip
        bf16 = self.uses_bf16(x.device)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            output = network(x, timesteps=timesteps, **kwargs)
        if self.uses_compile(x.device):  # CUDA graphs reuse their output buffers at the next call: keep a copy
            output = output.clone()
        return output.to(x.dtype).contiguous()

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        batch, size = x.shape[0], self.static_batch
        if size is None or batch == size:
            return self._run(x, timesteps, kwargs)
        inputs = {"x": x, "timesteps": timesteps, **kwargs}
        outputs = []
        for start in range(0, batch, size):
            rows = min(size, batch - start)
            chunk = _map_batch(inputs, batch, lambda value, part=slice(start, start + rows): value[part])
            if rows < size:
                chunk = _map_batch(chunk, rows, lambda value: _pad_rows(value, size))
            x_chunk, t_chunk = chunk.pop("x"), chunk.pop("timesteps")
            outputs.append(self._run(x_chunk, t_chunk, chunk)[:rows])
        return torch.cat(outputs, dim=0)
