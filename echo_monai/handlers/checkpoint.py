"""Checkpoints of bundle stages: the newest one to resume from (for MONAI's ``CheckpointLoader``), and the trained
weights of a stage loaded where a later stage needs them (:class:`StageCheckpointLoader`).

Bundles save with ``CheckpointSaver(save_dict={..., "trainer": trainer}, epoch_level=False, save_interval=N,
save_final=True)``: files ``checkpoint_iteration=N.pt`` at the interval and ``checkpoint_final_iteration=N.pt`` at
the end or when training stops on an exception. Loading the ``trainer`` entry restores its iteration and epoch, so an
interrupted run continues at the iteration it reached.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from echo_monai.data.atomic import atomic_path

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "CheckpointReadError",
    "StageCheckpointLoader",
    "latest_checkpoint",
    "load_stage_checkpoint",
    "probe_checkpoint",
    "read_checkpoint",
    "rotate_checkpoints",
    "stage_checkpoints",
]

logger = logging.getLogger(__name__)

_ITERATION = re.compile(r"iteration=(\d+)")


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (empty, truncated, not a PyTorch file); the message names it."""


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with one clear error for an unreadable file.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointReadError: the file is empty, truncated or not a PyTorch checkpoint (names it and the cause).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointReadError(f"checkpoint '{path}' is empty (0 bytes; a save was interrupted?).")
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises anything on corrupt bytes
        cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointReadError(
            f"checkpoint '{path}' ({size} bytes) is not a readable PyTorch checkpoint (truncated or corrupt): {cause}"
        ) from error


def probe_checkpoint(path: str | os.PathLike) -> None:
    """Check that a checkpoint can be read without reading its tensors: the archive and its pickle are opened with
    the tensor data memory-mapped (``torch.load(mmap=True)``), so a truncated file (no zip directory at its end) or
    foreign bytes are found at the cost of a few kilobytes. A file that does not open this way (an old, non-zip
    checkpoint) is read whole by :func:`read_checkpoint`.

    Raises:
        FileNotFoundError / CheckpointReadError: as :func:`read_checkpoint`.
    """
    try:
        torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - decided by the full read, which names the file and the cause
        read_checkpoint(path)


def stage_checkpoints(directory: str | os.PathLike, prefix: str = "") -> list[Path]:
    """The resumable checkpoints (``<prefix>*iteration=N.pt``) in ``directory``, newest first (by iteration, then
    modification time)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    candidates = [p for p in folder.glob(f"{prefix}*.pt") if p.is_file() and _ITERATION.search(p.name)]

    def _key(path: Path) -> tuple[int, float]:
        return int(_ITERATION.search(path.name).group(1)), path.stat().st_mtime  # type: ignore[union-attr]

    return sorted(candidates, key=_key, reverse=True)


def latest_checkpoint(directory: str | os.PathLike, prefix: str = "") -> str | None:
    """The newest checkpoint in ``directory`` that can be read, or None; unreadable newer ones are skipped, each
    with a warning naming the file and why (a checkpoint cut short by a killed save, say).

    Args:
        directory: where ``CheckpointSaver`` writes; a missing directory means a fresh run.
        prefix: only files starting with this ``file_prefix``.

    Returns:
        the path as a string (what ``CheckpointLoader(load_path=...)`` takes), or None when there is nothing to
        resume.
    """
    for path in stage_checkpoints(directory, prefix):
        try:
            probe_checkpoint(path)
        except CheckpointReadError as error:
            logger.warning("resume: skipping %s: %s", path.name, error)
            continue
        return str(path)
    return None


def rotate_checkpoints(directory: str | os.PathLike, prefix: str = "", keep: int | None = 2) -> list[Path]:
    """Delete all but the ``keep`` newest readable resumable checkpoints of a stage (periodic and final ones of every
    run); unreadable ones among the newest are deleted too.

    Returns:
        the deleted paths.
    """
    if keep is None:
        return []
    if keep < 1:
        raise ValueError(f"rotate_checkpoints: keep must be >= 1 or None, got {keep}.")
    removed, kept = [], 0
    for path in stage_checkpoints(directory, prefix):
        if kept < keep:
            try:
                probe_checkpoint(path)
            except CheckpointReadError as error:  # cut short by a killed save: resume skips it, so it goes
                logger.warning("removing %s: %s", path.name, error)
            else:
                kept += 1
                continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through :func:`echo_monai.data.atomic.atomic_path`: a temporary sibling,
    flushed to the disk, then renamed, so a kill during a save never leaves a partial checkpoint under the real name.

    Args:
        dirname: checkpoint folder.
        filename: a fixed file name (MONAI's ``final_filename``), or None for Ignite's names.
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=str(dirname), atomic=True, create_dir=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        with atomic_path(path, fsync=True) as tmp:
            func(checkpoint, str(tmp), **self.kwargs)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose files are written atomically (:class:`AtomicDiskSaver`).

    Takes MONAI's arguments unchanged; the periodic, final and key-metric checkpoints all go through the atomic
    writer. Used for every checkpoint and weights file of the stage recipes.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._interval_checkpoint, self._key_metric_checkpoint):
            if checkpoint is not None:
                fixed = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = AtomicDiskSaver(save_dir, fixed)


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
        requires: name -> the loader (or network) of an earlier stage these weights must have been trained on;
            checked against the record :class:`echo_monai.handlers.TrainedOn` keeps beside the weights (a latent
            model trained on another autoencoder is refused in one line).

    Example:
        >>> weights = StageCheckpointLoader("models/model.pt", {"model": net}, stage="echo_seg_ddpm train")
        >>> weights.attach(evaluator)          # loads when the evaluator starts
        >>> trained_net = weights.load()       # or now (once)
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        load_dict: dict,
        stage: str = "training",
        map_location: Any = "cpu",
        requires: Mapping[str, Any] | None = None,
    ) -> None:
        if not load_dict:
            raise ValueError("StageCheckpointLoader: load_dict must name at least one module.")
        self.load_path, self.load_dict, self.stage, self.map_location = str(load_path), load_dict, stage, map_location
        self.requires = dict(requires or {})
        self.loaded = False

    def load(self) -> Any:
        """Restore the modules from the checkpoint (the first call only); returns the first module."""
        if not self.loaded:
            if self.requires:
                from echo_monai.handlers.trained_on import check_trained_on

                check_trained_on(self.load_path, self.requires, self.stage)
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
    try:
        checkpoint = read_checkpoint(load_path, map_location)
    except CheckpointReadError as error:
        message = f"{error}; re-run the {stage} stage, or point the checkpoint path at another file."
        raise CheckpointReadError(message) from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint '{load_path}' holds a {type(checkpoint).__name__}, not state dicts.")
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
