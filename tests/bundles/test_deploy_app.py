"""MONAI Deploy: label map / EF -> synthetic ultrasound DICOM, on tiny trained echo_seg_ddpm and echo_flow bundles.

The request handling and generation (``echo_monai.apps.deploy.tasks``) run in the project's environment; the SDK
application (``echo_monai/apps/deploy/app.py``) runs for real, ``python app.py -i in -o out -m model``, in the SDK's
own environment (``.ci/deploy-env``, made once and reused; about a minute to make from the local torch wheel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.bundle import ConfigParser
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_echo_flow import BUNDLE as FLOW_BUNDLE

from echo_monai.apps.deploy.tasks import DESCRIPTION, DeployError, generate_dicom, read_request, trained_bundle
from echo_monai.data import DicomCine, read_dicom_seg
from echo_monai.data.dicom import SEGMENTATION_STORAGE
from echo_monai.data.phantom.dicom_writer import US_IMAGE_STORAGE, US_MULTIFRAME_STORAGE

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "echo_monai" / "apps" / "deploy" / "app.py"
SEG_SIZE = 32  # the tiny echo_seg_ddpm preset's image_size


def label_map_folder(folder: Path, label: np.ndarray, name: str = "drawn_gt.nii.gz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(label.astype(np.int16), np.eye(4)), str(folder / name))
    return folder


def write_seg(path: Path, label: np.ndarray, patient: str = "Doe^Jane", patient_id: str = "PID-12345") -> Path:
    """A 2D DICOM SEG (BINARY, one frame per segment), as 3D Slicer or OHIF would send one, with patient data."""
    numbers = [int(v) for v in np.unique(label) if v > 0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SEGMENTATION_STORAGE, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SEGMENTATION_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID, ds.SegmentationType = "SEG", patient, patient_id, "BINARY"
    ds.Rows, ds.Columns, ds.NumberOfFrames = label.shape[0], label.shape[1], len(numbers)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    segments, groups = [], []
    for number in numbers:
        segment, group, ident = Dataset(), Dataset(), Dataset()
        segment.SegmentNumber, segment.SegmentLabel = number, f"class {number}"
        ident.ReferencedSegmentNumber = number
        group.SegmentIdentificationSequence = [ident]
        segments.append(segment)
        groups.append(group)
    ds.SegmentSequence, ds.PerFrameFunctionalGroupsSequence = segments, groups
    frames = np.stack([(label == n).astype(np.uint8) for n in numbers])
    ds.PixelData = pydicom.pixels.pack_bits(frames.ravel())
    ds.save_as(path, enforce_file_format=True)
    return path


def test_trained_bundle_and_request_refusals(seg_model, tmp_path):
    model, phantom = seg_model
    assert trained_bundle(model) == "echo_seg_ddpm"
    with pytest.raises(DeployError, match="has no models/model.pt"):
        trained_bundle(tmp_path)
    with pytest.raises(DeployError, match="does not exist"):
        read_request(tmp_path / "absent", "echo_seg_ddpm")
    with pytest.raises(DeployError, match="has no label map"):
        read_request(tmp_path, "echo_seg_ddpm")
    with pytest.raises(DeployError, match="has no request.json"):
        read_request(tmp_path, "echo_flow")
    with pytest.raises(DeployError, match="bundle 'us_image_to_video' is served by MONAI Label"):
        read_request(tmp_path, "us_image_to_video")
    for content, message in (("{", "not readable JSON"), ('{"ef": 40}', "must hold"), ('{"ejection_fraction": 140}',
                             "outside 0-100"), ('{"ejection_fraction": [30, -1]}', "outside 0-100")):  # fmt: skip
        (tmp_path / "request.json").write_text(content)
        with pytest.raises(DeployError, match=message):
            read_request(tmp_path, "echo_flow")
    (tmp_path / "request.json").write_text('{"ejection_fraction": [30, 62.5]}')
    assert read_request(tmp_path, "echo_flow").ejection_fractions == [30.0, 62.5]
    (tmp_path / "request.json").write_text('{"ejection_fraction": 40, "solver": "heun", "steps": 16}')
    assert read_request(tmp_path, "echo_flow").parameters == {"solver": "heun", "steps": 16}
    (tmp_path / "request.json").write_text('{"ejection_fraction": 40, "steps": 0}')
    with pytest.raises(DeployError, match="request.json': parameter 'steps' must be in 1-1000"):
        read_request(tmp_path, "echo_flow")
    label_map_folder(tmp_path / "seg", phantom[::2, ::2])
    (tmp_path / "seg" / "request.json").write_text('{"sampler": "ddim", "steps": 5}')
    assert read_request(tmp_path / "seg", "echo_seg_ddpm").parameters == {"sampler": "ddim", "steps": 5}
    (tmp_path / "seg" / "request.json").write_text('{"sampler": "euler"}')
    with pytest.raises(DeployError, match="'sampler' must be one of ddpm, ddim, dpm_solver"):
        read_request(tmp_path / "seg", "echo_seg_ddpm")


def test_dicom_seg_reads_as_the_label_map(seg_model, tmp_path):
    _, phantom = seg_model
    label = phantom[::2, ::2]
    assert np.array_equal(read_dicom_seg(write_seg(tmp_path / "seg.dcm", label)), label)
    ct = Dataset()
    ct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct.file_meta = FileMetaDataset()
    ct.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ct.file_meta.MediaStorageSOPClassUID = ct.SOPClassUID
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with pytest.raises(ValueError, match="ct.dcm' is not a DICOM SEG"):
        read_dicom_seg(tmp_path / "ct.dcm")


def test_a_label_map_or_dicom_seg_becomes_an_ultrasound_image(seg_model, tmp_path):
    model, phantom = seg_model
    label = phantom[::2, ::2]
    inputs = label_map_folder(tmp_path / "in", label)
    write_seg(inputs / "slicer_seg.dcm", label)
    written = generate_dicom(model, read_request(inputs, "echo_seg_ddpm"), tmp_path / "out", "echo_seg_ddpm")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written) and len(written) == 2
    uids = set()
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == US_IMAGE_STORAGE and ds.Modality == "US" and "SYNTHETIC" in ds.SeriesDescription
        assert ds.SeriesDescription == DESCRIPTION and "NumberOfFrames" not in ds
        assert "Doe" not in str(ds.PatientName) and ds.PatientID != "PID-12345"  # nothing copied from the SEG
        assert (ds.Rows, ds.Columns) == (SEG_SIZE, SEG_SIZE)
        uids |= {ds.SOPInstanceUID, ds.SeriesInstanceUID}
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint8 and pixels.std() > 0
        assert pixels[label == 0].mean() < pixels[label > 0].mean()  # black outside the drawn sector
    assert len(uids) == 4  # new UIDs per file
    item = DicomCine(tmp_path / "out")[0]
    assert item["image"].shape == (1, SEG_SIZE, SEG_SIZE) and 0 <= item["image"].min() < item["image"].max() <= 255


@pytest.mark.parametrize("case", ["size", "classes", "seg"])
def test_a_refused_label_map_names_the_file_and_writes_nothing(seg_model, tmp_path, case):
    model, phantom = seg_model
    label = phantom if case == "size" else phantom[::2, ::2].copy()
    if case == "classes":
        label[0, 0] = 9
    inputs = label_map_folder(tmp_path / "in", label)
    if case == "seg":
        (inputs / "drawn_gt.nii.gz").unlink()
        (inputs / "broken.dcm").write_bytes(b"not a dicom file")
    message = {"size": "is 64x64 but the network takes 32x32", "classes": "drawn_gt.nii.gz: label values \\[9\\]",
               "seg": "broken.dcm' is not a readable DICOM"}[case]  # fmt: skip
    with pytest.raises(DeployError, match=message) as error:
        generate_dicom(model, read_request(inputs, "echo_seg_ddpm"), tmp_path / "out", "echo_seg_ddpm")
    assert ".echo_monai_serve_" not in str(error.value)  # the user's file is named, not its scratch copy
    assert list((tmp_path / "out").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_an_ejection_fraction_becomes_a_synthetic_cine(flow_model, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "request.json").write_text(json.dumps({"ejection_fraction": [30, 65]}))
    written = generate_dicom(flow_model, read_request(tmp_path / "in", "echo_flow"), tmp_path / "out", "echo_flow")
    assert len(written) == 2
    parser = ConfigParser()
    parser.read_config([str(FLOW_BUNDLE / "configs" / f) for f in ("inference.yaml", "presets/tiny.yaml")])
    fps = parser.get_parsed_content("fps")  # the frame rate the tiny bundle generates at
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == US_MULTIFRAME_STORAGE and ds.Modality == "US" and "SYNTHETIC" in ds.SeriesDescription
        assert int(ds.NumberOfFrames) > 1 and float(ds.FrameTime) == pytest.approx(1000.0 / float(fps), rel=1e-3)
    items = DicomCine(tmp_path / "out")
    assert len(items) == 2 and all(item["video"].shape[1] > 1 and item["video"].std() > 0 for item in items)
    assert items[0]["fps"] == pytest.approx(float(fps), rel=1e-3)
    # one still frame beside request.json: every cine starts from it
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "in" / "frame.png"), (np.indices((32, 32)).sum(0) * 4).astype(np.uint8))
    request = read_request(tmp_path / "in", "echo_flow")
    assert request.reference_image == str(tmp_path / "in" / "frame.png")
    assert len(generate_dicom(flow_model, request, tmp_path / "from_frame", "echo_flow")) == 2
    cv2.imwrite(str(tmp_path / "in" / "second.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(DeployError, match="holds 2 images; give at most one still frame"):
        read_request(tmp_path / "in", "echo_flow")


def _deploy_python() -> str:
    made = subprocess.run(["bash", str(REPO / ".ci" / "deploy-env")], capture_output=True, text=True, timeout=1200)
    assert made.returncode == 0, made.stderr[-3000:]
    return str(REPO / made.stdout.strip().splitlines()[-1])


def _run_app(python: str, inputs: Path, output: Path, model: Path, as_module: bool = False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLOSCAN_")}
    app = ["-m", "echo_monai.apps.deploy"] if as_module else [str(APP)]
    command = [python, *app, "-i", str(inputs), "-o", str(output), "-m", str(model)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=output.parent, env=env)


@pytest.mark.skipif(sys.platform != "linux", reason="the SDK's holoscan wheels are Linux only")
def test_the_sdk_application_runs_for_real(seg_model, flow_model, tmp_path):
    python = _deploy_python()
    model, phantom = seg_model
    inputs = tmp_path / "seg_in"
    inputs.mkdir()
    write_seg(inputs / "drawn.dcm", phantom[::2, ::2])
    done = _run_app(python, inputs, tmp_path / "seg_out", model)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.suffix for p in (tmp_path / "seg_out").iterdir()] == [".dcm"]
    assert pydicom.dcmread(next((tmp_path / "seg_out").iterdir())).SOPClassUID == US_IMAGE_STORAGE

    (tmp_path / "ef_in").mkdir()
    (tmp_path / "ef_in" / "request.json").write_text('{"ejection_fraction": 55}')
    done = _run_app(python, tmp_path / "ef_in", tmp_path / "ef_out", flow_model, as_module=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pydicom.dcmread(next((tmp_path / "ef_out").iterdir())).SOPClassUID == US_MULTIFRAME_STORAGE

    (tmp_path / "ef_in" / "request.json").write_text('{"ejection_fraction": 120}')
    bad = tmp_path / "bad"
    label_map_folder(bad, phantom)  # 64 px for a 32 px model: refused inside the run, by the bundle
    for inputs, model_folder, message in ((tmp_path / "ef_in", flow_model, "outside 0-100"),
                                          (bad, model, "is 64x64 but the network takes 32x32"),
                                          (bad, tmp_path, "has no models/model.pt")):  # fmt: skip
        output = tmp_path / f"out_{len(list(tmp_path.iterdir()))}"
        done = _run_app(python, inputs, output, model_folder)
        errors = [line for line in done.stderr.splitlines() if line.startswith("echo_monai deploy: error:")]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr[-3000:]
        assert not list(output.rglob("*.dcm"))


def test_the_packaging_configuration():
    """app.yaml holds what the MAP packager (holoscan-cli 3.x ``holoscan package -c``) requires; no Docker here."""
    import yaml

    folder = APP.parent
    config = yaml.safe_load((folder / "app.yaml").read_text())
    assert config["application"]["title"] and config["application"]["version"] and config["resources"]
    assert (folder / "__main__.py").is_file() and "echo_monai[deploy]" in (folder / "requirements.txt").read_text()
