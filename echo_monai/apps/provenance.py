"""What a trained checkpoint was built with, kept beside it: ``<ckpt_dir>/trained_with.json``.

``echo-monai train`` records, per stage, the bundle, its version, the preset and the settings it was given
(``--KEY VALUE``, without paths). A later ``infer``, ``evaluate`` or further ``train`` stage on the same checkpoints
reads the record back: it takes the recorded preset when none is given and every recorded setting that the command
does not set itself, so a model trained with other sizes (the demo's, say) is reused without re-typing them; a setting
given that differs from the recorded one is named in a warning. ``--ckpt_path PATH`` reads the record beside
``PATH``.

Training-run knobs (epochs, batch sizes, learning rates, intervals, seeds, splits) and paths are recorded but never
carried over: they say how a model was trained, not how it is built.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from echo_monai.data.atomic import write_json

__all__ = ["RECORD_FILE", "carried_settings", "read_record", "write_record"]

logger = logging.getLogger(__name__)

RECORD_FILE = "trained_with.json"
#: recorded but not carried over to later commands
NOT_CARRIED = (
    "bundle_root", "*_dir", "*_path", "*_ckpt", "*_cache", "ckpt_path", "epochs", "*_epochs", "batch_size",
    "*_batch_size", "learning_rate", "*_learning_rate", "*_interval", "preview_*", "num_workers", "ema_*", "seed",
    "*_split", "*_splits", "copies", "max_*", "generation::*", "resize_label_maps", "num_videos", "mode",
)  # fmt: skip


def _carried(key: str) -> bool:
    return not any(fnmatch.fnmatchcase(key, pattern) for pattern in NOT_CARRIED)


def read_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The record in ``folder`` (``{}`` when there is none or it cannot be read, with a warning for the latter)."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("ignoring %s: it cannot be read (%s)", path, error)
        return {}
    return record if isinstance(record, dict) else {}


def write_record(
    folder: str | os.PathLike,
    bundle: str,
    version: str | None,
    stage: str,
    preset: str | None,
    overrides: Mapping[str, Any],
) -> Path:
    """Record (atomically) the preset and settings a training stage runs with, beside its checkpoints."""
    record = read_record(folder)
    stages = dict(record.get("stages", {}))
    stages[stage] = {"preset": preset, "settings": {k: v for k, v in overrides.items() if k != "bundle_root"}}
    return write_json(Path(folder) / RECORD_FILE, {"bundle": bundle, "version": version, "stages": stages})


def carried_settings(record: Mapping[str, Any], bundle: str) -> tuple[str | None, dict[str, Any]]:
    """The preset and the settings a record carries to a later command (every stage's, later stages winning).

    Raises:
        ValueError: the record belongs to another bundle.
    """
    if not record:
        return None, {}
    if record.get("bundle") not in (None, bundle):
        raise ValueError(
            f"the checkpoints' {RECORD_FILE} was written by bundle '{record.get('bundle')}', not '{bundle}'; point "
            "ckpt_dir (or --ckpt_path) at this bundle's models."
        )
    preset, settings = None, {}
    for entry in record.get("stages", {}).values():
        preset = entry.get("preset") or preset
        settings.update({k: v for k, v in entry.get("settings", {}).items() if _carried(k)})
    return preset, settings
