"""MONAI Label: label map -> synthetic echo image, EF -> synthetic cine, on tiny trained bundles.

The request handling (``echo_monai.apps.label.tasks``) and the app folder (``python -m echo_monai.apps.label``) run in
the project's environment; the server runs for real (``monailabel start_server`` on 127.0.0.1, real HTTP requests)
in MONAI Label's own environment (``.ci/label-env``, made once and reused).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from echo_monai.apps.label.__main__ import main as make_app_main
from echo_monai.apps.label.tasks import DEFAULT_PROMPT, label_request, run_label_request, task_config
from echo_monai.apps.serving import DESCRIPTION, ServeError
from echo_monai.data.phantom.dicom_writer import US_IMAGE_STORAGE

REPO = Path(__file__).resolve().parents[2]
SEG_SIZE = 32  # the tiny echo_seg_ddpm preset's image_size


def save_label_map(path: Path, label: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(label.astype(np.int16), np.eye(4)), str(path))
    return path


def test_requests_are_checked_before_generation(tmp_path):
    label = save_label_map(tmp_path / "drawn_gt.nii.gz", np.zeros((SEG_SIZE, SEG_SIZE)))
    assert task_config("echo_seg_ddpm") == {"sampler": "dpm_solver", "steps": 10, "output_format": "nifti"}
    assert task_config("echo_flow")["ejection_fraction"] == 55.0
    request, settings, fmt = label_request("echo_seg_ddpm", {"image": str(label), "steps": 5, "model": "seg"})
    assert request.label_maps == [str(label)] and settings == {"sampler_name": "dpm_solver", "num_inference_steps": 5}
    assert fmt == "nifti"
    request, settings, _ = label_request("echo_flow", {"image": "ignored", "ejection_fraction": 40, "solver": "heun"})
    assert request.ejection_fractions == [40.0] and settings == {"solver": "heun", "num_inference_steps": 8}
    assert request.reference_image is None and task_config("echo_flow")["reference"] == "sampled"
    still = tmp_path / "benign (1).png"
    still.write_bytes(b"png")  # checked by name here; read by the bundle
    request, _, _ = label_request("echo_flow", {"image": str(still), "ejection_fraction": 40, "reference": "image"})
    assert request.reference_image == str(still)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    request, settings, _ = label_request("us_image_to_video", {"image": str(still), "steps": 4})
    assert request.images == [str(still)] and len(request) == 1
    assert settings == {"solver": "euler", "num_inference_steps": 4}
    for bundle, params, message in (
        ("echo_seg_ddpm", {"image": str(tmp_path / "absent.nii.gz")}, "needs a label map file"),
        ("us_image_to_video", {"image": str(tmp_path / "absent.png")}, "needs an image file"),
        ("us_image_to_video", {"image": str(notes)}, "image '.*notes.txt' must be one of .png"),
        ("echo_seg_ddpm", {"image": str(label), "sampler": "euler"}, "'sampler' must be one of ddpm, ddim"),
        ("echo_seg_ddpm", {"image": str(label), "steps": 0}, "'steps' must be in 1-1000"),
        ("echo_seg_ddpm", {"image": str(label), "steps": 2.5}, "'steps' must be a whole number"),
        ("echo_seg_ddpm", {"image": str(label), "output_format": "png"}, "output_format must be one of nifti, dicom"),
        ("echo_flow", {"image": "x"}, "needs 'ejection_fraction'"),
        ("echo_flow", {"image": "x", "ejection_fraction": 120}, "outside 0-100"),
        ("echo_flow", {"image": "x", "ejection_fraction": [30, 40]}, "one ejection_fraction per request"),
        ("echo_flow", {"image": "x", "ejection_fraction": 30, "reference": "mine"}, "reference must be one of sampled"),
        ("echo_flow", {"image": "x", "ejection_fraction": 30, "reference": "image"}, "needs an image file"),
        ("echo_flow", {"image": str(notes), "ejection_fraction": 30, "reference": "image"}, "must be one of .png"),
    ):
        with pytest.raises(ServeError, match=message):
            label_request(bundle, params)


def test_the_request_generates_a_viewer_file(seg_model, flow_model, tmp_path):
    model, phantom = seg_model
    label = phantom[::2, ::2]
    drawn = save_label_map(tmp_path / "in_gt.nii.gz", label)
    path, result = run_label_request(model, {"image": str(drawn), "steps": 4})
    image = nib.load(path)
    assert image.shape == (SEG_SIZE, SEG_SIZE, 1) and "synthetic" in image.header["descrip"].tobytes().decode().lower()
    assert result["bundle"] == "echo_seg_ddpm" and result["description"] == DESCRIPTION
    assert result["shape"] == [SEG_SIZE, SEG_SIZE, 1]
    assert result["num_inference_steps"] == 4 and result["sampler_name"] == "dpm_solver"
    os.remove(path)
    path, result = run_label_request(model, {"image": str(tmp_path / "in_gt.nii.gz"), "output_format": "dicom"})
    assert pydicom.dcmread(path).SOPClassUID == US_IMAGE_STORAGE and path.endswith(".dcm")
    os.remove(path)
    path, result = run_label_request(flow_model, {"image": "-", "ejection_fraction": 35})
    frames = nib.load(path).shape
    assert len(frames) == 3 and frames[2] > 1 and result["ejection_fraction"] == 35.0
    assert result["reference"] == "sampled"
    sampled = np.asarray(nib.load(path).dataobj)
    os.remove(path)
    still = tmp_path / "frame.png"
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(still), (np.indices((32, 32)).sum(0) * 4).astype(np.uint8))
    path, result = run_label_request(flow_model, {"image": str(still), "ejection_fraction": 35, "reference": "image"})
    assert result["reference"] == "image" and nib.load(path).shape == frames
    assert not np.array_equal(np.asarray(nib.load(path).dataobj), sampled)  # the cine starts from the given frame
    os.remove(path)
    with pytest.raises(ServeError, match="is 64x64 but the network takes 32x32"):
        run_label_request(model, {"image": str(save_label_map(tmp_path / "big_gt.nii.gz", phantom))})
    with pytest.raises(ServeError, match="has no models/model.pt"):
        run_label_request(tmp_path, {"image": str(tmp_path / "in_gt.nii.gz")})


def test_an_image_becomes_a_synthetic_video(image_to_video_bundle, tmp_path):
    root, o = image_to_video_bundle
    model = Path(o["train"]["bundle_root"])
    still = sorted((root / "busi").rglob("malignant (1).png"))[0]
    path, result = run_label_request(model, {"image": str(still), "steps": 4})
    video = np.asarray(nib.load(path).dataobj)  # (W, H, T) uint8
    assert video.ndim == 3 and video.shape[2] > 1 and video.dtype == np.uint8 and video.std() > 0
    assert result["bundle"] == "us_image_to_video" and result["num_inference_steps"] == 4
    os.remove(path)
    path, _ = run_label_request(model, {"image": str(still), "steps": 4, "output_format": "dicom"})
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == video.shape[2] and "SYNTHETIC" in ds.SeriesDescription
    os.remove(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ServeError, match="us_image_to_video: .*broken.png"):
        run_label_request(model, {"image": str(broken)})


def test_a_prompt_and_a_label_map_become_a_synthetic_image(text_controlnet_bundle, tmp_path):
    root, o = text_controlnet_bundle
    model = Path(o["train"]["bundle_root"])
    request, settings, _ = label_request("echo_text_controlnet", {"image": "ignored"})
    assert request.prompts == [DEFAULT_PROMPT] and request.label_maps == [] and settings["mode"] == "text"
    assert "steps" not in task_config("echo_text_controlnet") and task_config("echo_text_controlnet")["mode"] == "text"
    prompt = "A two-chamber echocardiography image at end-systolic"
    path, result = run_label_request(model, {"image": "ignored", "prompt": prompt})
    assert nib.load(path).shape == (SEG_SIZE, SEG_SIZE, 1) and result["mode"] == "text"
    os.remove(path)
    label_map = sorted((root / "camus").rglob("patient0001_2CH_ED_gt.nii.gz"))[0]
    request, _, _ = label_request("echo_text_controlnet", {"image": str(label_map), "mode": "controlnet"})
    assert request.label_maps == [str(label_map)] and request.prompts == []  # the label map's own view and phase
    path, result = run_label_request(model, {"image": str(label_map), "mode": "controlnet", "prompt": prompt})
    assert nib.load(path).shape == (SEG_SIZE, SEG_SIZE, 1) and result["mode"] == "controlnet"
    os.remove(path)
    with pytest.raises(ServeError, match="outside the encoder's vocabulary"):
        run_label_request(model, {"image": "ignored", "prompt": "a parasternal view"})
    with pytest.raises(ServeError, match="needs a label map file"):
        label_request("echo_text_controlnet", {"image": "ignored", "mode": "controlnet"})
    with pytest.raises(ServeError, match="prompt must be a non-empty string"):
        label_request("echo_text_controlnet", {"image": "ignored", "prompt": " "})


def test_the_app_folder(seg_model, flow_model, tmp_path, capsys):
    model, _ = seg_model
    assert make_app_main([str(tmp_path / "app"), str(model), f"flow={flow_model}"]) == 0
    assert "from echo_monai.apps.label.app import EchoMonaiLabelApp" in (tmp_path / "app" / "main.py").read_text()
    assert sorted(p.name for p in (tmp_path / "app" / "model").iterdir()) == ["echo_seg_ddpm", "flow"]
    assert (tmp_path / "app" / "model" / "flow").resolve() == flow_model.resolve()
    assert make_app_main([str(tmp_path / "app"), str(tmp_path)]) == 2
    assert "has no models/model.pt" in capsys.readouterr().err


def _label_python() -> str:
    made = subprocess.run(["bash", str(REPO / ".ci" / "label-env")], capture_output=True, text=True, timeout=2400)
    assert made.returncode == 0, made.stderr[-3000:]
    return str(REPO / made.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nifti(content: bytes) -> np.ndarray:
    assert content[:2] == b"\x1f\x8b", content[:200]  # a .nii.gz
    return np.asarray(nib.Nifti1Image.from_stream(io.BytesIO(gzip.decompress(content))).dataobj)


def _doc_requests(port: int) -> list[str]:
    """docs/monai_label.md's requests to the running server (its ``# with the server`` lines), for `port`."""
    lines = (REPO / "docs" / "monai_label.md").read_text().splitlines()
    requests = [line.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for line in lines if "# with the server" in line]
    assert len(requests) >= 3
    return requests


@pytest.mark.skipif(sys.platform != "linux", reason="MONAI Label's environment is made for Linux here")
@pytest.mark.skipif(os.environ.get("ECHO_MONAI_SKIP_LABEL_SERVER") == "1", reason="ECHO_MONAI_SKIP_LABEL_SERVER=1")
def test_monai_label_serves_the_bundles_for_real(seg_model, flow_model, image_to_video_bundle, text_controlnet_bundle,
                                                 tmp_path):  # fmt: skip
    import requests

    python = _label_python()
    model, phantom = seg_model
    video_root, video_overrides = image_to_video_bundle
    video_model = video_overrides["train"]["bundle_root"]
    text_root, text_overrides = text_controlnet_bundle
    text_model = text_overrides["train"]["bundle_root"]
    app, studies = tmp_path / "app", tmp_path / "studies"
    studies.mkdir()
    made = subprocess.run([python, "-m", "echo_monai.apps.label", str(app), str(model), str(flow_model), video_model,
                           text_model],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    (tmp_path / "untrained").mkdir()
    (app / "model" / "untrained").symlink_to(tmp_path / "untrained")  # a bundle folder without models/model.pt
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    command = [python, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(port)]  # as docs/monai_label.md starts it  # fmt: skip
    start = time.perf_counter()
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        info = None
        while time.perf_counter() - start < 600 and server.poll() is None:
            try:
                info = requests.get(f"{url}/info/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(1)
        started = time.perf_counter() - start
        assert info is not None and info.status_code == 200, (tmp_path / "server.log").read_text()[-3000:]
        models = info.json()["models"]
        assert set(models) == {
            "echo_seg_ddpm",
            "echo_flow",
            "us_image_to_video",
            "echo_text_controlnet",
        }  # not "untrained"
        assert "SYNTHETIC" in models["echo_seg_ddpm"]["description"]
        assert models["echo_seg_ddpm"]["config"]["sampler"] == "dpm_solver"
        assert models["echo_flow"]["config"]["steps"] == 8

        label = phantom[::2, ::2]
        drawn = save_label_map(tmp_path / "drawn_gt.nii.gz", label)

        # the documented requests, as written, from a folder holding the label map they upload
        docs = tmp_path / "docs_run"
        save_label_map(docs / "phantom_camus/database_nifti/patient0001/patient0001_4CH_ED_gt.nii.gz", label)
        frame = (label * 60).astype(np.uint8)  # grey levels of a still frame, for reference: image
        save_label_map(docs / "phantom_camus/database_nifti/patient0001/patient0001_4CH_ED.nii.gz", frame)
        still = sorted((video_root / "busi").rglob("benign (1).png"))[0]
        (docs / "phantom_busi/Dataset_BUSI_with_GT/benign").mkdir(parents=True)
        shutil.copy(still, docs / "phantom_busi/Dataset_BUSI_with_GT/benign/benign (1).png")
        for line in _doc_requests(port):
            done = subprocess.run(["bash", "-c", line], cwd=docs, capture_output=True, text=True, timeout=600)
            server_log = (tmp_path / "server.log").read_text()[-3000:]
            assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}\n{server_log}"
        assert nib.load(docs / "synthetic_image.nii.gz").shape == (SEG_SIZE, SEG_SIZE, 1)
        assert pydicom.dcmread(docs / "synthetic_image.dcm").SOPClassUID == US_IMAGE_STORAGE
        assert nib.load(docs / "synthetic_cine.nii.gz").ndim == 3
        from_frame = np.asarray(nib.load(docs / "synthetic_cine_from_frame.nii.gz").dataobj)
        assert from_frame.shape == nib.load(docs / "synthetic_cine.nii.gz").shape and from_frame.std() > 0
        assert nib.load(docs / "synthetic_video.nii.gz").shape[2] > 1
        assert nib.load(docs / "synthetic_prompted.nii.gz").shape == (SEG_SIZE, SEG_SIZE, 1)
        assert nib.load(docs / "synthetic_controlnet.nii.gz").shape == (SEG_SIZE, SEG_SIZE, 1)

        def infer(task: str, params: dict, path: Path = drawn):
            with open(path, "rb") as f:
                files = {"file": (path.name, f, "application/octet-stream")}
                begin = time.perf_counter()
                answer = requests.post(f"{url}/infer/{task}", params={"output": "image"}, files=files,
                                       data={"params": json.dumps(params)}, timeout=600)  # fmt: skip
            return answer, time.perf_counter() - begin

        answer, seg_seconds = infer("echo_seg_ddpm", {"steps": 10})
        assert answer.status_code == 200, answer.text[:2000]
        image = _nifti(answer.content)  # (W, H, 1) uint8, as the CAMUS release stores images
        assert image.shape == (SEG_SIZE, SEG_SIZE, 1) and image.dtype == np.uint8 and image.std() > 0
        pixels = image[..., 0].T  # (H, W), as the label map was drawn
        assert pixels[label == 0].mean() < pixels[label > 0].mean()  # black outside the drawn sector
        flipped = save_label_map(tmp_path / "other_gt.nii.gz", np.flip(label, 1))
        other, _ = infer("echo_seg_ddpm", {"steps": 10}, flipped)
        assert other.status_code == 200 and not np.array_equal(_nifti(other.content), image)  # the map guides it

        answer, flow_seconds = infer("echo_flow", {"ejection_fraction": 60})
        assert answer.status_code == 200, answer.text[:2000]
        cine = _nifti(answer.content)
        assert cine.ndim == 3 and cine.shape[2] > 1 and cine.dtype == np.uint8 and cine.std() > 0

        prompt = "A two-chamber echocardiography image at end-systolic"
        answer, text_seconds = infer("echo_text_controlnet", {"prompt": prompt}, drawn)
        assert answer.status_code == 200 and _nifti(answer.content).shape == (SEG_SIZE, SEG_SIZE, 1), answer.text[:2000]
        controlnet = {"prompt": prompt, "mode": "controlnet"}
        answer, controlnet_seconds = infer("echo_text_controlnet", controlnet, drawn)  # drawn guides it
        assert answer.status_code == 200 and _nifti(answer.content).std() > 0, answer.text[:2000]

        answer, video_seconds = infer("us_image_to_video", {}, still)  # the bundle's own steps
        assert answer.status_code == 200, answer.text[:2000]
        video = _nifti(answer.content)
        assert video.ndim == 3 and video.shape[2] > 1 and video.dtype == np.uint8 and video.std() > 0

        big = save_label_map(tmp_path / "big_gt.nii.gz", phantom)
        notes = tmp_path / "notes.txt"
        notes.write_text("not an image")
        wrong = label.copy()
        wrong[0, 0] = 9
        for task, params, path, status, message in (
            ("echo_seg_ddpm", {}, big, 400, "is 64x64 but the network takes 32x32"),
            ("us_image_to_video", {}, notes, 400, "must be one of .png"),
            ("echo_text_controlnet", {"prompt": "a parasternal view"}, drawn, 400, "outside the encoder's vocabulary"),
            ("echo_text_controlnet", {"mode": "controlnet"}, big, 400, "64x64"),
            ("echo_seg_ddpm", {}, save_label_map(tmp_path / "wrong_gt.nii.gz", wrong), 400, "label values [9]"),
            ("echo_seg_ddpm", {"sampler": "euler"}, drawn, 400, "'sampler' must be one of"),
            ("echo_flow", {"ejection_fraction": 140}, drawn, 400, "outside 0-100"),
            ("nope", {}, drawn, 404, "unknown task 'nope'"),
            ("untrained", {}, drawn, 503, "has no models/model.pt"),
        ):
            answer, _ = infer(task, params, path)
            detail = answer.json().get("detail", "") if answer.headers.get("content-type") == "application/json" else ""
            assert answer.status_code == status and message in detail and "\n" not in detail, answer.text[:2000]
        assert requests.get(f"{url}/info/", timeout=5).status_code == 200  # still serving
        print(
            f"MONAI Label: server up in {started:.1f} s; a request: seg {seg_seconds:.2f} s, "
            f"flow {flow_seconds:.2f} s, image to video {video_seconds:.2f} s, prompt {text_seconds:.2f} s, "
            f"prompt + label map {controlnet_seconds:.2f} s"
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()
