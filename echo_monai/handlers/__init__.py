from __future__ import annotations

from echo_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    CheckpointReadError,
    StageCheckpointLoader,
    latest_checkpoint,
    load_stage_checkpoint,
    probe_checkpoint,
    read_checkpoint,
    rotate_checkpoints,
    stage_checkpoints,
)
from echo_monai.handlers.ema import EMA
from echo_monai.handlers.preview import SamplePreviewWriter, make_grid, write_video
from echo_monai.handlers.progress import ProgressBar
from echo_monai.handlers.trained_on import TrainedOn, check_trained_on, trained_on_path

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "CheckpointReadError",
    "probe_checkpoint",
    "read_checkpoint",
    "rotate_checkpoints",
    "stage_checkpoints",
    "EMA",
    "ProgressBar",
    "SamplePreviewWriter",
    "StageCheckpointLoader",
    "TrainedOn",
    "check_trained_on",
    "trained_on_path",
    "latest_checkpoint",
    "load_stage_checkpoint",
    "make_grid",
    "write_video",
]
