"""The training-stage recipe every bundle stage uses: MONAI's stock trainer plus the handlers a stage needs.

:func:`make_training_stage` returns a ``SupervisedTrainer`` for one objective (a ``PrepareBatch`` and a loss) with
validation, an optional EMA of the weights, sample previews, logging to the console and TensorBoard, a progress bar,
periodic checkpoints, the final weights file and automatic resume. :func:`attach_stage_handlers` is the part shared
with the adversarial autoencoder recipe (:func:`echo_monai.engines.make_autoencoder_trainer`).

Roles under ``torchrun`` (read from ``torch.distributed`` when it is initialised)::

    every rank    resume from the newest checkpoint, EMA, validation (metrics are reduced across ranks by Ignite)
    rank 0 only   checkpoints and the final weights, console / TensorBoard logs, progress bar, previews

so a multi-GPU overlay only wraps the network (:func:`echo_monai.engines.distributed_data_parallel`) and gives a
``DistributedSampler``.

Checkpoint files in ``ckpt_dir`` (``<prefix>_`` is left out for an empty prefix)::

    <prefix>_checkpoint_iteration=N.pt        every save_interval iterations, the last n_saved kept
    <prefix>_checkpoint_final_iteration=N.pt  at the end, or when training stops on an exception
    <final_filename>                          the weights to sample from (the EMA weights when there is an EMA)

Every file is written to a temporary name, flushed and renamed (:class:`echo_monai.handlers.AtomicCheckpointSaver`),
so a kill during a save leaves the previous checkpoints intact; temporary files of killed runs are removed at the next
start, and after training only the ``n_saved`` newest checkpoints of the stage are kept (over every run). Resume loads
the newest of the first two kinds that can be read (see :func:`echo_monai.handlers.latest_checkpoint`, which names
any file it skips and why), restoring the network, optimiser, EMA and the trainer's iteration, so a rerun continues
where the last one stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    CheckpointLoader,
    IgniteMetricHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)
from monai.inferers import Inferer, SimpleInferer
from torch.utils.data import Dataset, Sampler

from echo_monai.data.atomic import remove_stale_temporaries
from echo_monai.engines.utils import dataset_name, rank_and_world_size
from echo_monai.handlers.checkpoint import AtomicCheckpointSaver, latest_checkpoint, rotate_checkpoints
from echo_monai.handlers.ema import EMA
from echo_monai.handlers.progress import ProgressBar

__all__ = ["ResumeLoader", "attach_stage_handlers", "checkpoint_prefix", "make_training_stage", "scalar_output"]

logger = logging.getLogger(__name__)


def scalar_output(key: str = "loss") -> Callable[[Any], float]:
    """An ``output_transform`` giving the engine output's ``key`` as a float (what Stats/TensorBoard handlers log).

    MONAI's ``from_engine([key], first=True)`` returns a one-element tuple, which the handlers skip as non-scalar.
    """
    take = from_engine([key], first=True)

    def _transform(output: Any) -> float:
        value = take(output)[0]
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    return _transform


def checkpoint_prefix(prefix: str) -> str:
    """The file-name start of a stage's resumable checkpoints: ``"<prefix>_checkpoint"`` or ``"checkpoint"``."""
    return f"{prefix}_checkpoint" if prefix else "checkpoint"


def attach_stage_handlers(
    trainer: Engine,
    save_dict: Mapping[str, Any],
    final_dict: Mapping[str, Any] | None,
    ckpt_dir: str | os.PathLike,
    prefix: str = "",
    final_filename: str | None = "model.pt",
    save_interval: int = 500,
    n_saved: int | None = 2,
    resume: bool = True,
    loss_keys: Sequence[str] = ("loss",),
    summary_writer: Any | None = None,
    progress: bool = True,
    map_location: Any = "cpu",
    rank: int | None = None,
) -> str | None:
    """Attach resume, checkpoints, logs and the progress bar to ``trainer`` by rank role (see the module docstring).

    The checkpoint savers come before the loggers, so the final checkpoint is written when training stops on an
    exception (Ignite runs the first ``EXCEPTION_RAISED`` handler).

    Args:
        trainer: a MONAI trainer (``SupervisedTrainer``, ``AdversarialTrainer``).
        save_dict: what the resumable checkpoints hold (networks, optimisers, EMA, ``"trainer"``).
        final_dict: what the final weights file holds; None for no final file.
        ckpt_dir: checkpoint folder.
        prefix: file prefix of the stage's checkpoints (several stages can share ``ckpt_dir``).
        final_filename: name of the final weights file.
        save_interval: iterations between resumable checkpoints (0: only the final one).
        n_saved: resumable checkpoints kept (None: all).
        resume: load the newest checkpoint of this stage when there is one.
        loss_keys: engine output keys logged as scalars every iteration (the first one in the progress bar).
        summary_writer: a TensorBoard ``SummaryWriter`` (rank 0), or None.
        progress: show a progress bar.
        map_location: where resumed tensors go.
        rank: this process's rank; default from ``torch.distributed``.

    Returns:
        the checkpoint resumed from, or None.
    """
    if save_interval < 0:
        raise ValueError(f"attach_stage_handlers: save_interval must be >= 0, got {save_interval}.")
    rank = rank_and_world_size()[0] if rank is None else int(rank)
    if rank == 0:
        for path in remove_stale_temporaries(ckpt_dir):
            logger.info("removed %s, left by a process that was killed while saving", path)
    resume_path = latest_checkpoint(ckpt_dir, checkpoint_prefix(prefix)) if resume else None
    if resume_path is not None:
        logger.info("resuming from %s", resume_path)
        ResumeLoader(load_path=resume_path, load_dict=dict(save_dict), map_location=map_location).attach(trainer)
    # every rank builds the savers (Ignite's DiskSaver synchronises the ranks when it is built); rank 0 attaches them
    savers = [
        AtomicCheckpointSaver(
            str(ckpt_dir),
            dict(save_dict),
            file_prefix=prefix,
            epoch_level=False,
            save_interval=save_interval,
            n_saved=n_saved,
            save_final=True,
        )
    ]
    if final_dict:
        savers.append(
            AtomicCheckpointSaver(str(ckpt_dir), dict(final_dict), save_final=True, final_filename=final_filename)
        )
    if rank != 0:
        return resume_path
    for saver in savers:
        saver.attach(trainer)
    # after the final save: keep the n_saved newest of this stage's checkpoints, over every run (a resumed run's
    # Ignite saver only knows its own files)
    trainer.add_event_handler(
        Events.COMPLETED, lambda _: rotate_checkpoints(ckpt_dir, checkpoint_prefix(prefix), n_saved)
    )
    for key in loss_keys:
        StatsHandler(tag_name=f"train_{key}", output_transform=scalar_output(key)).attach(trainer)
        if summary_writer is not None:
            TensorBoardStatsHandler(
                summary_writer, tag_name=f"train_{key}", output_transform=scalar_output(key)
            ).attach(trainer)
    if progress:
        ProgressBar(persist=True).attach(trainer)
    return resume_path


class ResumeLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` for resuming a stage: a checkpoint that does not fit the stage's networks or
    optimisers gets one line naming the file and what to do, instead of a state-dict dump."""

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except (RuntimeError, KeyError, ValueError) as error:
            first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"cannot resume from '{self.load_path}': it does not fit this stage's {sorted(self.load_dict)} (made "
                f"with other settings?): {first}. Use another ckpt_dir, or delete this stage's checkpoints to start "
                "again."
            ) from error


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, sampler: Sampler | None, **kwargs: Any) -> DataLoader:
    if len(dataset) == 0:  # type: ignore[arg-type]
        role = "training" if shuffle else "validation"
        raise ValueError(f"make_training_stage: the {role} set, {dataset_name(dataset)}, is empty; check its split.")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, **kwargs)


def make_training_stage(
    network: torch.nn.Module,
    train_dataset: Dataset,
    prepare_batch: Callable,
    loss_function: Callable,
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    ckpt_dir: str | os.PathLike,
    prefix: str = "",
    final_filename: str = "model.pt",
    val_dataset: Dataset | None = None,
    val_interval: int = 1,
    batch_size: int = 8,
    val_batch_size: int | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    train_sampler: Sampler | None = None,
    val_sampler: Sampler | None = None,
    inferer: Inferer | None = None,
    ema: EMA | None = None,
    previews: Sequence[Any] = (),
    log_dir: str | os.PathLike | None = None,
    progress: bool = True,
    save_interval: int = 500,
    n_saved: int | None = 2,
    resume: bool = True,
    key_metric_name: str = "val_loss",
    val_loss_function: Callable | None = None,
    val_output_key: str | None = None,
    train_handlers: Sequence[Any] = (),
    device: str | torch.device = "cpu",
    amp: bool = False,
    rank: int | None = None,
) -> SupervisedTrainer:
    """A bundle training stage: MONAI's ``SupervisedTrainer`` on one objective with everything a stage needs.

    Args:
        network: the trained network, on ``device`` (``DistributedDataParallel``-wrapped under torchrun).
        train_dataset: training items (dicts) for ``prepare_batch``.
        prepare_batch: the objective, e.g. :class:`echo_monai.engines.FlowMatchingPrepareBatch`.
        loss_function: e.g. ``torch.nn.MSELoss()``; also the validation metric.
        optimizer: over ``network``'s parameters.
        max_epochs: epochs to train (a resumed run trains up to this total).
        ckpt_dir: checkpoint folder.
        prefix: file prefix of this stage's checkpoints (``"video"``, ``"image"``...; ``""`` for none).
        final_filename: the weights file the bundle samples from.
        val_dataset: validation items; None for no validation.
        val_interval: epochs between validations.
        batch_size: training batch size (per rank).
        val_batch_size: validation batch size; default ``batch_size``.
        num_workers: data-loading workers of the training loader.
        drop_last: drop the last incomplete training batch (contrastive objectives need full batches).
        train_sampler: e.g. a ``DistributedSampler`` (then the loader does not shuffle by itself).
        val_sampler: the validation sampler (a ``DistributedSampler`` with ``even_divisible=False``).
        inferer: the trainer's inferer; default ``SimpleInferer``.
        ema: an :class:`echo_monai.handlers.EMA` of ``network`` (its own config id, so previews can name its
            ``ema_model``); validation, previews and the final file then use the averaged weights.
        previews: :class:`echo_monai.handlers.SamplePreviewWriter` handlers (rank 0; given the TensorBoard writer
            when they have none).
        log_dir: TensorBoard folder (rank 0); None for no TensorBoard.
        progress: show a progress bar.
        save_interval: iterations between resumable checkpoints.
        n_saved: resumable checkpoints kept.
        resume: continue from this stage's newest checkpoint in ``ckpt_dir``.
        key_metric_name: name of the validation loss metric.
        val_loss_function: the validation metric when it is not ``loss_function`` (e.g. L1 of one output, for an
            objective whose loss reads a dict of outputs, which MONAI's metric handlers do not take).
        val_output_key: with dict-valued network outputs and targets, the entry the validation metric compares
            (``"middle"`` for the frame-interpolation objective); None for tensor outputs.
        train_handlers: further handlers, attached on every rank after the recipe's own.
        device: training device.
        amp: automatic mixed precision.
        rank: this process's rank; default from ``torch.distributed``.

    Returns:
        the trainer; its validator is ``trainer.validator`` (None without ``val_dataset``) and the checkpoint it
        resumed from ``trainer.resumed_from``.

    Example:
        >>> trainer = make_training_stage(net, train_ds, FlowMatchingPrepareBatch(RFlowScheduler(1000)),
        ...                               torch.nn.MSELoss(), torch.optim.AdamW(net.parameters()), 10, "models")
        >>> trainer.run()
    """
    if max_epochs < 1:
        raise ValueError(f"make_training_stage: max_epochs must be >= 1, got {max_epochs}.")
    if batch_size < 1 or val_interval < 1:
        raise ValueError(
            f"make_training_stage: batch_size and val_interval must be >= 1, got {batch_size}, {val_interval}."
        )
    rank = rank_and_world_size()[0] if rank is None else int(rank)
    device = torch.device(device)
    summary_writer = None
    if log_dir is not None and rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        summary_writer = SummaryWriter(log_dir=str(log_dir))
    sampled_network = ema.ema_model if ema is not None else network
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=max_epochs,
        train_data_loader=_loader(
            train_dataset, batch_size, True, train_sampler, num_workers=num_workers, drop_last=drop_last
        ),
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        inferer=inferer if inferer is not None else SimpleInferer(),
        prepare_batch=prepare_batch,
        decollate=False,
        amp=amp,
    )
    save_dict: dict[str, Any] = {"model": network, "optimizer": optimizer, "trainer": trainer}
    if ema is not None:
        save_dict["ema"] = ema.ema_model
    trainer.resumed_from = attach_stage_handlers(
        trainer,
        save_dict,
        {"model": sampled_network},
        ckpt_dir,
        prefix,
        final_filename,
        save_interval,
        n_saved,
        resume,
        summary_writer=summary_writer,
        progress=progress,
        map_location=device,
        rank=rank,
    )
    if ema is not None:
        ema.attach(trainer)
    trainer.validator = None
    if val_dataset is not None:
        trainer.validator = _validator(
            sampled_network, val_dataset, prepare_batch, val_loss_function or loss_function, key_metric_name,
            val_batch_size or batch_size, val_sampler, device, amp, summary_writer, trainer, rank, val_output_key,
        )  # fmt: skip
        ValidationHandler(validator=trainer.validator, interval=val_interval, epoch_level=True).attach(trainer)
    if rank == 0:
        for preview in previews:
            if summary_writer is not None and getattr(preview, "summary_writer", None) is None:
                preview.summary_writer = summary_writer
            preview.attach(trainer)
    for handler in train_handlers:
        handler.attach(trainer)
    return trainer


def _pred_and_label(key: str | None) -> Callable[[Any], tuple[Any, Any]]:
    """The (prediction, target) pair the validation metric compares: the engine output's, or one entry of them."""
    pair = from_engine(["pred", "label"])
    if key is None:
        return pair

    def entry(output: Any) -> tuple[Any, Any]:
        pred, label = pair(output)
        return pred[key], label[key]

    return entry


def _validator(
    network: torch.nn.Module,
    dataset: Dataset,
    prepare_batch: Callable,
    loss_function: Callable,
    metric_name: str,
    batch_size: int,
    sampler: Sampler | None,
    device: torch.device,
    amp: bool,
    summary_writer: Any | None,
    trainer: Engine,
    rank: int,
    output_key: str | None = None,
) -> SupervisedEvaluator:
    """The objective's loss on held-out items (with the EMA weights when there are some); lower is better."""
    handlers: list[Any] = []
    if rank == 0:
        handlers.append(StatsHandler(iteration_log=False))
        if summary_writer is not None:
            handlers.append(
                TensorBoardStatsHandler(
                    summary_writer,
                    iteration_log=False,
                    output_transform=lambda _: None,
                    global_epoch_transform=lambda _: trainer.state.epoch,
                )
            )
    return SupervisedEvaluator(
        device=device,
        val_data_loader=_loader(dataset, batch_size, False, sampler),
        network=network,
        inferer=SimpleInferer(),
        prepare_batch=prepare_batch,
        key_val_metric={
            metric_name: IgniteMetricHandler(loss_fn=loss_function, output_transform=_pred_and_label(output_key))
        },
        metric_cmp_fn=lambda current, previous: current < previous,
        val_handlers=handlers,
        decollate=False,
        amp=amp,
    )
