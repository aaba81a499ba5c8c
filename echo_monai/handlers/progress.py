"""A tqdm progress bar for MONAI engines that shows the running loss."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar
from monai.handlers import from_engine

__all__ = ["ProgressBar"]


def _loss(output: Any) -> dict[str, float]:
    try:
        value = from_engine(["loss"], first=True)(output)[0]
    except (KeyError, TypeError, IndexError):
        return {}
    return {"loss": float(value.detach()) if hasattr(value, "detach") else float(value)}


class ProgressBar(IgniteProgressBar):
    """Ignite's ``ProgressBar`` attached the MONAI way (``handler.attach(engine)``), showing the loss of a trainer.

    Args:
        show_loss: display the iteration loss (MONAI trainers put it under ``"loss"``).
        kwargs: passed to Ignite's ``ProgressBar`` (``persist``, ``bar_format``, ``ncols``...).

    Example:
        >>> ProgressBar(persist=True).attach(trainer)
    """

    def __init__(self, show_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.show_loss = show_loss

    def attach(self, engine: Engine, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.show_loss and not args and "output_transform" not in kwargs:
            kwargs["output_transform"] = _loss
        super().attach(engine, *args, **kwargs)
