"""Write simulated apical cine loops in the EchoNet-Dynamic layout.

Layout (Ouyang et al., Nature 2020)::

    root/Videos/<FileName>.avi      112x112 MJPG AVI
    root/FileList.csv               FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split
    root/VolumeTracings.csv         FileName,X1,Y1,X2,Y2,Frame

``FileName`` has no extension in ``FileList.csv`` and ends in ``.avi`` in ``VolumeTracings.csv``; per traced frame (ED
and ES) the first tracing row is the LV long axis and the next 20 rows the disc chords perpendicular to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echo_monai.data.atomic import write_avi, write_csv
from echo_monai.data.phantom.cardiac import CardiacSequence

__all__ = ["FILELIST_COLUMNS", "TRACING_COLUMNS", "EchoNetDynamicWriter"]

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
_SPLITS = ("TRAIN", "VAL", "TEST")


class EchoNetDynamicWriter:
    """Accumulate cine loops and write them as an EchoNet-Dynamic dataset.

    Videos are written as they are added; the two CSV files on :meth:`close` (or leaving the ``with`` block).

    Args:
        root: dataset folder (created).

    Example:
        >>> with EchoNetDynamicWriter("echonet") as writer:
        ...     writer.add(sequence, "0X1A2B3C4D5E6F7A8B", split="TRAIN")
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        (self.root / "Videos").mkdir(parents=True, exist_ok=True)
        self._files: list[tuple] = []
        self._tracings: list[tuple] = []

    def add(self, sequence: CardiacSequence, filename: str, split: str = "TRAIN") -> Path:
        """Write one video and queue its FileList and tracing rows.

        Args:
            sequence: an apical (``"4CH"`` or ``"2CH"``) sequence with chords at ED and ES.
            filename: video name without extension.
            split: ``"TRAIN"``, ``"VAL"`` or ``"TEST"``.

        Returns:
            Path of the written AVI.
        """
        if split not in _SPLITS:
            raise ValueError(f"EchoNetDynamicWriter.add: split must be one of {_SPLITS}, got {split!r}.")
        if not sequence.chords:
            raise ValueError(
                f"EchoNetDynamicWriter.add: sequence {filename!r} has no disc chords; expected an apical view, got "
                f"{sequence.view!r}."
            )
        if filename.lower().endswith(".avi"):
            filename = filename[:-4]
        frames = sequence.frames
        path = write_avi(self.root / "Videos" / f"{filename}.avi", frames, sequence.fps)
        self._files.append(
            (
                filename,
                f"{sequence.ejection_fraction:.6f}",
                f"{sequence.esv_ml:.6f}",
                f"{sequence.edv_ml:.6f}",
                frames.shape[1],
                frames.shape[2],
                round(sequence.fps),
                frames.shape[0],
                split,
            )
        )
        for frame in sorted(sequence.chords, key=lambda f: (f != sequence.ed_frame, f)):
            for x1, y1, x2, y2 in np.asarray(sequence.chords[frame], np.float64):
                self._tracings.append((f"{filename}.avi", f"{x1:.4f}", f"{y1:.4f}", f"{x2:.4f}", f"{y2:.4f}", frame))
        return path

    def close(self) -> Path:
        """Write ``FileList.csv`` and ``VolumeTracings.csv``; returns the dataset root."""
        write_csv(self.root / "FileList.csv", FILELIST_COLUMNS, self._files)
        write_csv(self.root / "VolumeTracings.csv", TRACING_COLUMNS, self._tracings)
        return self.root

    def __enter__(self) -> EchoNetDynamicWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
