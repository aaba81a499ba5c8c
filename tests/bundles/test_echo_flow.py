"""echo_flow end to end with tiny overrides on an EchoNet-Dynamic phantom:
train_vae -> encode -> train_image -> train_reid -> train (video) -> infer (export) -> evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from bundle_helpers import cli_args, error_chain, torchrun_train

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "echo_flow"
TINY = {
    "image_size": 32,
    "num_frames": 4,
    "vae_channels": [8, 16, 16],
    "vae_attention_levels": [False, False, False],
    "vae_num_res_blocks": 1,
    "vae_norm_num_groups": 8,
    "image_channels": [8, 16],
    "image_attention_levels": [False, False],
    "image_num_res_blocks": 1,
    "image_num_head_channels": 8,
    "image_norm_num_groups": 8,
    "reid_channels": [8],
    "reid_embedding_dim": 8,
    "reid_norm_num_groups": 4,
    "video_channels": [8, 16],
    "video_attention_levels": [False, True],
    "video_num_res_blocks": 1,
    "video_num_head_channels": 8,
    "video_norm_num_groups": 4,
    "ef_embedding_dim": 8,
    "num_train_timesteps": 10,
    "num_inference_steps": 2,
    "image_num_inference_steps": 2,
    "gate_frame_stride": 2,
}
EFS = [25.0, 55.0, 80.0]


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data, its stage-1 VAE and latent cache, and overrides per command and stage.

    The contract test uses ``train`` and ``infer``; ``check_properties`` instantiates their datasets, which read the
    latent cache, so it is built here (train_vae then encode through the CLI, a few seconds at this size).
    """
    echonet = root / "echonet"
    if not echonet.exists():
        simulate("echonet", echonet, n=8, seed=0, image_size=(32, 32), n_frames=8)  # 6 TRAIN, 1 VAL, 1 TEST
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(echonet), **TINY}
    fit = {"epochs": 1, "batch_size": 2, "save_interval": 2, "val_interval": 1}
    overrides = {
        "train_vae": {
            **common,
            "epochs": 1,
            "batch_size": 2,
            "vae_frames": 2,
            "num_workers": 0,
            "save_interval": 2,
            "disc_channels": 8,
            "disc_num_layers": 2,
            "adv_start_iteration": 1,
        },
        "encode": {**common, "frame_chunk": 4},
        "train_image": {**common, **fit},
        "train_reid": {**common, **fit},
        "train": {**common, **fit},
        "infer": {**common, "ejection_fractions": EFS, "output_dir": str(root / "synthetic")},
        "evaluate": {
            **common,
            "output_dir": str(root / "synthetic"),
            "report_dir": str(root / "report"),
            "ef_frames": 4,
            "ef_block_inplanes": [4, 8, 8, 8],
            "ef_epochs": 1,
            "ef_batch_size": 2,
        },
    }
    # the later stages' data is the stage-1 latent cache: train the tiny VAE and encode the phantom once
    if not (root / "bundle" / "latents" / "val" / "latent_stats.json").is_file():
        assert cli.main(["train", str(BUNDLE), "--stage", "vae", *cli_args(overrides["train_vae"])]) == 0
        assert cli.main(["infer", str(BUNDLE), "--stage", "encode", *cli_args(overrides["encode"])]) == 0
    return overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo_flow")
    o = make_overrides(root)  # phantom, stage 1 (VAE) and the latent cache
    assert cli.main(["train", str(BUNDLE), "--stage", "image", *cli_args(o["train_image"])]) == 0
    assert cli.main(["train", str(BUNDLE), "--stage", "reid", *cli_args(o["train_reid"])]) == 0
    assert cli.main(["train", str(BUNDLE), *cli_args(o["train"])]) == 0
    return root, o


def test_train_all_stages_write_their_checkpoints_and_the_latent_cache(trained):
    root, o = trained
    bundle = Path(o["train"]["bundle_root"])
    for name in ("autoencoder.pt", "image.pt", "reid.pt", "model.pt"):
        assert (bundle / "models" / name).is_file(), name
    assert (bundle / "latents" / "train" / "latent_stats.json").is_file()
    assert (bundle / "latents" / "val" / "latent_stats.json").is_file()


def test_infer_exports_the_requested_efs_then_evaluate(trained):
    root, o = trained
    assert cli.main(["infer", str(BUNDLE), *cli_args(o["infer"])]) == 0
    out = Path(o["infer"]["output_dir"])
    with open(out / "FileList.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(round(float(r["EF"])) for r in rows) == [25, 55, 80]
    assert len(list((out / "Videos").glob("*.avi"))) == 3
    report = json.loads((out / "generation_report.json").read_text())
    assert report["failed"] == [] and len(report["written"]) == 3
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(o["evaluate"])]) == 0
    metrics = json.loads((Path(o["evaluate"]["report_dir"]) / "metrics.json").read_text())
    assert metrics["synthetic"]["videos"] == 3
    assert set(metrics["ef_regression"]) == {"real", "synthetic"}
    assert metrics["ef_regression"]["synthetic"]["mae"] >= 0.0


def test_ef_outside_0_100_is_refused(trained):
    root, o = trained
    args = {**o["infer"], "ejection_fractions": [120.0], "output_dir": str(root / "bad_ef")}
    with pytest.raises(Exception) as info:
        cli.main(["infer", str(BUNDLE), *cli_args(args)])
    assert "EF 120" in error_chain(info.value)


def test_latent_cache_of_another_vae_names_the_encode_stage(trained, tmp_path):
    root, o = trained
    bundle = Path(o["train"]["bundle_root"])
    # another autoencoder: same architecture, other weights
    other = {**o["train_vae"], "bundle_root": str(tmp_path / "other"), "seed": 1}
    assert cli.main(["train", str(BUNDLE), "--stage", "vae", *cli_args(other)]) == 0
    # a second run with more epochs resumes from the stage's last checkpoint instead of starting again
    assert cli.main(["train", str(BUNDLE), "--stage", "vae", *cli_args({**other, "epochs": 2})]) == 0
    models = tmp_path / "other" / "models"
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("vae_checkpoint_final_iteration=*.pt"))
    assert finals[-1] == 2 * finals[0]
    args = {
        **o["train"],
        "vae_ckpt": str(tmp_path / "other" / "models" / "autoencoder.pt"),
        "cache_dir": str(bundle / "latents"),
        "ckpt_dir": str(tmp_path / "models"),
    }
    with pytest.raises(Exception) as info:
        cli.main(["train", str(BUNDLE), *cli_args(args)])
    assert "echo_flow infer --stage encode" in error_chain(info.value) and "fingerprint" in error_chain(info.value)


def test_missing_stage_checkpoint_names_the_stage(trained, tmp_path):
    root, o = trained
    args = {**o["infer"], "reid_ckpt": str(tmp_path / "missing.pt"), "output_dir": str(tmp_path / "out")}
    with pytest.raises(Exception) as info:
        cli.main(["infer", str(BUNDLE), *cli_args(args)])
    assert "echo_flow train --stage reid" in error_chain(info.value)


def test_multi_gpu_overlay_trains_the_video_stage_with_torchrun_on_cpu(tmp_path):
    """The torchrun + DDP overlay through the same engines, two CPU processes with Gloo."""
    overrides = make_overrides(tmp_path)["train"]
    done = torchrun_train(BUNDLE, {**overrides, "held_out_split": "TRAIN"})
    assert done.returncode == 0, done.stderr[-3000:]
    models = Path(overrides["bundle_root"]) / "models"
    # 6 training videos, 2 ranks x batch 2 -> 3 videos and 2 iterations per rank
    assert (models / "model.pt").is_file() and (models / "video_checkpoint_final_iteration=2.pt").is_file()
