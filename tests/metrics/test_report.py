from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from echo_monai.metrics.report import markdown_tables, to_json_compatible, write_report

from .threads import single_thread  # noqa: F401 (autouse fixture)

METRICS = {
    "FD_view_classifier": 12.5,
    "psnr": float("inf"),
    "segmentation": {
        "real": {"dice_lv_endo": 0.9, "dice_la": 0.8, "num_train_samples": 10},
        "synthetic": {"dice_lv_endo": np.float32(0.85), "dice_la": float("nan"), "num_train_samples": 10},
    },
    "privacy": {"memorisation_rate": 0.02, "memorised_indices": torch.tensor([4, 17])},
}


def test_writes_json_markdown_and_figures(tmp_path):
    paths = write_report(
        tmp_path / "eval",
        METRICS,
        real_samples=torch.rand(3, 1, 16, 16) * 2 - 1,
        synthetic_samples=torch.rand(3, 1, 16, 16) * 2 - 1,
        ef_requested=[30.0, 50.0, 70.0],
        ef_measured=[35.0, 48.0, 66.0],
    )
    loaded = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert loaded["segmentation"]["synthetic"]["dice_la"] == "nan" and loaded["psnr"] == "inf"
    assert loaded["privacy"]["memorised_indices"] == [4, 17]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| real | 0.9 | 0.8 | 10 |" in report and "| FD_view_classifier | 12.5 |" in report
    for key in ("samples", "bars_0", "ef_scatter"):
        assert os.path.isfile(paths[key]) and os.path.basename(paths[key]) in report
    assert not [name for name in os.listdir(tmp_path / "eval") if ".tmp" in name]


def test_explicit_bars_replace_the_default(tmp_path):
    paths = write_report(tmp_path, {"a": 1.0}, bars={"utility": {"real": 0.9, "synthetic": 0.8}})
    assert "bars_0" in paths and "samples" not in paths


def test_markdown_handles_nested_sections():
    text = markdown_tables(to_json_compatible({"distribution": {"FD_x": 1.0, "per_view": {"a2c": 2.0}}}))
    assert "## distribution" in text and "## distribution / per_view" in text and "| a2c | 2 |" in text


def test_write_report_rejects_unpaired_inputs(tmp_path):
    with pytest.raises(ValueError, match="real_samples and synthetic_samples"):
        write_report(tmp_path, {}, real_samples=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="ef_requested and ef_measured"):
        write_report(tmp_path, {}, ef_measured=[1.0])
