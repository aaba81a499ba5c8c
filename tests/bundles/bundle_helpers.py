"""Helpers shared by the bundle smoke tests: CLI arguments, wrapped error messages, torchrun training on CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path


def cli_args(overrides: dict) -> list[str]:
    """``{"epochs": 1, "split": "TRAIN"}`` -> ``["--epochs", "1", "--split", "TRAIN"]`` (values as Python literals)."""
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", repr(value) if not isinstance(value, str) else value]
    return args


def error_chain(error: BaseException | None) -> str:
    """The messages of an exception and its causes (MONAI wraps config errors)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting a failed bundle run: exit code 1, the error on one ``echo-monai: error:`` line (then
    where the traceback went), no traceback printed. Returns what it printed on stderr."""
    from echo_monai.apps import cli

    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err, err
    report = err[err.index("echo-monai: error: ") :]  # after any progress bars
    assert "last_error.log; --debug prints it)" in report.splitlines()[-1], report
    return report


def copied_bundle(train: dict, folder: Path, ignore: tuple[str, ...] = ()) -> tuple[dict, Path]:
    """A copy of the shared trained bundle root at ``folder`` (without the ``ignore`` glob patterns), so a stage's
    checkpoints and records stay out of the bundle the other tests share: ``train``'s overrides pointing at the copy,
    and the copy's models folder."""
    shutil.copytree(train["bundle_root"], folder, ignore=shutil.ignore_patterns(*ignore))
    return {**train, "bundle_root": str(folder)}, folder / "models"


def ensure_latent_cache(bundle: Path, overrides: dict, last_cache: Path) -> None:
    """Train a latent bundle's stage-1 autoencoder and encode its latent cache through the CLI, once: skipped when
    ``last_cache`` (the cache the encode stage writes last) is complete. ``overrides`` holds ``train_vae`` and
    ``encode``."""
    from echo_monai.apps import cli

    if (last_cache / "latent_stats.json").is_file():
        return
    assert cli.main(["train", str(bundle), "--stage", "vae", *cli_args(overrides["train_vae"])]) == 0
    assert cli.main(["infer", str(bundle), "--stage", "encode", *cli_args(overrides["encode"])]) == 0


#: what a process that C++ terminates prints (a Gloo rank at exit, see torchrun_train)
TEARDOWN_ABORT = "terminate called without an active exception"


def torchrun_train(bundle: Path, overrides: dict, processes: int = 2) -> subprocess.CompletedProcess:
    """``echo-monai train BUNDLE --multi-gpu`` under torchrun: one CPU process per rank (Gloo)."""
    script = shutil.which("echo-monai") or str(Path(sys.executable).parent / "echo-monai")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        "--standalone",
        script,
        "train",
        str(bundle),
        "--multi-gpu",
        *cli_args(overrides),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr:
        # a Gloo rank aborting at process exit, once in some 45 CPU runs (echo_monai.engines.finalize_distributed):
        # run again, which resumes from the checkpoints the first run wrote and must then exit cleanly
        warnings.warn(f"torchrun: a rank aborted at exit ({TEARDOWN_ABORT!r}); ran again", stacklevel=2)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    return done


def export_and_load(bundle: Path, root: Path, bundle_root: str) -> tuple:
    """``infer --stage export`` of a trained bundle (with a dataset_dir that does not exist: the stage reads none),
    then ``(traced module, its metadata.json)`` from ``models/model.ts``."""
    import json

    import torch

    from echo_monai.apps import cli

    overrides = {"bundle_root": bundle_root, "dataset_dir": str(root / "absent"), "preset": "tiny"}
    assert cli.main(["infer", str(bundle), "--stage", "export", *cli_args(overrides)]) == 0
    files = {"metadata.json": ""}
    traced = torch.jit.load(str(Path(bundle_root) / "models" / "model.ts"), _extra_files=files)
    return traced, json.loads(files["metadata.json"])


def verify_pipeline_network(bundle: Path, overrides: dict) -> tuple:
    """MONAI's ``verify_net_in_out`` on a trained tiny bundle's ``pipeline_network`` (``network_data_format``'s
    ``image`` in, ``pred`` out), then ``(parser, pipeline_network)`` parsed with the same overrides."""
    from monai.bundle import ConfigParser, verify_net_in_out

    configs = [str(bundle / "configs" / f) for f in ("inference.yaml", "presets/tiny.yaml")]
    meta = str(bundle / "configs" / "metadata.json")
    verify_net_in_out(net_id="pipeline_network", config_file=configs, meta_file=meta, device="cpu", **overrides)
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update(overrides)
    return parser, parser.get_parsed_content("pipeline_network")


def gpu_preset_runs(bundle: Path, infer: dict, tmp_path: Path) -> tuple[Path, Path]:
    """``infer`` as given (``--preset tiny``) and with ``--preset gpu`` plus the tiny preset's values that inference
    reads (the gpu preset keeps the full sizes): the two output folders, for a test to compare on a CPU, where the
    gpu preset's fast paths fall back."""
    import yaml
    from monai.bundle import ConfigParser

    from echo_monai.apps import cli

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    tiny = yaml.safe_load((bundle / "configs" / "presets" / "tiny.yaml").read_text())
    sizes = {key: value for key, value in tiny.items() if key in parser}
    plain, fast = tmp_path / "plain", tmp_path / "gpu"
    assert cli.main(["infer", str(bundle), *cli_args({**infer, "output_dir": str(plain)})]) == 0
    gpu = {**infer, **sizes, "preset": "gpu", "output_dir": str(fast)}
    assert cli.main(["infer", str(bundle), *cli_args(gpu)]) == 0
    return plain, fast


def assert_same_files(plain: Path, fast: Path, pattern: str) -> int:
    """Every file matching ``pattern`` under ``plain`` has a byte-identical twin under ``fast``; returns how many."""
    files = sorted(p.relative_to(plain) for p in plain.rglob(pattern))
    assert files and files == sorted(p.relative_to(fast) for p in fast.rglob(pattern))
    for name in files:
        assert (plain / name).read_bytes() == (fast / name).read_bytes(), name
    return len(files)


def assert_same_volumes(plain: Path, fast: Path, atol: float = 0.0) -> int:
    """Every NIfTI file under ``plain`` has its twin under ``fast`` with the same shape and values within ``atol``;
    returns how many were compared."""
    import nibabel as nib
    import numpy as np

    files = sorted(p.relative_to(plain) for p in plain.rglob("*.nii.gz"))
    assert files and files == sorted(p.relative_to(fast) for p in fast.rglob("*.nii.gz"))
    for name in files:
        a, b = (np.asarray(nib.load(str(root / name)).dataobj, dtype=np.float64) for root in (plain, fast))
        assert a.shape == b.shape and np.abs(a - b).max() <= atol, name
    return len(files)
