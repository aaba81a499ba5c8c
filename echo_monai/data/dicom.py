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
from pydicom.multival import MultiValue

from echo_monai.data.reader_base import OnInvalid, ReaderDataset

__all__ = ["SEGMENTATION_STORAGE", "DicomCine", "dicom_fps", "dicom_pixel_spacing", "read_dicom_seg"]

_CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (DICOM PS3.3 C.8.5.5.1.15)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_TIMING = ("FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate")


def _values(value: Any) -> list[Any]:
    """A (multi-)value element's values; ``[]`` when absent or empty."""
    if value is None:
        return []
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [v for v in values if str(v).strip() != ""]


def _rate(keyword: str, values: list[Any]) -> float:
    if keyword == "FrameTime":
        return 1000.0 / float(values[0])
    if keyword == "FrameTimeVector":  # its first entry is the 0 ms of the first frame
        return 1000.0 / float(np.mean([float(v) for v in values[1:]]))
    return float(values[0])


def dicom_fps(ds: pydicom.Dataset) -> float:
    """Frame rate of a cine from the first of its timing elements present: ``1000 / FrameTime`` (ms), the mean
    ``FrameTimeVector`` interval (used with two values or more), ``CineRate``, ``RecommendedDisplayFrameRate``.

    Returns:
        Frames per second, finite and > 0; NaN when no timing element is present.

    Raises:
        ValueError: the element used is present but gives no finite, positive rate (names it and its value).
    """
    for keyword in _TIMING:
        values = _values(ds.get(keyword))
        if len(values) < (2 if keyword == "FrameTimeVector" else 1):
            continue
        try:
            fps = _rate(keyword, values)
        except (ValueError, TypeError, ZeroDivisionError):
            fps = math.nan
        if not (math.isfinite(fps) and fps > 0):
            shown = values if keyword == "FrameTimeVector" else values[0]
            raise ValueError(f"{keyword} {str(shown)!r} gives {fps:g} frames/s; expected a frame rate > 0.")
        return fps
    return math.nan


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


def _number_of_frames(ds: pydicom.Dataset) -> int | None:
    """``NumberOfFrames`` (1 when absent), ``None`` when it is not an integer >= 1."""
    values = _values(ds.get("NumberOfFrames"))
    if not values:
        return 1
    value = values[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 1 else None


class DicomCine(ReaderDataset):
    """Ultrasound DICOM files, one item per file; multi-frame files are videos, single-frame ones images.

    Each item is a dict:

    * ``video``: ``(C, T, H, W)`` float32 torch tensor for multi-frame files (or every file when
      ``as_video=True``), in the source range ([0, 255] for 8-bit); ``C`` is 1 with ``grayscale=True`` (colour is
      converted to BT.601 luminance, ``MONOCHROME1`` inverted), else 1 for grey sources and 3 (RGB) for colour.
    * ``image``: ``(C, H, W)`` float32 torch tensor instead of ``video`` for single-frame files.
    * ``fps``: float, > 0, from ``FrameTime`` (ms), ``FrameTimeVector``, ``CineRate`` or
      ``RecommendedDisplayFrameRate`` (see :func:`dicom_fps`); NaN when absent.
    * ``pixel_spacing``: ``(dy, dx)`` in mm, > 0, from ``SequenceOfUltrasoundRegions`` (cm in the file), else
      ``PixelSpacing``; NaN when absent.
    * ``patient_id``: str, ``PatientID`` (empty when absent).
    * ``filename``: str, path of the file.

    At construction each file's header is checked: ``Modality`` in ``allowed_modalities``, ``NumberOfFrames`` an
    integer >= 1 (absent: 1), a present timing element giving a finite frame rate > 0 and a present pixel spacing
    > 0. On access the decoded pixel data must hold ``NumberOfFrames`` frames.

    Args:
        paths: a file, a folder (searched recursively for DICOM files) or a sequence of files.
        transform: MONAI transform applied to each item dict.
        grayscale: convert colour to one luminance channel.
        as_video: return single-frame files as ``video`` with ``T = 1`` too.
        allowed_modalities: ``Modality`` values accepted (``("US",)``: ultrasound only, so that a CT or MR file in
            the folder is reported instead of read); ``None`` accepts any modality.
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
        allowed_modalities: Sequence[str] | None = ("US",),
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        if allowed_modalities is not None:
            if isinstance(allowed_modalities, str):
                allowed_modalities = (allowed_modalities,)
            if not allowed_modalities or not all(isinstance(m, str) and m for m in allowed_modalities):
                raise ValueError(
                    "DicomCine: allowed_modalities must be None or a non-empty sequence of Modality codes such as "
                    f"('US',), got {allowed_modalities!r}."
                )
            allowed_modalities = tuple(m.upper() for m in allowed_modalities)
        self.allowed_modalities = allowed_modalities
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
        problems = []
        modality = str(ds.get("Modality", "") or "").strip()
        if self.allowed_modalities is not None and modality.upper() not in self.allowed_modalities:
            problems.append(
                f"Modality {modality or '(absent)'!r} is not one of {list(self.allowed_modalities)} "
                "(pass allowed_modalities=None to read any modality)"
            )
        num_frames = _number_of_frames(ds)
        if num_frames is None:
            problems.append(f"NumberOfFrames {ds.get('NumberOfFrames')!r} is not an integer >= 1")
        try:
            fps = dicom_fps(ds)
        except ValueError as error:
            fps = math.nan
            problems.append(str(error).rstrip("."))
        try:
            spacing = dicom_pixel_spacing(ds)
        except (TypeError, ValueError) as error:
            spacing = (math.nan, math.nan)
            problems.append(f"unreadable pixel spacing: {error}")
        if not all(math.isnan(v) or (math.isfinite(v) and v > 0) for v in spacing):
            problems.append(f"pixel spacing {spacing} mm; expected finite values > 0")
        if problems:
            self.reject(str(path), "; ".join(problems) + ".")
            return None
        return {
            "filename": str(path),
            "fps": fps,
            "pixel_spacing": spacing,
            "patient_id": str(ds.get("PatientID", "")),
            "num_frames": num_frames,
            "multi_frame": num_frames > 1,
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
        frames = _number_of_frames(ds) or 1
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as error:
            raise ValueError(
                f"DicomCine: cannot decode the pixel data of {path!r} (transfer syntax {syntax}, NumberOfFrames "
                f"{frames}): {error or type(error).__name__}"
            ) from error
        samples = int(ds.get("SamplesPerPixel", 1))
        colour = samples == 3
        decoded = pixels.shape[0] if pixels.ndim == (4 if colour else 3) else 1
        if decoded != frames:
            raise ValueError(
                f"DicomCine: the pixel data of {path!r} hold {decoded} frame(s) but NumberOfFrames is {frames}; "
                "expected equal counts."
            )
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


def read_dicom_seg(path: str | os.PathLike) -> np.ndarray:
    """A 2D DICOM SEG (Segmentation Storage) as one label map: each pixel holds the number of its segment, 0 outside.

    A segment's number is its class value, so a SEG drawn with segments 1 (LV cavity), 2 (myocardium) and 3 (left
    atrium) reads as a CAMUS label map. One frame per segment (BINARY, or FRACTIONAL over half its maximum).

    Returns:
        an ``(H, W)`` ``int16`` array.

    Raises:
        ValueError: naming the file, for a file that is not DICOM or not a SEG, a SEG of several frames per segment
            (a volume or a cine) or with overlapping segments.
    """
    name = str(path)
    try:
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ValueError(f"'{name}' is not a readable DICOM file ({error}).") from error
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise ValueError(
            f"'{name}' is not a DICOM SEG (SOP class {ds.get('SOPClassUID', 'missing')}, expected Segmentation "
            f"Storage {SEGMENTATION_STORAGE})."
        )
    try:
        frames = np.asarray(ds.pixel_array).reshape(-1, int(ds.Rows), int(ds.Columns))
        numbers = [
            int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            for group in ds.PerFrameFunctionalGroupsSequence
        ]
    except (AttributeError, IndexError, ValueError) as error:
        raise ValueError(f"'{name}': unreadable segment frames ({error}).") from error
    if len(numbers) != len(frames) or len(set(numbers)) != len(numbers):
        raise ValueError(
            f"'{name}': {len(frames)} frames for segments {numbers}; expected one 2D frame per segment (a volume or "
            "cine SEG is not a label map)."
        )
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        frames = frames > int(ds.get("MaximumFractionalValue", 255)) / 2
    label = np.zeros(frames.shape[1:], dtype=np.int16)
    for frame, number in zip(frames, numbers, strict=True):
        inside = frame > 0
        if np.any(label[inside]):
            raise ValueError(f"'{name}': segment {number} overlaps another segment; a label map has one class a pixel.")
        label[inside] = number
    return label
