from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from echo_monai.apps import cli
from echo_monai.apps.bundles import Bundle, find_bundle, list_bundles

INFERENCE = """
bundle_root: .
device: "$torch.device('cpu')"
dataset_dir: "$@bundle_root + '/data'"
imports: ["$import torch"]
network_def: {_target_: torch.nn.Identity}
run: ["$print('RAN', @message)"]
message: inference
"""
TRAIN = """
epochs: 1
learning_rate: 0.001
sizes: [8, 16]
choice: one
options: {one: 1, two: 2}
picked: "$@options[@choice]"
message: "$'train ' + str(@epochs)"
"""
FAILING = """
run: ["$@broken.run()"]
broken: {_target_: echo_monai.apps.generation.make_requests, conditions: {a: [1, 2], b: [1]}}
"""


@pytest.fixture
def bundles(tmp_path, monkeypatch):
    """A bundles folder with one toy bundle 'toy' (default + 'extra' train stages)."""
    root = tmp_path / "bundles"
    configs = root / "toy" / "configs"
    configs.mkdir(parents=True)
    (root / "toy" / "data").mkdir()
    (configs / "inference.yaml").write_text(INFERENCE)
    (configs / "train.yaml").write_text(TRAIN)
    (configs / "train_extra.yaml").write_text(TRAIN)
    (configs / "inference_failing.yaml").write_text(FAILING)
    (root / "not_a_bundle").mkdir()
    monkeypatch.setenv("ECHO_MONAI_BUNDLES", str(root))
    return root


def test_list_shows_bundles_and_stages(bundles, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "train: default, extra" in out and "not_a_bundle" not in out
    assert [b.name for b in list_bundles()] == ["toy"]


def test_train_runs_with_override(bundles, capsys):
    assert cli.main(["train", "toy", "--epochs", "3"]) == 0
    assert "RAN train 3" in capsys.readouterr().out


def test_infer_uses_inference_alone(bundles, capsys):
    assert cli.main(["infer", "toy"]) == 0
    assert "RAN inference" in capsys.readouterr().out


def test_config_files_compose_on_inference(bundles):
    files = find_bundle("toy").config_files("train", "extra")
    assert [Path(f).name for f in files] == ["inference.yaml", "train_extra.yaml"]
    assert [Path(f).name for f in Bundle(bundles / "toy").config_files("infer")] == ["inference.yaml"]


def test_a_stage_file_layers_on_another(bundles, capsys):
    configs = bundles / "toy" / "configs"
    (configs / "train_second.yaml").write_text("layers_on: [train.yaml]\nepochs: 7\n")
    files = find_bundle("toy").config_files("train", "second", preset=None)
    assert [Path(f).name for f in files] == ["inference.yaml", "train.yaml", "train_second.yaml"]
    assert cli.main(["train", "toy", "--stage", "second"]) == 0
    assert "RAN train 7" in capsys.readouterr().out  # train.yaml's message, the second stage's epochs
    (configs / "train_second.yaml").write_text("layers_on: [train_missing.yaml]\n")
    with pytest.raises(ValueError, match=r"layers_on names \['train_missing.yaml'\], which are not stage files"):
        find_bundle("toy").config_files("train", "second")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nope"], "unknown bundle 'nope'; available: toy"),
        (["train", "toy", "--stage", "vae"], "no train stage 'vae'; available: default, extra"),
        (["evaluate", "toy"], "no evaluate stage 'default'; available: none"),
        (["train", "toy", "--epochz", "2"], "has no config key 'epochz'"),
        (["train", "toy", "--dataset_dir", "/does/not/exist"], "dataset_dir '/does/not/exist' does not exist"),
        (["train", "toy", "stray"], "unexpected argument 'stray'"),
        (["train", "toy", "--multi-gpu"], "no configs/multi_gpu_train.yaml"),
        (["train", "toy", "--epochs", "abc"], "--epochs expects an integer (its default is 1), got 'abc'"),
        (["train", "toy", "--epochs", "1.5"], "--epochs expects an integer"),
        (["train", "toy", "--learning_rate", "fast"], "--learning_rate expects a number (its default is 0.001)"),
        (["train", "toy", "--sizes", "8"], "--sizes expects a list"),
        (["train", "toy", "--choice", "three"], "--choice must be one of ['one', 'two'], got 'three'"),
    ],
)
def test_user_errors_exit_2_with_one_line(bundles, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_default_dataset_dir(bundles, capsys):
    shutil.rmtree(bundles / "toy" / "data")
    assert cli.main(["train", "toy"]) == 2
    assert "dataset_dir" in capsys.readouterr().err


def test_parse_overrides_literals():
    assert cli.parse_overrides(["--a", "2", "--b=0.5", "--c", "[1, 2]", "--d", "text", "--flag"]) == {
        "a": 2,
        "b": 0.5,
        "c": [1, 2],
        "d": "text",
        "flag": True,
    }


def test_repository_bundles_are_listed():
    names = [b.name for b in list_bundles(Path(__file__).resolve().parents[2] / "bundles")]
    assert names == sorted(names)
    for name in names:
        assert json.loads(
            (Path(__file__).resolve().parents[2] / "bundles" / name / "configs" / "metadata.json").read_text()
        )


def test_a_failed_run_prints_its_project_error_on_one_line(bundles, capsys):
    """The error echo_monai raised, not MONAI's "Failed to instantiate" wrapper; the traceback goes to a log."""
    assert cli.main(["infer", "toy", "--stage", "failing"]) == 1
    err = capsys.readouterr().err
    first, second = err[err.index("echo-monai: error:") :].strip().splitlines()
    assert first.startswith("echo-monai: error: make_requests: condition lists must have one value per item")
    log = Path(second.split("traceback is in ")[1].split(";")[0])
    assert log == bundles / "toy" / "logs" / "last_error.log" and "Traceback" in log.read_text()
    assert "raise ValueError(" not in err  # the failure's traceback is in the log, not on the screen
    with pytest.raises(RuntimeError, match="Failed to"):
        cli.main(["infer", "toy", "--stage", "failing", "--debug"])


def test_project_error_and_one_line():
    from echo_monai.apps.errors import one_line, project_error
    from echo_monai.apps.generation import make_requests

    try:
        try:
            make_requests({"a": [1], "b": [1, 2]})
        except ValueError as inner:
            raise RuntimeError("Failed to instantiate component") from inner
    except RuntimeError as outer:
        assert isinstance(project_error(outer), ValueError)
        assert one_line(outer).startswith("make_requests: condition lists")
    assert one_line(RuntimeError("plain")) == "RuntimeError: plain"
    assert one_line(KeyError("missing key")) == "missing key"


def test_monai_runner_ends_with_the_one_line_error(tmp_path):
    """`python -m monai.bundle run` on a bundle whose checkpoint is missing: the bundle's excepthook prints one line."""
    import os
    import subprocess
    import sys

    from echo_monai.apps.simulate import simulate

    simulate("camus", tmp_path / "camus", n=3, seed=0, image_size=(32, 32))
    bundle = Path(__file__).resolve().parents[2] / "bundles" / "echo_seg_ddpm"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.yaml"),
               "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(tmp_path / "camus"),
               "--device", "$torch.device('cpu')"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "ECHO_MONAI_DEBUG"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: checkpoint '") and "run the echo_seg_ddpm train stage first" in lines[-2]
    assert "Traceback" not in done.stderr and (tmp_path / "bundle" / "logs" / "last_error.log").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--sampler_name", "nosuch"],
            "--sampler_name must be one of ['consistency', 'ddim', 'ddpm', 'dpm_solver'], got 'nosuch'",
        ),
        (["--num_inference_steps", "many"], "--num_inference_steps expects an integer (its default is 50)"),
        (["--generation::nosuch", "1"], "has no config key 'generation::nosuch'"),
    ],
)
def test_bad_override_values_of_a_real_bundle_are_refused_before_running(tmp_path, capsys, argv, message):
    bundle = str(Path(__file__).resolve().parents[2] / "bundles" / "echo_seg_ddpm")
    (tmp_path / "maps").mkdir()
    assert (
        cli.main(["infer", bundle, "--bundle_root", str(tmp_path), "--dataset_dir", str(tmp_path / "maps"), *argv]) == 2
    )
    assert message in capsys.readouterr().err
