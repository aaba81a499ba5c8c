"""The sampler-fidelity benchmark end to end at the test preset's size: phantom, training, generation per sampler
and seed, downstream runs, the printed table and the JSON (not its figures: tiny networks say nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seg_ddpm_samplers.py"


def _run(workdir: Path, *extra: str) -> str:
    command = [sys.executable, str(SCRIPT), "--skip-speed", "--preset", "tiny", "--phantom", "hard",
               "--workdir", str(workdir), "--generator-epochs", "1", "--label-maps", "3", "--generation-seeds", "2",
               "--downstream-seeds", "2", "--seg-steps", "2", "--seg-batch", "2", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout


def test_benchmark_pairs_runs_and_reports_spread(tmp_path):
    out = _run(tmp_path, "--variants", "dpm2m-20", "--json", str(tmp_path / "r.json"))
    assert "3 label maps x 2 generation seeds x 2 downstream seeds = 4 paired runs per sampler" in out
    assert "held-out real test set of 120 images" in out  # the hard phantom's 30 test patients
    results = json.loads((tmp_path / "r.json").read_text())["hard"]
    reference, default = results["ddpm-1000"], results["dpm2m-20"]
    assert len(reference["runs"]) == len(default["runs"]) == 4
    assert reference["dice"]["dice_mean"]["runs"] == 4 and "vs_reference" not in reference
    paired = [a["dice_mean"] - b["dice_mean"] for a, b in zip(default["runs"], reference["runs"], strict=True)]
    assert abs(default["vs_reference"]["mean"] - sum(paired) / 4) < 1e-9
    assert set(default["grey"]) >= {"lv_cavity_mean", "myocardium_mean", "left_atrium_mean", "outside_sector_mean"}
    assert default["grey"]["outside_sector_mean"] == 0.0  # black outside the sector, as the bundle writes
    cached = sorted(p.name for p in (tmp_path / "hard" / "generated").iterdir())
    assert cached == [f"{name}_maps3_seed{g}.pt" for name in ("ddpm-1000", "dpm2m-20") for g in (0, 1)]

    # a rerun with another sampler reuses the trained model and the cached images, and pairs with them
    again = _run(tmp_path, "--variants", "dpm2m-20", "dpm1-20", "--json", str(tmp_path / "r2.json"))
    assert "training echo_seg_ddpm" not in again
    rerun = json.loads((tmp_path / "r2.json").read_text())["hard"]
    assert rerun["ddpm-1000"]["runs"] == reference["runs"]
    assert "dpm1-20" in rerun and len(rerun["dpm1-20"]["runs"]) == 4

    # the distilled student: trained once from the same model, sampled at one evaluation, paired with the same runs
    distilled = _run(tmp_path, "--variants", "cd-1", "--distill-epochs", "1", "--json", str(tmp_path / "r3.json"))
    assert "distilling the student" in distilled and "training echo_seg_ddpm" not in distilled
    student = json.loads((tmp_path / "r3.json").read_text())["hard"]
    assert student["cd-1"]["nfe"] == 1 and len(student["cd-1"]["runs"]) == 4
    assert (tmp_path / "hard" / "bundle" / "models" / "student.pt").is_file()
