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
