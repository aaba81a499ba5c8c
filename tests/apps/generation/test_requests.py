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
    with pytest.raises(ValueError, match="mode must be"):
        prompt_requests("sketch")
    with pytest.raises(ValueError, match="needs label_maps"):
        prompt_requests("controlnet")
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        prompt_requests("text", per_class=0)
    with pytest.raises(ValueError, match=r"prompts\[0\] must be a non-empty string"):
        prompt_requests("text", prompts=[""])
