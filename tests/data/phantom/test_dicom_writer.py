from __future__ import annotations

import numpy as np
import pydicom
import pytest

from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.dicom_writer import US_MULTIFRAME_STORAGE, DicomCineWriter


@pytest.fixture(scope="module")
def sequence():
    params = CardiacParameters.sample(np.random.default_rng(0), fps=40.0)
    return CardiacPhantom(params, (40, 48), seed=0).simulate(params.ed_offset_frames + params.systole_frames + 1)


def test_file_is_an_ultrasound_multiframe_image(tmp_path, sequence):
    path = DicomCineWriter(tmp_path).add(sequence.frames, "cine", 40.0, sequence.pixel_spacing_mm, "SIM0001")
    assert path.name == "cine.dcm"
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == US_MULTIFRAME_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "US" and ds.PhotometricInterpretation == "MONOCHROME2" and ds.PatientID == "SIM0001"
    assert int(ds.NumberOfFrames) == len(sequence.frames)
    assert float(ds.FrameTime) == pytest.approx(25.0) and int(ds.CineRate) == 40
    region = ds.SequenceOfUltrasoundRegions[0]
    assert region.PhysicalDeltaX == pytest.approx(sequence.pixel_spacing_mm / 10.0)
    np.testing.assert_array_equal(ds.pixel_array, sequence.frames)


def test_uids_are_deterministic(tmp_path, sequence):
    first = pydicom.dcmread(DicomCineWriter(tmp_path / "a", uid_seed=3).add(sequence.frames, "c", 40.0, 1.0, "P"))
    second = pydicom.dcmread(DicomCineWriter(tmp_path / "b", uid_seed=3).add(sequence.frames, "c", 40.0, 1.0, "P"))
    other = pydicom.dcmread(DicomCineWriter(tmp_path / "c", uid_seed=4).add(sequence.frames, "c", 40.0, 1.0, "P"))
    assert first.SOPInstanceUID == second.SOPInstanceUID != other.SOPInstanceUID


def test_round_trip_through_the_dicom_reader(tmp_path, sequence):
    from echo_monai.data.dicom import DicomCine

    DicomCineWriter(tmp_path).add(sequence.frames, "cine", 40.0, sequence.pixel_spacing_mm, "SIM0001")
    item = DicomCine(tmp_path)[0]
    np.testing.assert_array_equal(item["video"].numpy()[0], sequence.frames)
    assert item["fps"] == pytest.approx(40.0)
    assert item["pixel_spacing"] == pytest.approx((sequence.pixel_spacing_mm,) * 2)
    assert item["patient_id"] == "SIM0001"


def test_bad_arguments_raise(tmp_path):
    writer = DicomCineWriter(tmp_path)
    with pytest.raises(ValueError, match="frames"):
        writer.add(np.zeros((2, 4, 4), np.float32), "x", 30.0, 1.0, "P")
    with pytest.raises(ValueError, match="fps"):
        writer.add(np.zeros((2, 4, 4), np.uint8), "x", 0.0, 1.0, "P")
