"""Write simulated cine loops as multi-frame ultrasound DICOM (US Multi-frame Image Storage).

Each file carries 8-bit MONOCHROME2 frames, ``FrameTime`` (ms) and ``CineRate`` (frames/s) with
``FrameIncrementPointer`` on FrameTime, a ``SequenceOfUltrasoundRegions`` item whose ``PhysicalDeltaX/Y`` give the
pixel size in centimetres, and the patient and study identifiers, in explicit VR little endian.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from echo_monai.data.atomic import atomic_path

#: pydicom 2 (MONAI Label's environment: its pydicom-seg does not import with pydicom 3) writes the file meta and the
#: encoding only when told
PYDICOM_2 = int(pydicom.__version__.split(".")[0]) < 3

__all__ = ["US_IMAGE_STORAGE", "US_MULTIFRAME_STORAGE", "DicomCineWriter", "write_cine_dicom"]

US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"


class DicomCineWriter:
    """Write ``(T, H, W)`` uint8 cine loops as ultrasound multi-frame DICOM files.

    UIDs are derived from ``uid_seed`` and the file name, so a seeded run writes identical files.

    Args:
        root: output folder (created).
        uid_seed: seed of the deterministic UIDs.

    Example:
        >>> writer = DicomCineWriter("dicom")
        >>> writer.add(sequence.frames, "echo_0001", fps=50.0, pixel_spacing_mm=1.3, patient_id="SIM0001")
    """

    def __init__(self, root: str | os.PathLike, uid_seed: int = 0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.uid_seed = int(uid_seed)

    def add(
        self,
        frames: np.ndarray,
        name: str,
        fps: float,
        pixel_spacing_mm: float,
        patient_id: str,
        study: str = "1",
        description: str = "Simulated echocardiogram",
    ) -> Path:
        """Write one cine loop to ``root/<name>.dcm``.

        Args:
            frames: ``(T, H, W)`` uint8 frames.
            name: file stem.
            fps: frame rate.
            pixel_spacing_mm: square pixel size.
            patient_id: ``PatientID``.
            study: study key (files with the same patient and study share the study UID).
            description: ``SeriesDescription``.

        Returns:
            Path of the written file.
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] < 1:
            raise ValueError(
                f"DicomCineWriter.add: frames must be (T, H, W) uint8 with T >= 1 for {name!r}, got "
                f"{frames.dtype} {frames.shape}."
            )
        if not fps > 0 or not pixel_spacing_mm > 0:
            raise ValueError(
                f"DicomCineWriter.add: fps and pixel_spacing_mm must be > 0, got {fps}, {pixel_spacing_mm}."
            )
        return write_cine_dicom(
            self.root / f"{name}.dcm",
            frames,
            fps,
            pixel_spacing_mm,
            patient_id,
            uid_seed=self.uid_seed,
            uid_name=name,
            study=study,
            description=description,
        )


def write_cine_dicom(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    pixel_spacing_mm: float | None,
    patient_id: str,
    uid_seed: int = 0,
    uid_name: str | None = None,
    study: str = "1",
    description: str = "Simulated echocardiogram",
    manufacturer: str = "echo_monai phantom",
    patient_name: str | None = None,
    image_comments: str | None = None,
    still: bool = False,
) -> Path:
    """Write one ``(T, H, W)`` uint8 cine loop to ``path`` as an ultrasound multi-frame DICOM file, atomically.

    With ``still=True`` a single frame (``T = 1``) is written as one image, Ultrasound Image Storage (no frame
    count, frame time or cine rate).

    The UIDs follow from ``uid_seed`` and ``uid_name`` (the file stem by default) and the patient and study, so the
    same arguments write the same bytes (see :class:`DicomCineWriter`, which writes through it).

    Args:
        path: the ``.dcm`` file.
        frames: ``(T, H, W)`` uint8 frames.
        fps: frame rate (``FrameTime``, ``CineRate``).
        pixel_spacing_mm: square pixel size, written as the ultrasound region's ``PhysicalDeltaX/Y``; None writes no
            calibrated region (pixels of unknown size).
        patient_id: ``PatientID``.
        uid_seed: seed of the deterministic UIDs.
        uid_name: name the SOP and series UIDs are derived from; the file stem when None.
        study: study key (files with the same patient and study share the study UID).
        description: ``SeriesDescription``.
        manufacturer: ``Manufacturer``.
        patient_name: ``PatientName``; ``Phantom^<patient_id>`` when None.
        image_comments: ``ImageComments``, left out when None.
        still: write the single frame as Ultrasound Image Storage.

    Returns:
        ``path``.

    Raises:
        ValueError: frames that are not ``(T, H, W)`` uint8, or a frame rate or pixel size that is not > 0, or
            ``still`` with more than one frame.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] < 1:
        raise ValueError(
            f"write_cine_dicom: frames must be (T, H, W) uint8 with T >= 1 for {str(path)!r}, got "
            f"{frames.dtype} {frames.shape}."
        )
    if not fps > 0 or (pixel_spacing_mm is not None and not pixel_spacing_mm > 0):
        raise ValueError(
            f"write_cine_dicom: fps and pixel_spacing_mm must be > 0 for {str(path)!r}, got {fps}, {pixel_spacing_mm}."
        )
    if still and frames.shape[0] != 1:
        raise ValueError(f"write_cine_dicom: still=True writes one frame, got {frames.shape[0]} for {str(path)!r}.")
    name = path.stem if uid_name is None else uid_name
    sop_class = US_IMAGE_STORAGE if still else US_MULTIFRAME_STORAGE

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=[str(int(uid_seed)), *map(str, parts)])

    count, rows, columns = frames.shape
    sop_uid = uid("sop", name)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID = uid("study", patient_id, study)
    ds.SeriesInstanceUID = uid("series", name)
    ds.Modality, ds.Manufacturer = "US", manufacturer
    ds.PatientID = patient_id
    ds.PatientName = f"Phantom^{patient_id}" if patient_name is None else patient_name
    ds.StudyDate = ds.ContentDate = datetime.date(2020, 1, 1).strftime("%Y%m%d")
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = study, 1, 1
    ds.SeriesDescription = description
    if image_comments is not None:
        ds.ImageComments = image_comments
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if not still:
        ds.NumberOfFrames = count
        ds.FrameTime = f"{1000.0 / fps:.4f}"
        ds.CineRate = round(fps)
        ds.RecommendedDisplayFrameRate = round(fps)
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
    if pixel_spacing_mm is not None:
        _add_region(ds, rows, columns, pixel_spacing_mm)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    with atomic_path(path) as tmp:
        if PYDICOM_2:
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(tmp, write_like_original=False)
        else:
            ds.save_as(tmp, enforce_file_format=True)
    return path


def _add_region(ds: Dataset, rows: int, columns: int, pixel_spacing_mm: float) -> None:
    """The ``SequenceOfUltrasoundRegions`` item calibrating the whole frame (``PhysicalDeltaX/Y`` in cm)."""
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = columns - 1, rows - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = float(pixel_spacing_mm) / 10.0
    region.ReferencePixelX0, region.ReferencePixelY0 = columns // 2, 0
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
