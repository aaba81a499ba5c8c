"""Checkpoints of bundle stages: the newest one to resume from (for MONAI's ``CheckpointLoader``), and the trained
weights of a stage loaded where a later stage needs them (:class:`StageCheckpointLoader`).

Bundles save with ``CheckpointSaver(save_dict={..., "trainer": trainer}, epoch_level=False, save_interval=N,
save_final=True)``: files ``checkpoint_iteration=N.pt`` at the interval and ``checkpoint_final_iteration=N.pt`` at
the end or when training stops on an exception. Loading the ``trainer`` entry restores its iteration and epoch, so an
interrupted run continues at the iteration it reached.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["latest_checkpoint", "load_stage_checkpoint", "StageCheckpointLoader"]

_ITERATION = re.compile(r"iteration=(\d+)")


def latest_checkpoint(directory: str | os.PathLike, prefix: str = "") -> str | None:
    """The checkpoint with the highest iteration in ``directory`` (by name, then modification time), or None.

    Args:
        directory: where ``CheckpointSaver`` writes; a missing directory means a fresh run.
        prefix: only files starting with this ``file_prefix``.

    Returns:
        the path as a string (what ``CheckpointLoader(load_path=...)`` takes), or None when there is nothing to
        resume, so a config can write ``_disabled_: "$@resume_path is None"``.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob(f"{prefix}*.pt") if p.is_file() and _ITERATION.search(p.name)]
    if not candidates:
        return None

    def _key(path: Path) -> tuple[int, float]:
        return int(_ITERATION.search(path.name).group(1)), path.stat().st_mtime  # type: ignore[union-attr]

    return str(max(candidates, key=_key))


class StageCheckpointLoader:
    """The trained weights of a bundle stage: loaded in place into modules, once, when first needed.

    One object per checkpoint file is the one path to it in a config: attached to an engine (an evaluator's
    ``val_handlers``) it loads when the engine starts, so building the engine needs no checkpoint; a stage that needs
    the weights while the config is parsed (a pipeline, a latent cache checked against its autoencoder) calls
    :meth:`load`, which returns the first module. Either way the file is read once.

    Errors are :func:`load_stage_checkpoint`'s: a missing file names the stage to run first; a checkpoint of another
    network (missing or unexpected keys, other shapes) says so in one line.

    Args:
        load_path: the checkpoint file.
        load_dict: name in the checkpoint -> module to restore (a ``DistributedDataParallel`` wrapper is unwrapped).
        stage: the stage that produces the checkpoint, for the messages (e.g. ``"echo_seg_ddpm train"``).
        map_location: where the tensors go.

    Example:
        >>> weights = StageCheckpointLoader("models/model.pt", {"model": net}, stage="echo_seg_ddpm train")
        >>> weights.attach(evaluator)          # loads when the evaluator starts
        >>> trained_net = weights.load()       # or now (once)
    """

    def __init__(
        self, load_path: str | os.PathLike, load_dict: dict, stage: str = "training", map_location: Any = "cpu"
    ) -> None:
        if not load_dict:
            raise ValueError("StageCheckpointLoader: load_dict must name at least one module.")
        self.load_path, self.load_dict, self.stage, self.map_location = str(load_path), load_dict, stage, map_location
        self.loaded = False

    def load(self) -> Any:
        """Restore the modules from the checkpoint (the first call only); returns the first module."""
        if not self.loaded:
            load_stage_checkpoint(self.load_path, self.load_dict, self.stage, self.map_location)
            self.loaded = True
        return next(iter(self.load_dict.values()))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        self.load()


def load_stage_checkpoint(
    load_path: str | os.PathLike, load_dict: dict, stage: str = "training", map_location: Any = "cpu"
) -> Any:
    """Restore ``load_dict`` from a checkpoint outside an engine, with :class:`StageCheckpointLoader`'s errors.

    For configs that need trained weights while they are parsed (a pipeline stage reading an earlier stage's
    networks, a latent cache checked against its autoencoder).

    Args:
        load_path: the checkpoint file (a dict of state dicts, as ``CheckpointSaver`` writes; a single object's
            state dict is stored unwrapped).
        load_dict: name in the checkpoint -> module to restore.
        stage: the stage that produces the checkpoint, named in the messages.
        map_location: passed to ``torch.load``.

    Returns:
        the first module of ``load_dict`` (so a config can write ``net: "$load_stage_checkpoint(...)"``).

    Raises:
        FileNotFoundError: the file is missing (names the stage to run first).
        ValueError: the checkpoint does not fit the modules.

    Example:
        >>> vae = load_stage_checkpoint("models/autoencoder.pt", {"autoencoder": vae}, "echo_flow train --stage vae")
    """
    if not load_dict:
        raise ValueError("load_stage_checkpoint: load_dict must name at least one module.")
    if not Path(load_path).is_file():
        raise FileNotFoundError(
            f"checkpoint '{load_path}' does not exist: run the {stage} stage first, "
            "or point the checkpoint path at a trained checkpoint."
        )
    checkpoint = torch.load(str(load_path), map_location=map_location, weights_only=True)
    first_name = next(iter(load_dict))
    if len(load_dict) == 1 and first_name not in checkpoint:
        checkpoint = {first_name: checkpoint}  # CheckpointSaver stores a single object's state dict unwrapped
    try:
        for name, module in load_dict.items():
            target = module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
            target.load_state_dict(checkpoint[name])
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"checkpoint '{load_path}' does not fit the network(s) {sorted(load_dict)} of the {stage} stage "
            f"(made by another network or configuration?): {first}"
        ) from e
    return next(iter(load_dict.values()))
