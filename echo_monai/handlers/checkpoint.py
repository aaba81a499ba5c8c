"""Finding the checkpoint to resume from, for MONAI's ``CheckpointLoader``.

Bundles save with ``CheckpointSaver(save_dict={..., "trainer": trainer}, epoch_level=False, save_interval=N,
save_final=True)``: files ``checkpoint_iteration=N.pt`` at the interval and ``checkpoint_final_iteration=N.pt`` at
the end or when training stops on an exception. Loading the ``trainer`` entry restores its iteration and epoch, so an
interrupted run continues at the iteration it reached.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["latest_checkpoint"]

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
