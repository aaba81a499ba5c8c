"""Ultrasound DICOM reader: single-frame images and multi-frame cine loops (grey, RGB or YBR, raw or compressed).

Pixel data are decoded by pydicom (``pixel_array``), which converts YBR to RGB and decodes JPEG Baseline through
Pillow; other compressed transfer syntaxes need the matching pydicom plugin (pylibjpeg, gdcm) and fail with an
error naming the file and the syntax otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from pydicom.misc import is_dicom

from echo_monai.data.reader_base import OnInvalid, ReaderDataset

__all__ = ["DicomCine", "dicom_fps", "dicom_pixel_spacing"]

_CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (DICOM PS3.3 C.8.5.5.1.15)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def dicom_fps(ds: pydicom.Dataset) -> float:
    """Frame rate of a cine: ``1000 / FrameTime``, else the mean ``FrameTimeVector``, else ``CineRate``, else
    ``RecommendedDisplayFrameRate``; NaN when none is present."""
    frame_time = ds.get("FrameTime")
    if frame_time:
        return 1000.0 / float(frame_time)
    vector = ds.get("FrameTimeVector")
    if vector and len(vector) > 1 and float(np.mean([float(v) for v in vector[1:]])) > 0:
        return 1000.0 / float(np.mean([float(v) for v in vector[1:]]))
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        if ds.get(keyword):
            return float(ds.get(keyword))
    return float("nan")


def dicom_pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float]:
    """Pixel size ``(dy, dx)`` in mm: from the first ``SequenceOfUltrasoundRegions`` item measured in cm, else
    ``PixelSpacing``; ``(nan, nan)`` when neither is present."""
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        units = (region.get("PhysicalUnitsXDirection"), region.get("PhysicalUnitsYDirection"))
        if units == (_CM_UNITS, _CM_UNITS) and region.get("PhysicalDeltaX") and region.get("PhysicalDeltaY"):
            return 10.0 * abs(float(region.PhysicalDeltaY)), 10.0 * abs(float(region.PhysicalDeltaX))
    spacing = ds.get("PixelSpacing")
    if spacing and len(spacing) == 2:
        return float(spacing[0]), float(spacing[1])
    return math.nan, math.nan


class DicomCine(ReaderDataset):
    """Ultrasound DICOM files, one item per file; multi-frame files are videos, single-frame ones images.

    Each item is a dict:

    * ``video``: ``(C, T, H, W)`` float32 torch tensor for multi-frame files (or every file when
      ``as_video=True``), in the source range ([0, 255] for 8-bit); ``C`` is 1 with ``grayscale=True`` (colour is
      converted to BT.601 luminance, ``MONOCHROME1`` inverted), else 1 for grey sources and 3 (RGB) for colour.
    * ``image``: ``(C, H, W)`` float32 torch tensor instead of ``video`` for single-frame files.
    * ``fps``: float, from ``FrameTime`` (ms), ``FrameTimeVector``, ``CineRate`` or
      ``RecommendedDisplayFrameRate``; NaN when absent.
    * ``pixel_spacing``: ``(dy, dx)`` in mm from ``SequenceOfUltrasoundRegions`` (cm in the file), else
      ``PixelSpacing``; NaN when absent.
    * ``patient_id``: str, ``PatientID`` (empty when absent).
    * ``filename``: str, path of the file.

    Args:
        paths: a file, a folder (searched recursively for DICOM files) or a sequence of files.
        transform: MONAI transform applied to each item dict.
        grayscale: convert colour to one luminance channel.
        as_video: return single-frame files as ``video`` with ``T = 1`` too.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad files (``self.invalid``).
        validate: decode every file at construction (default: when skipping).

    Example:
        >>> dataset = DicomCine("exports/", grayscale=True)
        >>> item = dataset[0]
        >>> item["video"].shape, item["fps"], item["pixel_spacing"]   # (1, T, H, W), 30.0, (0.3, 0.3)
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        transform: Sequence[Callable] | Callable | None = None,
        grayscale: bool = True,
        as_video: bool = False,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        super().__init__(transform=transform, on_invalid=on_invalid, validate=validate)
        self.grayscale, self.as_video = bool(grayscale), bool(as_video)
        if isinstance(paths, (str, os.PathLike)):
            root = Path(paths)
            if root.is_dir():
                files = [p for p in sorted(root.rglob("*")) if p.is_file() and is_dicom(str(p))]
                if not files:
                    raise FileNotFoundError(f"DicomCine: no DICOM file (with 'DICM' preamble) under {str(root)!r}.")
            else:
                files = [root]
        else:
            files = [Path(p) for p in paths]
        records = []
        for path in files:
            record = self._index_file(path)
            if record is not None:
                records.append(record)
        self._finalize(records, key="filename")

    def _index_file(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            self.reject(str(path), "DICOM file is missing.", missing=True)
            return None
        try:
            ds = pydicom.dcmread(str(path), defer_size="1 KB")
        except Exception as error:  # pydicom raises InvalidDicomError, EOFError, ValueError...
            self.reject(str(path), f"not a readable DICOM file: {error}")
            return None
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            self.reject(str(path), "DICOM file has no PixelData element; expected an ultrasound image or cine loop.")
            return None
        return {
            "filename": str(path),
            "fps": dicom_fps(ds),
            "pixel_spacing": dicom_pixel_spacing(ds),
            "patient_id": str(ds.get("PatientID", "")),
            "multi_frame": int(ds.get("NumberOfFrames", 1) or 1) > 1,
        }

    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        path = record["filename"]
        try:
            ds = pydicom.dcmread(path)
        except Exception as error:
            raise ValueError(f"DicomCine: {path!r} is not a readable DICOM file: {error}") from error
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise ValueError(
                f"DicomCine: {path!r} has no PixelData element; expected an ultrasound image or cine loop."
            )
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as error:
            raise ValueError(
                f"DicomCine: cannot decode the pixel data of {path!r} (transfer syntax {syntax}): {error}"
            ) from error
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        colour = samples == 3
        # to (T, H, W, C)
        pixels = pixels.reshape((frames, *pixels.shape[-3 if colour else -2 :]))
        pixels = pixels.astype(np.float32)
        if not colour:
            pixels = pixels[..., None]
            if ds.get("PhotometricInterpretation") == "MONOCHROME1":
                pixels = float(2 ** int(ds.get("BitsStored", 8)) - 1) - pixels
        elif self.grayscale:
            pixels = (pixels @ _LUMA)[..., None]
        array = torch.from_numpy(np.ascontiguousarray(pixels.transpose(3, 0, 1, 2)))  # (C, T, H, W)
        item: dict[str, Any] = {}
        if record["multi_frame"] or self.as_video:
            item["video"] = array
        else:
            item["image"] = array[:, 0]
        item.update({k: record[k] for k in ("fps", "pixel_spacing", "patient_id", "filename")})
        return item
