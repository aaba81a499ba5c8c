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
message: "$'train ' + str(@epochs)"
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
