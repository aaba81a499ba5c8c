"""Exponential moving average of the weights, as every diffusion paper samples from."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

__all__ = ["EMA"]


class EMA(EMAHandler):
    """Ignite's ``EMAHandler`` in the diffusion papers' terms: ``ema = decay * ema + (1 - decay) * weights``.

    Adds what diffusion training uses: a ``start_iteration`` before which the average just copies the weights
    (so early, poor weights do not linger) and an ``update_every`` interval. ``ema_model`` is a regular
    ``nn.Module``: checkpoint it next to the network and sample from it.

    Args:
        model: the trained network (a DDP wrapper is unwrapped).
        decay: EMA decay per update, in (0, 1); 0.9999 in DDPM/guided-diffusion, 0.999 for short runs.
        start_iteration: iterations before averaging starts (weights are copied until then).
        update_every: update the average every this many iterations.
        handle_buffers: ``"copy"`` (default), ``"update"`` or ``"ema_train"``, as in Ignite.

    Example:
        >>> ema = EMA(network, decay=0.999)
        >>> ema.attach(trainer)
        >>> samples = sampler(noise, ema.ema_model)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float = 0.9999,
        start_iteration: int = 0,
        update_every: int = 1,
        handle_buffers: str = "copy",
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA: decay must be in (0, 1), got {decay}.")
        if start_iteration < 0:
            raise ValueError(f"EMA: start_iteration must be >= 0, got {start_iteration}.")
        if update_every < 1:
            raise ValueError(f"EMA: update_every must be >= 1, got {update_every}.")
        super().__init__(model, momentum=1.0 - decay, handle_buffers=handle_buffers)
        self.decay = float(decay)
        self.start_iteration = int(start_iteration)
        self.update_every = int(update_every)

    def attach(self, engine: Engine, name: str = "ema_momentum", event=None) -> None:  # type: ignore[override]
        """Update the average after every ``update_every`` iterations of ``engine``."""
        super().attach(engine, name=name, event=event or Events.ITERATION_COMPLETED(every=self.update_every))

    def _update_ema_model(self, engine: Engine, name: str) -> None:
        if engine.state.iteration <= self.start_iteration:
            with torch.no_grad():
                for ema_p, p in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
                    ema_p.copy_(p.data)
                for ema_b, b in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
                    ema_b.data = b.data.clone()
            return
        super()._update_ema_model(engine, name)
        with torch.no_grad():  # frozen parameters (a ControlNet's base) are constants: keep them exact, not averaged
            for ema_p, p in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
                if not p.requires_grad:
                    ema_p.copy_(p.data)
