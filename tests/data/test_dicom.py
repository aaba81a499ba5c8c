from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from echo_monai.data import DicomCine, InvalidItemError
from echo_monai.data.dicom import dicom_fps

T, H, W = 3, 16, 24


def _write(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", jpeg: bool = False, **tags) -> Path:
    """Write frames ``(T, H, W)`` / ``(T, H, W, 3)`` (or a single ``(H, W[, 3])`` image) as an US DICOM file."""
    multi = pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] != 3)
    colour = pixels.shape[-1] == 3 and pixels.ndim >= 3
    sop = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.PatientID = sop, meta.MediaStorageSOPInstanceUID, "US", "PAT-7"
    ds.Rows, ds.Columns = H, W
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if colour:
        ds.PlanarConfiguration = 0
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if jpeg:
        frames = pixels if multi else pixels[None]
        ds.PixelData = encapsulate(
            [
                cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes()
                for f in frames
            ]
        )
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _region(dx_cm: float, dy_cm: float) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat, region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 1, 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx_cm, dy_cm
    return region


def _grey(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (T, H, W), np.uint8)


def test_multiframe_monochrome_with_metadata(tmp_path):
    path = _write(tmp_path / "a.dcm", _grey(), FrameTime=33.3333, SequenceOfUltrasoundRegions=[_region(0.02, 0.03)])
    item = DicomCine(path)[0]
    assert item["video"].shape == (1, T, H, W) and item["video"].dtype == torch.float32
    assert torch.equal(item["video"][0], torch.from_numpy(_grey().astype(np.float32)))
    assert item["fps"] == pytest.approx(30.0, rel=1e-4)
    assert item["pixel_spacing"] == pytest.approx((0.3, 0.2))
    assert item["patient_id"] == "PAT-7" and item["filename"] == str(path)


def test_single_frame_cine_rate_and_pixel_spacing(tmp_path):
    path = _write(tmp_path / "b.dcm", _grey()[0], CineRate=25, PixelSpacing=[0.5, 0.4])
    item = DicomCine([path])[0]
    assert item["image"].shape == (1, H, W) and "video" not in item
    assert item["fps"] == 25.0 and item["pixel_spacing"] == pytest.approx((0.5, 0.4))
    assert DicomCine([path], as_video=True)[0]["video"].shape == (1, 1, H, W)
    assert all(math.isnan(v) for v in DicomCine(_write(tmp_path / "c.dcm", _grey()[0]))[0]["pixel_spacing"])


def test_rgb_ybr_and_jpeg(tmp_path):
    rgb = np.zeros((T, H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 180, 90, 30
    luma = 0.299 * 180 + 0.587 * 90 + 0.114 * 30
    raw = _write(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    item = DicomCine(raw)[0]
    assert item["video"].shape == (1, T, H, W) and torch.allclose(item["video"], torch.tensor(luma), atol=0.01)
    assert torch.equal(DicomCine(raw, grayscale=False)[0]["video"][:, 0, 0, 0], torch.tensor([180.0, 90.0, 30.0]))
    jpeg = _write(tmp_path / "jpeg.dcm", rgb, photometric="YBR_FULL_422", jpeg=True)
    colour = DicomCine(jpeg, grayscale=False)[0]["video"]
    assert colour.shape == (3, T, H, W)
    assert torch.allclose(colour[:, 1, 5, 5], torch.tensor([180.0, 90.0, 30.0]), atol=4)
    assert torch.allclose(DicomCine(jpeg)[0]["video"], torch.tensor(luma), atol=3)


def test_monochrome1_inverted(tmp_path):
    item = DicomCine(_write(tmp_path / "m1.dcm", _grey(), photometric="MONOCHROME1"))[0]
    assert torch.equal(item["video"][0], torch.from_numpy(255.0 - _grey().astype(np.float32)))


def test_folder_search(tmp_path):
    _write(tmp_path / "x" / "1.dcm", _grey())
    (tmp_path / "x" / "notes.txt").write_text("not dicom")
    assert len(DicomCine(tmp_path)) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM"):
        DicomCine(tmp_path / "empty")


def test_without_pixel_data(tmp_path):
    path = tmp_path / "nopix.dcm"
    good = _write(path, _grey())
    from pydicom import dcmread

    ds = dcmread(str(good))
    del ds.PixelData
    ds.save_as(str(path), enforce_file_format=True)
    with pytest.raises(InvalidItemError, match="nopix.dcm.*no PixelData"):
        DicomCine([path, _write(tmp_path / "ok.dcm", _grey())])
    dataset = DicomCine([path, tmp_path / "ok.dcm"], on_invalid="skip")
    assert len(dataset) == 1 and dataset.invalid[0][0] == str(path)


def test_not_dicom_and_missing(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(InvalidItemError, match="junk.dcm.*not a readable DICOM"):
        DicomCine([tmp_path / "junk.dcm"])
    with pytest.raises(FileNotFoundError, match="gone.dcm"):
        DicomCine([tmp_path / "gone.dcm"])


def test_undecodable_pixel_data(tmp_path):
    path = _write(tmp_path / "broken.dcm", _grey(), photometric="MONOCHROME2")
    from pydicom import dcmread
    from pydicom.uid import JPEG2000Lossless

    ds = dcmread(str(path))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51garbage"] * T)
    ds["PixelData"].VR = "OB"
    ds.save_as(str(path), enforce_file_format=True)
    with pytest.raises(ValueError, match="broken.dcm.*transfer syntax"):
        DicomCine(path)[0]
    assert len(DicomCine(path, on_invalid="skip")) == 0


# --- header and frame-count checks, on simulated cines -----------------------------------------------------------


def _simulated(tmp_path: Path) -> list[Path]:
    """Two simulated US cine files (16 x 16) with FrameTime, CineRate and ultrasound regions."""
    from echo_monai.apps.simulate import simulate

    return sorted(simulate("dicom", tmp_path / "dicom", n=2, seed=0, image_size=(16, 16), n_frames=8).glob("*.dcm"))


def _edit(path: Path, **tags) -> Path:
    """Set (``None``: delete) elements of a DICOM file in place."""
    from pydicom import dcmread

    ds = dcmread(str(path))
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_modality_other_than_ultrasound_is_refused(tmp_path):
    ct, us = _simulated(tmp_path)
    _edit(ct, Modality="CT")
    with pytest.raises(InvalidItemError, match=re.escape(f"{ct}: Modality 'CT' is not one of ['US']")):
        DicomCine(ct.parent)
    dataset = DicomCine(ct.parent, on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [str(ct)]
    assert len(DicomCine(ct.parent, allowed_modalities=None)) == 2
    assert len(DicomCine(ct.parent, allowed_modalities=("us", "CT"))) == 2
    _edit(us, Modality=None)
    with pytest.raises(InvalidItemError, match=r"Modality '\(absent\)' is not one of"):
        DicomCine(us)
    with pytest.raises(ValueError, match=r"allowed_modalities must be None or a non-empty sequence.*got \(\)"):
        DicomCine(us, allowed_modalities=())


@pytest.mark.filterwarnings("ignore:.*pixel data:UserWarning")  # pydicom's own note on the surplus frames
def test_number_of_frames_differs_from_pixel_data(tmp_path):
    bad, _ = _simulated(tmp_path)
    frames = DicomCine(bad)[0]["video"].shape[1]
    _edit(bad, NumberOfFrames=frames - 1)  # pydicom decodes every frame present and only warns
    message = rf"{re.escape(str(bad))}' hold {frames} frame\(s\) but NumberOfFrames is {frames - 1}; expected equal"
    with pytest.raises(ValueError, match=message):
        DicomCine(bad)[0]
    with pytest.raises(InvalidItemError, match=message):
        DicomCine(bad.parent, validate=True)
    dataset = DicomCine(bad.parent, on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [str(bad)]
    _edit(bad, NumberOfFrames=frames + 3)  # too few bytes: the decoder fails, naming the file
    with pytest.raises(InvalidItemError, match=rf"{re.escape(str(bad))}.*NumberOfFrames {frames + 3}"):
        DicomCine(bad.parent, validate=True)


def test_number_of_frames_must_be_a_positive_integer(tmp_path):
    bad, _ = _simulated(tmp_path)
    _edit(bad, NumberOfFrames=0)
    with pytest.raises(InvalidItemError, match=re.escape(f"{bad}: NumberOfFrames '0' is not an integer >= 1")):
        DicomCine(bad.parent)
    assert [name for name, _ in DicomCine(bad.parent, on_invalid="skip").invalid] == [str(bad)]


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"FrameTime": "-33.3"}, r"FrameTime '-33.3' gives -30.03 frames/s; expected a frame rate > 0"),
        ({"FrameTime": "0"}, r"FrameTime '0' gives nan frames/s; expected a frame rate > 0"),
        ({"FrameTime": None, "CineRate": 0}, r"CineRate '0' gives 0 frames/s; expected a frame rate > 0"),
    ],
)
def test_frame_rate_must_be_positive(tmp_path, tags, expected):
    bad, _ = _simulated(tmp_path)
    _edit(bad, **tags)
    with pytest.raises(InvalidItemError, match=re.escape(f"{bad}: ") + expected):
        DicomCine(bad.parent)
    dataset = DicomCine(bad.parent, on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [str(bad)]


def test_dicom_fps_sources_and_absence():
    ds = Dataset()
    assert math.isnan(dicom_fps(ds))
    ds.FrameTimeVector = [0, 20, 20]
    assert dicom_fps(ds) == pytest.approx(50.0)
    ds.FrameTimeVector = [0, 0, 0]
    with pytest.raises(ValueError, match="FrameTimeVector .* expected a frame rate > 0"):
        dicom_fps(ds)


def test_pixel_spacing_must_be_positive(tmp_path):
    bad, _ = _simulated(tmp_path)
    _edit(bad, SequenceOfUltrasoundRegions=None, PixelSpacing=[-0.5, 0.4])
    with pytest.raises(InvalidItemError, match=re.escape(f"{bad}: pixel spacing (-0.5, 0.4) mm; expected finite")):
        DicomCine(bad.parent)
    assert len(DicomCine(bad.parent, on_invalid="skip")) == 1
