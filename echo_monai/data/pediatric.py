"""EchoNet-Pediatric reader: apical-4-chamber and parasternal short-axis videos of children, with EF and LV tracings.

Reddy et al., "Video-based deep learning for automated assessment of left ventricular ejection fraction in
pediatric patients", Journal of the American Society of Echocardiography 36(5), 2023.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from echo_monai.data.echonet import TracedVideoReader
from echo_monai.data.reader_base import FieldChecker, OnInvalid
from echo_monai.data.tracings import read_csv_rows, read_polygon_tracings, video_key

__all__ = ["EchoNetPediatric"]

# The release ships ten folds; the EchoNet-Pediatric code trains on 0-7, validates on 8 and tests on 9.
_FOLD_NAMES = {"TRAIN": tuple(range(8)), "VAL": (8,), "TEST": (9,), "ALL": tuple(range(10))}


def _parse_folds(split: int | str | Sequence[int | str]) -> tuple[int, ...]:
    items = [split] if isinstance(split, (int, str)) else list(split)
    folds: list[int] = []
    for value in items:
        if isinstance(value, str) and value.upper() in _FOLD_NAMES:
            folds.extend(_FOLD_NAMES[value.upper()])
        elif str(value).isdigit() and 0 <= int(value) <= 9:
            folds.append(int(value))
        else:
            raise ValueError(
                f"EchoNetPediatric: split must be fold numbers 0-9 or names {sorted(_FOLD_NAMES)}, got {split!r}."
            )
    return tuple(sorted(set(folds)))


class EchoNetPediatric(TracedVideoReader):
    """EchoNet-Pediatric: ``root/{A4C,PSAX}/Videos/*.avi``, ``FileList.csv``, ``VolumeTracings.csv``.

    ``FileList.csv`` has ``FileName,EF,Sex,Age,Weight,Height,Split`` with ``Split`` the fold 0-9;
    ``VolumeTracings.csv`` has ``FileName,X,Y,Frame``, the LV outline of each traced frame as polygon vertices.
    ``root`` may also be the view folder itself. Videos are checked to exist at construction (all missing ones
    reported together), traced frames against the decoded length on access, and every ``FileList.csv`` field at
    construction: ``EF`` finite in 0-100, ``Split`` an integer fold 0-9 (checked on every row, whatever ``split``
    is read), ``Sex`` ``M``/``F``, ``Age`` >= 0, ``Weight`` and ``Height`` > 0 (these four optional: empty cells
    read as ``""``/NaN). On access the AVI header's frame rate must be > 0 and the video must decode every frame
    its header announces (a truncated file fails).

    Each item is a dict:

    * ``video``: ``(1, T, H, W)`` float32 torch tensor, grey levels in [0, 255] (``uint8`` memory map with
      ``lazy=True``).
    * ``ejection_fraction``: float, EF in percent (0-100).
    * ``fps``: float, frames per second (> 0) from the AVI header (the FileList has no FPS column).
    * ``ed_frame``, ``es_frame``: int, traced frame with the largest / smallest cavity (-1 without tracings).
    * ``ed_mask``, ``es_mask``: ``(H, W)`` uint8 torch tensor in {0, 1}, the filled LV outline.
    * ``filename``: str, video file name with ``.avi``.
    * ``view``: str, ``A4C`` or ``PSAX``.
    * ``fold``: int, the ``Split`` fold 0-9.
    * ``sex``: str, ``M`` or ``F`` (empty when absent).
    * ``age``, ``weight``, ``height``: float, years (>= 0), kg and cm (> 0); NaN when absent.

    Args:
        root: dataset folder holding ``A4C/`` and ``PSAX/`` (or one view folder).
        view: ``"A4C"`` or ``"PSAX"``.
        split: a fold number, a name (``"TRAIN"`` = folds 0-7, ``"VAL"`` = 8, ``"TEST"`` = 9, ``"ALL"``) or a
            sequence of them.
        transform: MONAI transform applied to each item dict.
        cache_dir: decode each AVI once into a memory-mapped cache there.
        lazy: return ``video`` as the ``uint8`` memory map for a following clip transform (needs ``cache_dir``).
        require_tracings: treat a video without tracings as invalid; else empty masks and frames -1.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad items (``self.invalid``).
        validate: decode every video at construction (default: when skipping).

    Example:
        >>> dataset = EchoNetPediatric("pediatric_echo_avi", view="A4C", split=[0, 1, 2])
        >>> item = dataset[0]
        >>> item["video"].shape, item["ejection_fraction"], item["age"]
    """

    VIEWS = ("A4C", "PSAX")

    def __init__(
        self,
        root: str | os.PathLike,
        view: str = "A4C",
        split: int | str | Sequence[int | str] = "ALL",
        transform: Sequence[Callable] | Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        lazy: bool = False,
        require_tracings: bool = True,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        if str(view).upper() not in self.VIEWS:
            raise ValueError(f"EchoNetPediatric: view must be one of {self.VIEWS}, got {view!r}.")
        self.view = str(view).upper()
        self.folds = _parse_folds(split)
        super().__init__(transform, cache_dir, lazy, on_invalid, validate)
        root = Path(root)
        self.root = root / self.view if (root / self.view / "FileList.csv").is_file() else root
        filelist = self.root / "FileList.csv"
        rows = read_csv_rows(filelist, ("FileName", "EF", "Split"))
        tracings = read_polygon_tracings(self.root / "VolumeTracings.csv")
        records = []
        for line, row in enumerate(rows, start=2):
            filename = video_key(row["FileName"]) + ".avi"
            fields = FieldChecker(f"{str(filelist)!r} line {line}")
            fold = fields.number(row, "Split", minimum=0, maximum=9, integer=True)
            if fields.problems:  # a row of no known fold: reported whatever split is read
                self.reject(filename, fields.reason)
                continue
            if int(fold) not in self.folds:
                continue
            meta = {
                "ejection_fraction": fields.number(row, "EF", minimum=0, maximum=100, unit="%"),
                "view": self.view,
                "fold": int(fold),
                "sex": fields.choice(row, "Sex", ("M", "F")),
                "age": fields.number(row, "Age", minimum=0, required=False, unit="years"),
                "weight": fields.number(row, "Weight", above=0, required=False, unit="kg"),
                "height": fields.number(row, "Height", above=0, required=False, unit="cm"),
            }
            if fields.problems:
                self.reject(filename, fields.reason)
                continue
            video_path = self.root / "Videos" / filename
            if not video_path.is_file():
                self.reject(filename, f"listed in FileList.csv but video {str(video_path)!r} is missing.", True)
                continue
            record = self._traced_record(
                filename, video_path, tracings, None, require_tracings, None, meta, str(filelist)
            )
            if record is not None:
                records.append(record)
        self._finalize(records, key="filename")
