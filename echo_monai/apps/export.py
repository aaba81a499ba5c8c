"""Exporting a synthetic video dataset in the EchoNet-Dynamic layout: sharded across processes, resumable.

Each process (``torchrun`` rank) writes its own share of the videos, one ``Videos/<name>.avi`` and one
``rows/<name>.json`` per video, both through temporary names, so a rerun skips what is finished and never sees a
partial file. :meth:`EchoNetExporter.finalize` (rank 0, once every rank is done) gathers the rows into
``FileList.csv``, readable by :class:`echo_monai.data.EchoNetDynamic` with ``require_tracings=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echo_monai.data.atomic import write_avi, write_csv, write_json
from echo_monai.data.phantom.echonet_writer import FILELIST_COLUMNS, TRACING_COLUMNS

__all__ = ["shard", "EchoNetExporter"]

SPLITS = ("TRAIN", "VAL", "TEST")


def shard(items: Sequence[Any], rank: int | None = None, world_size: int | None = None) -> list[Any]:
    """This process's share of ``items``: every ``world_size``-th item from ``rank``.

    Args:
        items: the whole work list, in the same order on every rank.
        rank: this process's rank; default from ``torch.distributed`` when initialised, else ``$RANK``, else 0.
        world_size: number of processes; default likewise (``$WORLD_SIZE``, else 1).
    """
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard: need 0 <= rank < world_size, got rank {rank} and world_size {world_size}.")
    return list(items[rank::world_size])


class EchoNetExporter:
    """Write generated echo videos with their requested ejection fraction as an EchoNet-Dynamic dataset.

    Args:
        root: dataset folder.
        fps: frame rate stored in the AVIs and ``FileList.csv``.

    Example:
        >>> exporter = EchoNetExporter("synthetic_echonet", fps=32)
        >>> for item in exporter.pending(shard(requests)):
        ...     exporter.write(item["name"], generate(item), ejection_fraction=item["ejection_fraction"])
        >>> exporter.finalize()  # rank 0, after every rank finished
    """

    def __init__(self, root: str | os.PathLike, fps: float = 32.0) -> None:
        if fps <= 0:
            raise ValueError(f"EchoNetExporter: fps must be > 0, got {fps}.")
        self.root, self.fps = Path(root), float(fps)

    def paths(self, name: str) -> dict[str, Path]:
        return {"video": self.root / "Videos" / f"{name}.avi", "row": self.root / "rows" / f"{name}.json"}

    def pending(self, items: Sequence[Mapping[str, Any]], key: str = "name") -> list[Mapping[str, Any]]:
        """The items (dicts with ``key``) whose video or row is not written yet."""
        return [item for item in items if not all(p.is_file() for p in self.paths(str(item[key])).values())]

    def write(
        self,
        name: str,
        video: torch.Tensor | np.ndarray,
        ejection_fraction: float,
        split: str = "TRAIN",
        edv: float | None = None,
        esv: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write one video ``(1, T, H, W)`` or ``(T, H, W)``, in [-1, 1] (float) or 0-255 (uint8), and its row.

        ``extra`` holds JSON-serialisable facts kept in the row file (``rows/<name>.json``) but not in
        ``FileList.csv`` (e.g. how many references the privacy gate rejected before this one).

        Raises:
            ValueError: naming the video for an EF outside 0-100, an unknown split or a wrong shape.
        """
        if not 0.0 <= float(ejection_fraction) <= 100.0:
            raise ValueError(f"EchoNetExporter: {name}: ejection_fraction must be in 0-100 %, got {ejection_fraction}.")
        if split.upper() not in SPLITS:
            raise ValueError(f"EchoNetExporter: {name}: split must be one of {SPLITS}, got {split!r}.")
        frames = torch.as_tensor(video).detach().cpu()
        if frames.ndim == 4 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 3 or frames.shape[0] < 1:
            raise ValueError(
                f"EchoNetExporter: {name}: expected a video (1, T, H, W) or (T, H, W), got {tuple(frames.shape)}."
            )
        if frames.dtype != torch.uint8:
            frames = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        paths = self.paths(name)
        write_avi(paths["video"], frames.numpy(), self.fps)
        row = {
            "FileName": name,
            "EF": round(float(ejection_fraction), 4),
            "ESV": "" if esv is None else float(esv),
            "EDV": "" if edv is None else float(edv),
            "FrameHeight": int(frames.shape[1]),
            "FrameWidth": int(frames.shape[2]),
            "FPS": self.fps,
            "NumberOfFrames": int(frames.shape[0]),
            "Split": split.upper(),
        }
        row.update({k: v for k, v in (extra or {}).items() if k not in row})
        write_json(paths["row"], row)
        return paths["video"]

    def finalize(self) -> Path:
        """Gather every written row into ``FileList.csv`` (and an empty ``VolumeTracings.csv``); returns the root.

        Raises:
            ValueError: naming the file for a row file that is not valid JSON or lacks a column.
        """
        rows = []
        for path in sorted((self.root / "rows").glob("*.json")):
            try:
                row = json.loads(path.read_text())
                rows.append([row[column] for column in FILELIST_COLUMNS])
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(
                    f"EchoNetExporter: row file {str(path)!r} is invalid ({error}); delete it and rerun."
                ) from error
        write_csv(self.root / "FileList.csv", FILELIST_COLUMNS, rows)
        write_csv(self.root / "VolumeTracings.csv", TRACING_COLUMNS, [])
        return self.root
