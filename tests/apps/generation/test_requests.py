"""Typed requests and reports, and the request lists built from bundle settings."""

from __future__ import annotations

import numpy as np
import pytest

from echo_monai.apps.generation import (
    GenerationReport,
    GenerationRequest,
    label_map_requests,
    make_requests,
    requests_fingerprint,
)
from echo_monai.apps.simulate import simulate


def test_make_requests_zips_lists_and_shares_scalars():
    requests = make_requests({"ejection_fraction": [30.0, 60.0], "view": 2}, prefix="syn", seed=5)
    assert [r.name for r in requests] == ["syn_00000", "syn_00001"] and [r.seed for r in requests] == [5, 6]
    assert requests[1].conditions == {"ejection_fraction": 60.0, "view": 2} and requests[1].index == 1
    assert len(make_requests({"view": 0}, count=3)) == 3
    with pytest.raises(ValueError, match="one value per item"):
        make_requests({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="give count"):
        make_requests({"view": 0})
    with pytest.raises(ValueError, match="file stem"):
        GenerationRequest("a/b", 0, 0)


def test_label_map_requests_keep_their_source(tmp_path):
    simulate("camus", tmp_path, n=3, seed=0, image_size=(32, 32))
    requests = label_map_requests(tmp_path, copies=2, split="training")
    assert len(requests) == 2 * 4 * len((tmp_path / "database_split" / "subgroup_training.txt").read_text().split())
    first = requests[0]
    assert first.name.endswith("_c00") and requests[1].name.endswith("_c01")
    assert first.source["source_split"] == "training" and first.source["label_map"].endswith("_gt.nii.gz")
    assert set(first.conditions) == {"label", "image"} and [r.index for r in requests] == list(range(len(requests)))


def test_fingerprint_and_report():
    a = make_requests({"ejection_fraction": [30.0, 60.0]})
    b = make_requests({"ejection_fraction": [30.0, 61.0]})
    assert requests_fingerprint(a) == requests_fingerprint(make_requests({"ejection_fraction": [30.0, 60.0]}))
    assert requests_fingerprint(a) != requests_fingerprint(b)
    masked = [GenerationRequest("m", 0, 0, {"lv_mask": np.zeros((4, 4))})]
    assert masked[0].to_dict()["conditions"]["lv_mask"] == "array(4, 4)"
    report = GenerationReport("job", 1, 3, ["a"], [], ["b", "c"], accepted_references=1, rejected_references=3)
    assert report.gate_rejection_rate == 0.75 and report.to_dict()["gate_rejection_rate"] == 0.75


def test_prompt_requests_of_every_mode(tmp_path):
    from echo_monai.apps.generation import prompt_requests, request_conditions

    text = prompt_requests("text", per_class=2, seed=5)
    assert len(text) == 8 and [r.seed for r in text] == list(range(5, 13))
    assert text[0].name == "patient00000_2CH_ED" and text[1].name == "patient00001_2CH_ED"
    assert text[-1].conditions["prompt"].endswith("four-chamber view during the end-systolic phase")
    assert {r.conditions["prompt"] for r in prompt_requests("unconditional")} == {""}
    own = prompt_requests("text", prompts=["A two-chamber echocardiography image at end-systolic", "a heart"])
    assert [(r.source["view"], r.source["phase"]) for r in own] == [("2CH", "ES"), ("4CH", "ED")]
    root = simulate("camus", tmp_path / "c", n=3, seed=0, image_size=(32, 32))
    control = prompt_requests("controlnet", label_maps=root, split="training")
    assert len(control) == 4 and all("label" in r.conditions for r in control)
    two_chamber = [r for r in control if r.source["view"] == "2CH"]
    assert all("two-chamber" in r.conditions["prompt"] for r in two_chamber)
    assert request_conditions(control)[0] == dict(control[0].conditions)
    mine = prompt_requests("controlnet", label_maps=root, split="training", prompts=["a heart"])
    assert [r.conditions["prompt"] for r in mine] == ["a heart"] * 4 and [r.name for r in mine] == [
        r.name for r in control
    ]
    each = [f"heart {i}" for i in range(4)]
    assert [
        r.conditions["prompt"] for r in prompt_requests("controlnet", label_maps=root, prompts=each, split="training")
    ] == each
    with pytest.raises(ValueError, match=r"controlnet takes 1 prompt or one per request \(4\), got 2"):
        prompt_requests("controlnet", label_maps=root, split="training", prompts=["a", "b"])
    with pytest.raises(ValueError, match="mode must be"):
        prompt_requests("sketch")
    with pytest.raises(ValueError, match="needs label_maps"):
        prompt_requests("controlnet")
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        prompt_requests("text", per_class=0)
    with pytest.raises(ValueError, match=r"prompts\[0\] must be a non-empty string"):
        prompt_requests("text", prompts=[""])


@pytest.fixture
def busi_root(tmp_path):
    return simulate("busi", tmp_path / "busi", n=6, seed=0, image_size=(64, 80))


def test_image_requests_cover_each_busi_image_and_copy(busi_root):
    from echo_monai.apps.generation import image_requests

    requests = image_requests(busi_root, copies=2, seed=3)
    assert len(requests) == 2 * 4  # 2 benign + 2 malignant images (normal left out), 2 copies each
    assert [r.seed for r in requests] == list(range(3, 11)) and [r.index for r in requests] == list(range(8))
    assert [r.name for r in requests[:3]] == ["benign_1_v00", "benign_1_v01", "benign_2_v00"]
    assert len({r.name for r in requests}) == 8 and not any(c in r.name for r in requests for c in " ()")
    first = requests[1]
    assert first.conditions["image"].endswith("benign/benign (1).png") and first.conditions["label"] == "benign"
    assert [m.rsplit("/", 1)[-1] for m in first.conditions["mask"]] == ["benign (1)_mask.png"]
    assert first.source == {"image": "benign/benign (1).png", "label": "benign", "copy": 1}
    assert {r.conditions["label"] for r in requests} == {"benign", "malignant"} and requests[0].split == "TRAIN"


def test_image_requests_filter_limit_prefix_and_split(busi_root):
    from echo_monai.apps.generation import image_requests

    normal = image_requests(busi_root, classes=("normal",), split="VAL", prefix="syn")
    assert [r.name for r in normal] == ["syn_normal_1_v00", "syn_normal_2_v00"] and normal[0].split == "VAL"
    assert [r.name for r in image_requests(busi_root, classes="malignant", limit=1)] == ["malignant_1_v00"]
    assert len(image_requests(busi_root, classes=("benign", "malignant", "normal"))) == 6


def test_image_requests_of_one_image_file(busi_root, tmp_path):
    from echo_monai.apps.generation import image_requests

    image = busi_root / "Dataset_BUSI_with_GT" / "malignant" / "malignant (2).png"
    requests = image_requests(image, copies=3, seed=7)
    assert [r.name for r in requests] == ["malignant_2_v00", "malignant_2_v01", "malignant_2_v02"]
    assert [r.seed for r in requests] == [7, 8, 9] and requests[0].conditions["label"] == "malignant"
    assert requests[0].conditions["mask"] == [str(image.with_name("malignant (2)_mask.png"))]
    assert requests[0].source == {"image": "malignant (2).png", "label": "malignant", "copy": 0}
    lone = tmp_path / "scan 1.nii.gz"
    lone.write_bytes(b"")
    (only,) = image_requests(lone)
    assert only.name == "scan_1_v00" and only.conditions["mask"] is None and only.conditions["label"] is None


def test_image_requests_refuse_bad_arguments(busi_root, tmp_path):
    from echo_monai.apps.generation import image_requests

    with pytest.raises(FileNotFoundError, match="root '.*nowhere' does not exist"):
        image_requests(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"unknown: \['cyst'\]"):
        image_requests(busi_root, classes=("benign", "cyst"))
    with pytest.raises(ValueError, match="copies must be an integer >= 1, got 0"):
        image_requests(busi_root, copies=0)
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        image_requests(busi_root, limit=-1)
    with pytest.raises(ValueError, match="is a lesion mask"):
        image_requests(busi_root / "Dataset_BUSI_with_GT" / "benign" / "benign (1)_mask.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match="is not an image file"):
        image_requests(notes)


def test_motion_requests_carry_the_driving_video_and_its_or_a_requested_ef(tmp_path):
    from echo_monai.apps.generation import motion_requests

    simulate("echonet", tmp_path / "echonet", n=8, seed=0, image_size=(32, 32), n_frames=8)
    transfer = motion_requests(tmp_path / "echonet", split="ALL", limit=2, copies=2, seed=3)
    assert len(transfer) == 4 and [r.seed for r in transfer] == [3, 4, 5, 6]
    assert transfer[0].conditions["video"].endswith(".avi") and transfer[0].conditions["reference"] is None
    assert 0.0 < transfer[0].conditions["ejection_fraction"] < 100.0  # the driving video's label
    prior = motion_requests(tmp_path / "echonet", mode="prior", split="ALL", limit=1)
    assert "ejection_fraction" not in prior[0].conditions and prior[0].conditions["motion_seed"] == 0
    asked = motion_requests(tmp_path / "echonet", mode="prior", split="ALL", limit=1, ejection_fraction=40.0)
    assert asked[0].conditions["ejection_fraction"] == 40.0
    with pytest.raises(ValueError, match=r"ejection_fraction must be in \[0, 100\]"):
        motion_requests(tmp_path / "echonet", split="ALL", ejection_fraction=140.0)
