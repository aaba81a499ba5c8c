"""The README's main job, `echo-monai demo`, end to end at toy size."""

from __future__ import annotations

import json

from echo_monai.apps import cli
from echo_monai.apps.demo import run_demo

TINY = {
    "channels": [8, 16],
    "attention_levels": [False, False],
    "num_head_channels": 8,
    "norm_num_groups": 8,
    "spade_hidden_channels": 8,
    "image_size": 32,
    "num_train_timesteps": 20,
}


def test_demo_writes_its_report(tmp_path):
    report = run_demo(
        tmp_path, patients=10, epochs=1, copies=1, sampling_steps=2, seg_epochs=1, settings=TINY, phantom_size=64
    )
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["segmentation"]) == {"synthetic", "real", "real+synthetic"}
    assert metrics["demo"]["patients"] == 10 and metrics["demo"]["total_s"] > 0
    text = (report / "report.md").read_text()
    assert "## Demo run" in text and "label_synthetic_real.png" in text
    assert (report / "label_synthetic_real.png").is_file()
    # the demo's model is reused by one documented command: the settings it was trained with are read back
    bundle_root, camus = tmp_path / "bundle", tmp_path / "data" / "CAMUS"
    record = json.loads((bundle_root / "models" / "trained_with.json").read_text())
    assert record["stages"]["default"]["preset"] == "cpu"
    args = ["infer", "echo_seg_ddpm", "--bundle_root", str(bundle_root), "--dataset_dir", str(camus)]
    assert cli.main([*args, "--num_inference_steps", "2"]) == 0
    assert len(list((bundle_root / "outputs" / "synthetic" / "images").glob("*.png"))) == 40  # 10 patients x 4


def test_demo_needs_ten_patients(capsys):
    assert cli.main(["demo", "--patients", "5"]) == 2
    assert "patients must be >= 10" in capsys.readouterr().err
