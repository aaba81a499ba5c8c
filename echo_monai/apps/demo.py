"""``echo-monai demo``: the echo_seg_ddpm pipeline end to end on built-in phantom data, on a CPU.

1. simulate a CAMUS-layout phantom (2- and 4-chamber views at ED and ES, with labels);
2. train a small echo_seg_ddpm (SPADE DDPM guided by label maps) on its training split;
3. generate a labelled synthetic dataset from augmented label maps with DPM-Solver++;
4. train a segmentation network on real only, synthetic only and real + synthetic images and test it on the
   held-out phantom patients; write ``report.md``, ``metrics.json`` and the figures.

Every step runs the bundle through ``monai.bundle run`` with overrides, as a user would.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from echo_monai.apps.bundles import find_bundle

__all__ = ["DEMO_PRESET", "run_bundle", "run_demo"]

logger = logging.getLogger(__name__)

#: the bundle preset the demo runs with: small enough to train in a few minutes on 2 CPU cores
DEMO_PRESET = "cpu"


def run_bundle(
    command: str, bundle: str | Path, overrides: dict[str, Any], stage: str | None = None, preset: str = DEMO_PRESET
) -> None:
    """Run one bundle command through ``monai.bundle run`` with a preset (the demo's by default) and ``overrides``,
    as a user would (``echo-monai COMMAND BUNDLE --preset cpu --KEY VALUE ...``)."""
    from monai.bundle import run

    from echo_monai.apps.cli import quiet_bundle_runner, resolve_run

    quiet_bundle_runner()
    run(**resolve_run(find_bundle(str(bundle)), command, stage, overrides, preset=preset))


def run_demo(
    out: str | os.PathLike = "echo_monai_demo",
    patients: int = 20,
    epochs: int = 35,
    copies: int = 2,
    sampling_steps: int = 10,
    seg_epochs: int = 20,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    phantom_size: int = 128,
) -> Path:
    """Run the demo into ``out`` and return the report folder.

    Args:
        out: working folder (phantom data, bundle outputs, report).
        patients: phantom patients; 80 % train the generator, 10 % validate, 10 % are the held-out test set.
        epochs: generator training epochs.
        copies: synthetic label maps per real training label map.
        sampling_steps: DPM-Solver++ steps.
        seg_epochs: epochs of each downstream segmentation training.
        seed: phantom and sampling seed.
        settings: bundle overrides on top of the ``cpu`` preset (network size, resolution).
        phantom_size: side of the simulated images, pixels.
    """
    if patients < 10:
        raise ValueError(
            f"run_demo: patients must be >= 10 (one validation and one test patient per 10), got {patients}."
        )
    from echo_monai.apps.simulate import simulate

    out = Path(out).resolve()
    bundle = find_bundle("echo_seg_ddpm").root
    start = time.perf_counter()
    timings: dict[str, float] = {}

    camus = out / "data" / "CAMUS"
    if not (camus / "database_split" / "subgroup_testing.txt").is_file():
        logger.info("demo 1/4: simulating %d phantom patients in the CAMUS layout", patients)
        simulate("camus", camus, n=patients, seed=seed, image_size=(phantom_size, phantom_size))
    timings["simulate_s"] = time.perf_counter() - start

    common = {
        "bundle_root": str(out / "bundle"),
        "dataset_dir": str(camus),
        "seed": seed,
        **(settings or {}),
    }
    logger.info("demo 2/4: training echo_seg_ddpm for %d epochs", epochs)
    t = time.perf_counter()
    run_bundle(
        "train",
        bundle,
        {
            **common,
            "epochs": epochs,
            "preview_interval": max(1, epochs // 4),
            "val_interval": max(1, epochs // 4),
        },
    )
    timings["train_s"] = time.perf_counter() - t

    logger.info("demo 3/4: generating %d synthetic copies per training label map", copies)
    t = time.perf_counter()
    synthetic = out / "synthetic_camus"
    run_bundle(
        "infer",
        bundle,
        {
            **common,
            "label_map_split": "training",
            "output_dir": str(synthetic),
            "copies": copies,
            "num_inference_steps": sampling_steps,
            "batch_size": 16,
        },
        stage="generate",
    )
    timings["generate_s"] = time.perf_counter() - t

    logger.info("demo 4/4: downstream segmentation (real / synthetic / real + synthetic)")
    t = time.perf_counter()
    report = out / "report"
    run_bundle(
        "evaluate",
        bundle,
        {
            **common,
            "synthetic_dir": str(synthetic),
            "report_dir": str(report),
            "seg_epochs": seg_epochs,
        },
    )
    timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    _append_timings(report, timings, patients, epochs, copies, sampling_steps)
    logger.info("demo done in %.0f s: %s", timings["total_s"], report / "report.md")
    return report


def _append_timings(
    report: Path, timings: dict[str, float], patients: int, epochs: int, copies: int, steps: int
) -> None:
    from echo_monai.data.atomic import write_json, write_text

    metrics_path = report / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["demo"] = {
        "patients": patients,
        "epochs": epochs,
        "copies": copies,
        "sampling_steps": steps,
        "cpu_count": os.cpu_count(),
        **{k: round(v, 1) for k, v in timings.items()},
    }
    write_json(metrics_path, metrics)
    lines = [
        "",
        "## Demo run",
        "",
        f"Phantom data ({patients} patients), {epochs} generator epochs, {copies} synthetic "
        f"copies per training label map, DPM-Solver++ with {steps} steps, on {os.cpu_count()} CPU cores.",
        "",
        "| step | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {k[:-2]} | {v:.0f} |" for k, v in timings.items()]
    write_text(report / "report.md", (report / "report.md").read_text() + "\n".join(lines) + "\n")
