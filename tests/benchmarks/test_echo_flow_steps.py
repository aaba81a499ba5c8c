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
               "--iterations", "3", "--judge-epochs", "1", "--fm-steps", "1", "2", "--meanflow-iterations", "2",
               "--meanflow-steps", "1", "2", "--meanflow-loss", "adaptive", "--meanflow-times", "uniform",
               "--meanflow-velocity", "conditional", "teacher", "--generation-seeds", "2", "--judge-seeds", "2",
               "--out", str(tmp_path / "r.json")]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    assert "trained meanflow: 2 iterations" in out and "trained meanflow_teacher: 2 iterations" in out
    assert "meanflow (fine-tuned 2 iterations" in out and "meanflow_teacher (fine-tuned 2 iterations" in out
    results = json.loads((tmp_path / "r.json").read_text())
    rows = [(r["model"], r["sampler"], r["nfe"]) for r in results["rows"]]
    assert rows == [("flow_matching", "euler", 1), ("flow_matching", "euler", 2), ("meanflow", "meanflow", 1),
                    ("meanflow", "meanflow", 2), ("meanflow_teacher", "meanflow", 1),
                    ("meanflow_teacher", "meanflow", 2), ("ddpm_v", "ddim_eta1", 64)]  # fmt: skip
    assert set(results["fewest_meanflow_steps_within_tolerance"]) == {"meanflow", "meanflow_teacher"}
    assert results["verdict"]
    # 2 generation seeds x 2 judges = 4 paired runs per setting, each setting's MAE against DDPM-64's on the same runs
    assert results["paired_runs"] == 4 and all(len(r["runs"]) == 4 for r in results["rows"])
    assert all(r["vs_baseline"]["runs"] == 4 for r in results["rows"][:-1]) and "vs_baseline" not in results["rows"][-1]
    assert "4 paired runs" in out
