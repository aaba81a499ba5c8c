"""The benchmark suite's CPU path at toy size, end to end: every bundle's case, the JSON and the Markdown table (not the
figures: tiny networks on a shared CPU say nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "suite.py"


def test_suite_toy_profile_writes_json_and_markdown(tmp_path):
    out = tmp_path / "suite"
    done = subprocess.run([sys.executable, str(SCRIPT), "--profile", "toy", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["profile"] == "toy" and results["matmul_peak_gflops"] > 0
    seg, video, text, image_to_video, motion = results["cases"]
    assert [c["case"] for c in (text, image_to_video, motion)] == [
        "echo_text_controlnet text", "us_image_to_video", "echo_motion_video"]  # fmt: skip
    for case in (seg, video, text, image_to_video, motion):
        assert case["iterations_per_s"] > 0 and 0 <= case["data_wait_fraction"] < 1
        assert case["train_step_gflop"] > 0 and case["train_gflops_per_s"] > 0
        assert case["seconds_per_nfe"] > 0
    assert seg["speedup_vs_seed"] == 100.0  # DDPM-1000 over DPM-Solver++ 10 at the same time per evaluation
    assert seg["samples_per_s_default"] == pytest.approx(seg["samples_per_s_seed"] * 100)
    assert video["seconds_per_video_one_step"] < video["seconds_per_video_default"] < video["seconds_per_video_seed"]
    assert motion["seed_setting"] == "DDPM, 128 NFE (MCDM)"
    for case in (text, image_to_video, motion):  # the default's NFE (2 in the tiny presets) against the seed's
        assert case["speedup_vs_seed"] > 1 and case["speedup_one_step_vs_seed"] > case["speedup_vs_seed"]
    assert image_to_video["frames_per_s_one_step"] > image_to_video["frames_per_s_default"]
    assert text["samples_per_s_one_step"] > text["samples_per_s_default"]
    assert text["one_step_setting"] == "1 NFE, unguided"  # the distilled student: guidance in its weights
    assert image_to_video["one_step_setting"] == "1 NFE, guided"
    table = out.with_suffix(".md").read_text()
    assert (
        table.count("\n| echo_") == 4
        and table.count("\n| us_image_to_video") == 1
        and "matmul peak" in table
        and "peer:" in table
    )
