"""Write simulated cine loops in the EchoNet-Pediatric layout.

Layout (Reddy et al., JASE 2023)::

    root/{A4C,PSAX}/Videos/<FileName>.avi
    root/{A4C,PSAX}/FileList.csv        FileName,EF,Sex,Age,Weight,Height,Split   (Split: fold 0-9)
    root/{A4C,PSAX}/VolumeTracings.csv  FileName,X,Y,Frame                        (LV outline vertices)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echo_monai.data.atomic import write_avi, write_csv
from echo_monai.data.phantom.cardiac import CardiacSequence

__all__ = ["PEDIATRIC_FILELIST_COLUMNS", "PEDIATRIC_TRACING_COLUMNS", "EchoNetPediatricWriter"]

PEDIATRIC_FILELIST_COLUMNS = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
PEDIATRIC_TRACING_COLUMNS = ("FileName", "X", "Y", "Frame")
_VIEW_FOLDERS = {"4CH": "A4C", "PSAX": "PSAX"}


class EchoNetPediatricWriter:
    """Accumulate A4C and PSAX cine loops and write them as an EchoNet-Pediatric dataset.

    Args:
        root: dataset folder (created); ``A4C/`` and ``PSAX/`` are created for the views added.

    Example:
        >>> with EchoNetPediatricWriter("pediatric") as writer:
        ...     writer.add(sequence, "CR1a2b3c-000001", fold=3, sex="F", age=7, weight=24.0, height=122.0)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, list[tuple]] = {}
        self._tracings: dict[str, list[tuple]] = {}

    def add(
        self,
        sequence: CardiacSequence,
        filename: str,
        fold: int,
        sex: str = "F",
        age: float = 8.0,
        weight: float = 25.0,
        height: float = 125.0,
    ) -> Path:
        """Write one video into its view folder and queue its FileList and outline rows.

        Args:
            sequence: a ``"4CH"`` (written to ``A4C/``) or ``"PSAX"`` sequence with ED and ES outlines.
            filename: video name (``.avi`` added when missing).
            fold: cross-validation fold 0-9 (the ``Split`` column).
            sex: ``"M"`` or ``"F"``.
            age: years.
            weight: kilograms.
            height: centimetres.

        Returns:
            Path of the written AVI.
        """
        if sequence.view not in _VIEW_FOLDERS:
            raise ValueError(
                f"EchoNetPediatricWriter.add: view must be one of {sorted(_VIEW_FOLDERS)}, got {sequence.view!r}."
            )
        if not 0 <= int(fold) <= 9:
            raise ValueError(f"EchoNetPediatricWriter.add: fold must be in 0-9, got {fold}.")
        if sex not in ("M", "F"):
            raise ValueError(f"EchoNetPediatricWriter.add: sex must be 'M' or 'F', got {sex!r}.")
        folder = _VIEW_FOLDERS[sequence.view]
        name = filename if filename.lower().endswith(".avi") else f"{filename}.avi"
        path = write_avi(self.root / folder / "Videos" / name, sequence.frames, sequence.fps)
        self._files.setdefault(folder, []).append(
            (name, f"{sequence.ejection_fraction:.6f}", sex, f"{age:g}", f"{weight:.1f}", f"{height:.1f}", int(fold))
        )
        rows = self._tracings.setdefault(folder, [])
        for frame in sorted(sequence.outlines, key=lambda f: (f != sequence.ed_frame, f)):
            for x, y in np.asarray(sequence.outlines[frame], np.float64):
                rows.append((name, f"{x:.4f}", f"{y:.4f}", frame))
        return path

    def close(self) -> Path:
        """Write each view's ``FileList.csv`` and ``VolumeTracings.csv``; returns the dataset root."""
        for folder, rows in self._files.items():
            write_csv(self.root / folder / "FileList.csv", PEDIATRIC_FILELIST_COLUMNS, rows)
            write_csv(self.root / folder / "VolumeTracings.csv", PEDIATRIC_TRACING_COLUMNS, self._tracings[folder])
        return self.root

    def __enter__(self) -> EchoNetPediatricWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
