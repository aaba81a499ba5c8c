"""Dataset writers of the generation pipeline: one interface, one class per output layout.

Every writer puts an item's files under ``root`` through temporary names (``echo_monai.data.atomic``) and then its
*record* ``rows/<name>.json`` (the request's name, split, seed, provenance and what the pipeline adds, such as how
many references the privacy gate rejected). The record is written last, so an item counts as done only when all its
files and its record exist: :meth:`DatasetWriter.pending` drops finished items, which makes a job resumable per
file, and a crash never leaves a half-written item that looks finished. :meth:`DatasetWriter.finalize` gathers the
records into the layout's index (``FileList.csv`` for EchoNet, ``synthetic_sources.csv`` for CAMUS and PNG).

Layouts: :class:`EchoNetWriter` (videos, EchoNet-Dynamic), :class:`CamusWriter` (image + ``_gt`` label map, CAMUS
NIfTI), :class:`PngWriter` (image and label PNG pairs).
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echo_monai.apps.generation.requests import GenerationRequest
from echo_monai.data.atomic import write_avi, write_csv, write_json, write_png, write_text
from echo_monai.data.camus import save_camus_nifti
from echo_monai.data.phantom.echonet_writer import FILELIST_COLUMNS, TRACING_COLUMNS

__all__ = ["CamusWriter", "DatasetWriter", "EchoNetWriter", "PngWriter", "to_uint8"]

SPLITS = ("TRAIN", "VAL", "TEST")
SOURCE_COLUMNS = ("name", "split", "seed", "patient", "view", "phase", "copy", "label_map", "source_split")


def to_uint8(sample: torch.Tensor | np.ndarray) -> np.ndarray:
    """A sample in [-1, 1] (float) or 0-255 (uint8) as uint8 (values clipped)."""
    x = torch.as_tensor(sample).detach().cpu()
    if x.dtype == torch.uint8:
        return x.numpy()
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


class DatasetWriter(ABC):
    """Base of the writers: per-item files plus a record, resumable, gathered into an index at the end.

    Subclasses give :meth:`item_paths` and :meth:`write_item`, and may extend :meth:`check`, :meth:`record` and
    :meth:`finalize`.

    Args:
        root: dataset folder.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # --- the interface ------------------------------------------------------------------------------------------
    @abstractmethod
    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        """The files of one item (without its record)."""

    @abstractmethod
    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        """Write one generated ``sample`` (its batch entry, in [-1, 1]) with its conditioned ``item``."""

    def check(self, request: GenerationRequest) -> None:
        """Refuse, before anything is generated, a request this layout cannot hold (ValueError naming it)."""
        return None  # every request is fine unless a subclass says otherwise

    def record(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> dict[str, Any]:
        """The item's record (JSON-serialisable)."""
        return {"name": request.name, "split": request.split, "seed": request.seed, **dict(request.source)}

    # --- shared machinery ---------------------------------------------------------------------------------------
    def record_path(self, name: str) -> Path:
        return self.root / "rows" / f"{name}.json"

    def done(self, request: GenerationRequest) -> bool:
        """True when every file of the item and its record exist."""
        paths = [*self.item_paths(request).values(), self.record_path(request.name)]
        return all(p.is_file() for p in paths)

    def pending(self, requests: Sequence[GenerationRequest]) -> list[GenerationRequest]:
        """The requests whose item is not finished."""
        return [r for r in requests if not self.done(r)]

    def write(
        self,
        request: GenerationRequest,
        sample: torch.Tensor,
        item: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the item's files, then its record (with ``extra`` facts); returns the record's path."""
        item = item or {}
        self.write_item(request, sample, item)
        record = self.record(request, sample, item)
        record.update({k: v for k, v in (extra or {}).items() if k not in record})
        return write_json(self.record_path(request.name), record)

    def records(self, names: Sequence[str] | None = None) -> dict[str, dict]:
        """The records on disk (of ``names`` with finished files when given, else every record), by name.

        Raises:
            ValueError: naming the file of a record that is not valid JSON.
        """
        if names is None:
            paths = sorted((self.root / "rows").glob("*.json"))
        else:
            paths = [self.record_path(n) for n in names if self.record_path(n).is_file()]
        out = {}
        for path in paths:
            try:
                out[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{type(self).__name__}: record file {str(path)!r} is invalid ({error}); delete it and rerun."
                ) from error
        return out

    #: top-level entries of ``root`` a writer owns (removed by :meth:`clear`)
    managed: tuple[str, ...] = (
        "rows",
        "reports",
        "generation_report.json",
        "generation_fingerprint.json",
        "generation_settings.json",
        "synthetic_sources.csv",
    )

    def clear(self) -> None:
        """Remove everything this writer (and the pipeline) wrote under ``root``; other files are left alone."""
        for name in self.managed:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _finished(self, requests: Sequence[GenerationRequest] | None) -> dict[str, dict]:
        """Records of the finished items of ``requests`` (of every record when None), in request order."""
        if requests is None:
            return self.records()
        return self.records([r.name for r in requests if self.done(r)])

    def finalize(self, requests: Sequence[GenerationRequest] | None = None) -> Path:
        """Gather the records of the finished ``requests`` (every record when None) into ``synthetic_sources.csv``;
        returns the root."""
        rows = [[record.get(c, "") for c in SOURCE_COLUMNS] for record in self._finished(requests).values()]
        write_csv(self.root / "synthetic_sources.csv", SOURCE_COLUMNS, rows)
        return self.root


class EchoNetWriter(DatasetWriter):
    """Generated echo videos with their requested ejection fraction as an EchoNet-Dynamic dataset.

    ``Videos/<name>.avi`` and a row per video; :meth:`finalize` writes ``FileList.csv`` (and an empty
    ``VolumeTracings.csv``), readable by :class:`echo_monai.data.EchoNetDynamic` with ``require_tracings=False``.

    Args:
        root: dataset folder.
        fps: frame rate stored in the AVIs and ``FileList.csv``.
        ef_key: the request condition holding the ejection fraction (percent).

    Example:
        >>> writer = EchoNetWriter("synthetic_echonet", fps=32)
        >>> writer.write(request, video, item={})    # video (1, T, H, W) in [-1, 1]
        >>> writer.finalize()
    """

    def __init__(self, root: str | os.PathLike, fps: float = 32.0, ef_key: str = "ejection_fraction") -> None:
        super().__init__(root)
        if fps <= 0:
            raise ValueError(f"EchoNetWriter: fps must be > 0, got {fps}.")
        self.fps, self.ef_key = float(fps), ef_key

    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        return {"video": self.root / "Videos" / f"{request.name}.avi"}

    def check(self, request: GenerationRequest) -> None:
        if self.ef_key not in request.conditions:
            raise ValueError(f"request '{request.name}' has no '{self.ef_key}'; the EchoNet layout records the EF.")
        ef = float(request.conditions[self.ef_key])
        if not 0.0 <= ef <= 100.0:
            raise ValueError(f"request '{request.name}' asks for EF {ef:g}; expected 0-100 %.")
        if request.split.upper() not in SPLITS:
            raise ValueError(f"request '{request.name}': split must be one of {SPLITS}, got {request.split!r}.")

    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        self.check(request)
        frames = torch.as_tensor(sample).detach().cpu()
        if frames.ndim == 4 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 3 or frames.shape[0] < 1:
            raise ValueError(
                f"EchoNetWriter: {request.name}: expected a video (1, T, H, W) or (T, H, W), got {tuple(frames.shape)}."
            )
        write_avi(self.item_paths(request)["video"], to_uint8(frames), self.fps)

    def record(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> dict[str, Any]:
        frames = torch.as_tensor(sample).shape[-3:]  # (T, H, W)
        row = {
            "FileName": request.name,
            "EF": round(float(request.conditions[self.ef_key]), 4),
            "ESV": "",
            "EDV": "",
            "FrameHeight": int(frames[1]),
            "FrameWidth": int(frames[2]),
            "FPS": self.fps,
            "NumberOfFrames": int(frames[0]),
            "Split": request.split.upper(),
        }
        return {**row, **super().record(request, sample, item)}

    managed = (*DatasetWriter.managed, "Videos", "FileList.csv", "VolumeTracings.csv")

    def finalize(self, requests: Sequence[GenerationRequest] | None = None) -> Path:
        """Gather the rows of the finished ``requests`` (every row when None) into ``FileList.csv`` (and an empty
        ``VolumeTracings.csv``).

        Raises:
            ValueError: naming the file of a row that is not valid JSON or lacks a column.
        """
        rows = []
        for name, row in self._finished(requests).items():
            missing = [c for c in FILELIST_COLUMNS if c not in row]
            if missing:
                raise ValueError(f"EchoNetWriter: row file of {name!r} lacks {missing}; delete it and rerun.")
            rows.append([row[c] for c in FILELIST_COLUMNS])
        write_csv(self.root / "FileList.csv", FILELIST_COLUMNS, rows)
        write_csv(self.root / "VolumeTracings.csv", TRACING_COLUMNS, [])
        return self.root


def _label_indices(item: Mapping[str, Any], key: str) -> np.ndarray:
    """The CAMUS label (0 background, 1 LV, 2 myocardium, 3 LA) of a 5-class Echo-from-noise one-hot map."""
    if key not in item:
        raise KeyError(f"label writer: the conditioned item has no '{key}'; it has {sorted(item)}.")
    label_map = torch.as_tensor(item[key]).detach().cpu()
    indices = label_map.argmax(0) if label_map.shape[0] > 1 else label_map[0].long()
    return (indices - 1).clamp(min=0).to(torch.uint8).numpy()  # outside sector / in-sector background -> 0


class PngWriter(DatasetWriter):
    """``images/<name>.png`` (grey, 0-255) per generated image, and ``labels/<name>.png`` (CAMUS values 0-3) when the
    images were guided by label maps.

    Args:
        root: dataset folder.
        label_key: the conditioned item's one-hot label map ``(K, H, W)`` (Echo-from-noise classes); None for
            unconditional or non-label-guided images (no ``labels/``).
    """

    managed = (*DatasetWriter.managed, "images", "labels")

    def __init__(self, root: str | os.PathLike, label_key: str | None = "label_map") -> None:
        super().__init__(root)
        self.label_key = label_key

    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        stem = f"{request.name}.png"
        paths = {"image": self.root / "images" / stem}
        if self.label_key is not None:
            paths = {"label": self.root / "labels" / stem, **paths}
        return paths

    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        paths = self.item_paths(request)
        if self.label_key is not None:
            write_png(paths["label"], _label_indices(item, self.label_key))
        write_png(paths["image"], to_uint8(sample)[0])


class CamusWriter(DatasetWriter):
    """A CAMUS-layout dataset: one synthetic patient ``<patient>c<copy>`` per source patient and copy.

    ``database_nifti/<patient>c<copy>/<patient>c<copy>_<view>_<phase>[_gt].nii.gz`` and ``Info_<view>.cfg``, so
    :class:`echo_monai.data.CAMUS` reads the synthetic dataset like the real one; the request's ``source`` gives the
    patient, view, phase and copy (see :func:`echo_monai.apps.generation.label_map_requests`). Images generated
    without a label map (``label_key=None``) have no ``_gt`` file (read them with ``require_label=False``). With
    ``prompt_key``, each image's prompt is kept in its record and :meth:`finalize` lists them in ``prompts.csv``.

    Args:
        root: dataset folder.
        label_key: the conditioned item's one-hot label map ``(K, H, W)``; None when no label map guided the images.
        spacing: pixel size written to the NIfTI headers, mm.
        prompt_key: the request condition holding the text prompt, or None.
        generator: the name written to each ``Info_<view>.cfg`` (``Synthetic: <generator>``).
    """

    managed = (*DatasetWriter.managed, "database_nifti", "prompts.csv")

    def __init__(
        self,
        root: str | os.PathLike,
        label_key: str | None = "label_map",
        spacing: float = 1.0,
        prompt_key: str | None = None,
        generator: str = "echo_seg_ddpm",
    ) -> None:
        super().__init__(root)
        self.label_key, self.spacing = label_key, float(spacing)
        self.prompt_key, self.generator = prompt_key, str(generator)

    def check(self, request: GenerationRequest) -> None:
        missing = [k for k in ("patient", "view", "phase") if k not in request.source]
        if missing:
            raise ValueError(f"request '{request.name}' has no source {missing}; the CAMUS layout names files by them.")
        if self.prompt_key is not None and not isinstance(request.conditions.get(self.prompt_key), str):
            raise ValueError(f"request '{request.name}' has no text '{self.prompt_key}' to record with its image.")

    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        self.check(request)
        source = request.source
        patient = f"{source['patient']}c{int(source.get('copy', 0)):02d}"
        folder = self.root / "database_nifti" / patient
        stem = f"{patient}_{source['view']}_{source['phase']}"
        paths = {"info": folder / f"Info_{source['view']}.cfg", "image": folder / f"{stem}.nii.gz"}
        if self.label_key is not None:
            paths = {"info": paths["info"], "label": folder / f"{stem}_gt.nii.gz", "image": paths["image"]}
        return paths

    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        paths = self.item_paths(request)
        paths["image"].parent.mkdir(parents=True, exist_ok=True)
        if not paths["info"].is_file():
            write_text(paths["info"], f"ED: 1\nES: 1\nNbFrame: 1\nImageQuality: Good\nSynthetic: {self.generator}\n")
        if self.label_key is not None:
            save_camus_nifti(paths["label"], _label_indices(item, self.label_key), self.spacing)
        save_camus_nifti(paths["image"], to_uint8(sample)[0], self.spacing)

    def record(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> dict[str, Any]:
        record = super().record(request, sample, item)
        if self.prompt_key is not None:
            record["prompt"] = str(request.conditions[self.prompt_key])
        return record

    def finalize(self, requests: Sequence[GenerationRequest] | None = None) -> Path:
        """``synthetic_sources.csv`` and, with ``prompt_key``, ``prompts.csv`` (name, patient, view, phase, prompt)."""
        root = super().finalize(requests)
        if self.prompt_key is not None:
            columns = ("name", "patient", "view", "phase", "prompt")
            rows = [[record.get(c, "") for c in columns] for record in self._finished(requests).values()]
            write_csv(self.root / "prompts.csv", columns, rows)
        return root
