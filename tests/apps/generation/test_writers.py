"""The dataset writers: EchoNet (videos), CAMUS and PNG (images with label maps); resumable, read back by the
project's readers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from echo_monai.apps.generation import CamusWriter, EchoNetWriter, GenerationRequest, PngWriter
from echo_monai.data import CAMUS, EchoNetDynamic


def _video(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 6, 32, 32, generator=g) * 2 - 1


def _request(name: str, index: int = 0, ef: float | None = 50.0, split: str = "TRAIN", **source) -> GenerationRequest:
    conditions = {} if ef is None else {"ejection_fraction": ef}
    return GenerationRequest(name, index, index, conditions, split=split, source=source)


def test_echonet_items_read_back(tmp_path):
    requests = [_request(f"synthetic_{i:03d}", i, 30.0 + 5 * i, "TEST" if i == 4 else "TRAIN") for i in range(5)]
    writer = EchoNetWriter(tmp_path, fps=32)
    for request in requests:
        writer.write(request, _video(request.index), extra={"reference_attempts": 2})
    EchoNetWriter(tmp_path).finalize()
    data = EchoNetDynamic(tmp_path, split="ALL", require_tracings=False)
    assert len(data) == 5
    item = data[2]
    assert item["ejection_fraction"] == pytest.approx(40.0) and item["fps"] == 32
    expected = ((_video(2)[0].clamp(-1, 1) + 1) * 127.5).round()
    assert item["video"].shape == (1, 6, 32, 32)
    assert float((item["video"][0] - expected).abs().mean()) < 20  # MJPG is lossy
    assert len(EchoNetDynamic(tmp_path, split="TEST", require_tracings=False)) == 1
    assert writer.records(["synthetic_001"])["synthetic_001"]["reference_attempts"] == 2


def test_resume_skips_finished_items_and_redoes_half_written_ones(tmp_path):
    writer = EchoNetWriter(tmp_path)
    requests = [_request("a"), _request("b", 1)]
    writer.write(requests[0], _video(0))
    mtime = (tmp_path / "Videos" / "a.avi").stat().st_mtime_ns
    assert writer.pending(requests) == [requests[1]]
    (tmp_path / "rows" / "a.json").unlink()  # interrupted between the video and its record: redone
    assert writer.pending(requests) == requests
    assert (tmp_path / "Videos" / "a.avi").stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob(".tmp*"))


def test_echonet_bad_input_errors(tmp_path):
    writer = EchoNetWriter(tmp_path)
    with pytest.raises(ValueError, match="'v1' asks for EF 120"):
        writer.check(_request("v1", ef=120.0))
    with pytest.raises(ValueError, match="'v0' has no 'ejection_fraction'"):
        writer.check(_request("v0", ef=None))
    with pytest.raises(ValueError, match="'v2': split"):
        writer.write(_request("v2", split="HOLDOUT"), _video(0))
    with pytest.raises(ValueError, match=r"v3: expected a video"):
        writer.write(_request("v3"), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="fps"):
        EchoNetWriter(tmp_path, fps=0)
    (tmp_path / "rows").mkdir(exist_ok=True)
    (tmp_path / "rows" / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        writer.finalize()


def test_uint8_video_written_as_is(tmp_path):
    frames = torch.from_numpy(np.full((3, 16, 16), 200, np.uint8))
    EchoNetWriter(tmp_path).write(_request("u", ef=55.0), frames)
    EchoNetWriter(tmp_path).finalize()
    video = EchoNetDynamic(tmp_path, require_tracings=False)[0]["video"]
    assert abs(float(video.mean()) - 200) < 3


def _label_item(seed: int) -> tuple[dict, torch.Tensor]:
    indices = torch.randint(0, 5, (8, 8), generator=torch.Generator().manual_seed(seed))
    return {"label_map": torch.nn.functional.one_hot(indices, 5).permute(2, 0, 1).float()}, indices


def test_png_layout(tmp_path):
    item, indices = _label_item(1)
    writer = PngWriter(tmp_path)
    request = _request("patient0001_2CH_ED_c01", ef=None)
    writer.write(request, torch.ones(1, 8, 8), item)
    label = cv2.imread(str(tmp_path / "labels" / "patient0001_2CH_ED_c01.png"), cv2.IMREAD_UNCHANGED)
    image = cv2.imread(str(tmp_path / "images" / "patient0001_2CH_ED_c01.png"), cv2.IMREAD_UNCHANGED)
    assert (label == (indices - 1).clamp(min=0).numpy()).all() and (image == 255).all()
    assert writer.pending([request]) == []
    with pytest.raises(KeyError, match="no 'label_map'"):
        writer.write(_request("x", ef=None), torch.ones(1, 8, 8), {})
    unlabelled = PngWriter(tmp_path / "plain", label_key=None)
    unlabelled.write(_request("y", ef=None), torch.zeros(1, 8, 8))
    assert (tmp_path / "plain" / "images" / "y.png").is_file() and not (tmp_path / "plain" / "labels").exists()


def test_camus_layout_reads_back_with_its_sources(tmp_path):
    writer = CamusWriter(tmp_path)
    requests = [
        _request(f"patient000{i}_2CH_ED_c{i:02d}", i, ef=None, patient=f"patient000{i}", view="2CH", phase="ED", copy=i)
        for i in range(2)
    ]
    assert writer.pending(requests) == requests
    labels = []
    for request in requests:
        item, indices = _label_item(request.index)
        labels.append(indices)
        writer.write(request, torch.zeros(1, 8, 8), item)
    assert writer.pending(requests) == []
    data = CAMUS(tmp_path, views=("2CH",), phases=("ED",))
    assert len(data) == 2 and data[0]["patient"] == "patient0000c00"
    assert torch.equal(data[1]["label"][0].long(), (labels[1] - 1).clamp(min=0))
    (tmp_path / "database_nifti" / "patient0001c01" / "patient0001c01_2CH_ED.nii.gz").unlink()
    assert writer.pending(requests) == [requests[1]]
    writer.finalize()
    sources = (tmp_path / "synthetic_sources.csv").read_text().splitlines()
    assert sources[0].startswith("name,split,seed,patient") and len(sources) == 3
    with pytest.raises(ValueError, match="has no source"):
        writer.check(_request("nosource", ef=None))


def test_camus_layout_of_prompted_images_without_label_maps(tmp_path):
    from echo_monai.apps.generation import prompt_requests

    writer = CamusWriter(tmp_path, label_key=None, prompt_key="prompt", generator="echo_text_controlnet")
    requests = prompt_requests("text", per_class=1)
    for request in requests:
        writer.write(request, torch.zeros(1, 8, 8), {})
    writer.finalize()
    data = CAMUS(tmp_path, require_label=False)
    assert len(data) == 4 and "label" not in data[0]
    assert not list(tmp_path.rglob("*_gt.nii.gz"))
    assert "Synthetic: echo_text_controlnet" in next(tmp_path.rglob("Info_2CH.cfg")).read_text()
    rows = (tmp_path / "prompts.csv").read_text().splitlines()
    assert rows[0] == "name,patient,view,phase,prompt" and len(rows) == 5
    assert "two-chamber view during the end-diastolic phase" in rows[1]
    with pytest.raises(ValueError, match="has no text 'prompt'"):
        writer.check(_request("x", ef=None, patient="patient0001", view="2CH", phase="ED"))
