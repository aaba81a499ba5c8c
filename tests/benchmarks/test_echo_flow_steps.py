"""The EF-faithfulness-vs-evaluations benchmark end to end at toy size, with the MeanFlow fine-tune and paired seeds:
the table, the verdict lines and the JSON (not its figures: a few iterations say nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "echo_flow_steps.py"


def test_flow_meanflow_and_ddpm_rows_and_the_verdicts(tmp_path):
    command = [sys.executable, str(SCRIPT), "--size", "16", "--frames", "8", "--train", "8", "--held-out", "4",
               "--iterations", "3", "--judge-epochs", "1", "--fm-steps", "1", "2", "--meanflow-iterations", "1", "2",
               "--meanflow-steps", "1", "2", "--meanflow-loss", "adaptive", "--meanflow-times", "uniform",
               "--meanflow-velocity", "conditional", "teacher", "--generation-seeds", "2", "--judge-seeds", "2",
               "--out", str(tmp_path / "r.json")]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "trained meanflow: 2 iterations" in out and "trained meanflow_teacher: 2 iterations" in out
    assert "meanflow@1 (fine-tuned 1 iterations" in out and "meanflow_teacher@2 (fine-tuned 2 iterations" in out
    results = json.loads((tmp_path / "r.json").read_text())
    rows = [(r["model"], r["sampler"], r["nfe"]) for r in results["rows"]]
    meanflow = [(f"{m}@{n}", "meanflow", s) for m in ("meanflow", "meanflow_teacher") for n in (1, 2) for s in (1, 2)]
    assert rows == [("flow_matching", "euler", 1), ("flow_matching", "euler", 2), *meanflow,
                    ("ddpm_v", "ddim_eta1", 64)]  # fmt: skip
    assert set(results["fewest_student_steps_within_tolerance"]) == {
        "meanflow@1", "meanflow@2", "meanflow_teacher@1", "meanflow_teacher@2"}  # fmt: skip
    assert results["verdict"]
    # 2 generation seeds x 2 judges = 4 paired runs per setting, each setting's MAE against DDPM-64's on the same runs
    assert results["paired_runs"] == 4 and all(len(r["runs"]) == 4 for r in results["rows"])
    assert all(r["vs_baseline"]["runs"] == 4 for r in results["rows"][:-1]) and "vs_baseline" not in results["rows"][-1]
    assert "4 paired runs" in out
    # the same paired differences split by judge: two columns whose mean is the pooled difference
    assert "MAE - DDPM-64 per judge" in out
    for row in results["rows"][:-1]:
        assert len(row["vs_baseline_per_judge"]) == 2
        assert abs(sum(row["vs_baseline_per_judge"]) / 2 - row["vs_baseline"]["mean"]) < 1e-9

    # another process fine-tuning 2 iterations only: its rows are the 2-iteration snapshot's, bit for bit (the judges
    # are seeded, not drawn from the process's random start-up RNG; the snapshot is the run that stops there)
    cut = command.index("--meanflow-iterations") + 1
    single = [*command[:cut], "2", *command[command.index("--meanflow-steps") :]]
    single = [*single[: single.index("--meanflow-velocity") + 1], "conditional", *single[single.index("teacher") + 1 :]]
    single[-1] = str(tmp_path / "single.json")
    out = subprocess.run(single, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "meanflow (fine-tuned 2 iterations" in out
    again = {(r["model"], r["nfe"]): r["runs"] for r in json.loads((tmp_path / "single.json").read_text())["rows"]}
    first = {(r["model"], r["nfe"]): r["runs"] for r in results["rows"]}
    assert again[("meanflow", 1)] == first[("meanflow@2", 1)] and again[("meanflow", 2)] == first[("meanflow@2", 2)]
    assert again[("flow_matching", 1)] == first[("flow_matching", 1)] and again[("ddpm_v", 64)] == first[("ddpm_v", 64)]


def test_reflow_rows_fine_tune_on_the_flow_models_couplings(tmp_path):
    command = [sys.executable, str(SCRIPT), "--size", "16", "--frames", "8", "--train", "4", "--held-out", "4",
               "--iterations", "2", "--judge-epochs", "1", "--fm-steps", "1", "--reflow-iterations", "1", "2",
               "--reflow-steps", "1", "2", "--reflow-pairs-per-clip", "2", "--reflow-teacher-steps", "2",
               "--out", str(tmp_path / "r.json")]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "reflow couplings: 8 (noise, FM Euler 2-step sample) pairs" in out and "trained reflow: 2 iterations" in out
    assert "reflow@2 (fine-tuned 2 iterations from the FM model)" in out
    results = json.loads((tmp_path / "r.json").read_text())
    rows = [(r["model"], r["sampler"], r["nfe"]) for r in results["rows"]]
    reflow = [(f"reflow@{n}", "euler", s) for n in (1, 2) for s in (1, 2)]
    assert rows == [("flow_matching", "euler", 1), *reflow, ("ddpm_v", "ddim_eta1", 64)]
    assert set(results["fewest_student_steps_within_tolerance"]) == {"reflow@1", "reflow@2"}
