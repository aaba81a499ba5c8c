"""echo_flow end to end with tiny overrides on an EchoNet-Dynamic phantom:
train_vae -> encode -> train_image -> train_reid -> train (video) -> infer (export) -> evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from bundle_helpers import (
    assert_same_files,
    cli_args,
    cli_error,
    copied_bundle,
    ensure_latent_cache,
    export_and_load,
    gpu_preset_runs,
    torchrun_train,
    verify_pipeline_network,
)

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "echo_flow"
TINY = yaml.safe_load((BUNDLE / "configs" / "presets" / "tiny.yaml").read_text())  # what --preset tiny sets
EFS = [25.0, 55.0, 80.0]


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data, its stage-1 VAE and latent cache, and overrides per command and stage.

    The contract test uses ``train`` and ``infer``; ``check_properties`` instantiates their datasets, which read the
    latent cache, so it is built here (train_vae then encode through the CLI, a few seconds at this size).
    """
    echonet = root / "echonet"
    if not echonet.exists():
        simulate("echonet", echonet, n=8, seed=0, image_size=(32, 32), n_frames=8)  # 6 TRAIN, 1 VAL, 1 TEST
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(echonet), "preset": "tiny"}
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
            "test_split": "ALL",  # the 8-video phantom has one TEST video; feature distances need two per set
            "feature_frame_stride": 2,
        },
    }
    # the later stages' data is the stage-1 latent cache: train the tiny VAE and encode the phantom once
    ensure_latent_cache(BUNDLE, overrides, root / "bundle" / "latents" / "val")
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
    faithfulness = metrics["ef_faithfulness"]
    assert faithfulness["num_videos"] == 3 and faithfulness["mae"] >= 0.0 and -1.0 <= faithfulness["pearson_r"] <= 1.0
    assert faithfulness["judge_mae_on_real_test"] == metrics["ef_regression"]["real"]["mae"]
    assert "FD_ef_regressor" in metrics["video_features"] and "KD_ef_regressor" in metrics["video_features"]
    assert "FD_reid" in metrics["image_features"]
    assert "FID" not in metrics["image_features"]  # no standard Inception weights here: not called FID
    before, after = metrics["privacy_before_filter"], metrics["privacy_after_filter"]
    assert before["references_accepted"] == 3 and 0.0 <= before["gate_rejection_rate"] < 1.0
    assert after["videos_audited"] == 3 and 0.0 <= after["memorisation_rate"] <= 1.0
    report_dir = Path(o["evaluate"]["report_dir"])
    assert (report_dir / "report.md").is_file() and list(report_dir.glob("*.png"))


def test_latent_cache_keeps_the_lv_masks_on_the_latent_grid(trained):
    from echo_monai.data import LatentCacheDataset

    root, o = trained
    item = LatentCacheDataset(Path(o["train"]["bundle_root"]) / "latents" / "train")[0]
    assert item["ed_mask"].shape == item["es_mask"].shape == (1, 8, 8)  # 32 px / 4
    assert 0 <= item["ed_frame"] < item["latent"].shape[1] and float(item["ed_mask"].max()) > 0.5


def test_long_videos_by_overlapping_windows_and_a_second_rank(trained, tmp_path):
    """7 frames from a 4-frame network (windows 0-3 and 3-6) with Heun steps; two ranks, the last one to finish
    writes FileList.csv."""
    from echo_monai.data.video_io import read_video

    root, o = trained
    args = {**o["infer"], "output_dir": str(tmp_path / "long"), "generate_frames": 7, "window_overlap": 1}
    args["solver"] = "heun"
    for rank in (0, 1):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RANK", str(rank))
            env.setenv("WORLD_SIZE", "2")
            assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
        assert (tmp_path / "long" / "FileList.csv").is_file() == (rank == 1)
    with open(tmp_path / "long" / "FileList.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["NumberOfFrames"] for r in rows} == {"7"}
    assert read_video(tmp_path / "long" / "Videos" / f"{rows[0]['FileName']}.avi").shape[0] == 7
    report = json.loads((tmp_path / "long" / "generation_report.json").read_text())
    assert report["world_size"] == 2 and len(report["written"]) == 3 and report["requested"] == 3


def test_the_evaluator_id_animates_held_out_references(trained):
    """The standard `evaluator` id (MONAI Label / Deploy) runs: held-out latent clips animated at their real EF."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    root, o = trained
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ("inference.yaml", "presets/tiny.yaml")])
    parser.update({**{k: v for k, v in o["infer"].items() if k != "preset"}, "device": "$torch.device('cpu')"})
    inferer = parser.get_parsed_content("inferer")  # the cache's latent statistics, read when first used
    assert inferer.scaler.shift.tolist() == parser.get_parsed_content("train_latents").scaler.shift.tolist()
    outputs = []
    evaluator = parser.get_parsed_content("evaluator")
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output["pred"]))
    evaluator.run()
    assert outputs and outputs[0].shape[1:] == (1, 4, 32, 32)  # (B, 1, num_frames, H, W) decoded pixels


def test_ef_outside_0_100_is_refused(trained, capsys):
    root, o = trained
    args = {**o["infer"], "ejection_fractions": [120.0], "output_dir": str(root / "bad_ef")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "EF 120" in message


def test_latent_cache_of_another_vae_names_the_encode_stage(trained, tmp_path, capsys):
    root, o = trained
    bundle = Path(o["train"]["bundle_root"])
    # another autoencoder: same architecture, other weights
    other = {**o["train_vae"], "bundle_root": str(tmp_path / "other"), "seed": 1}
    assert cli.main(["train", str(BUNDLE), "--stage", "vae", *cli_args(other)]) == 0
    models = tmp_path / "other" / "models"
    first = [int(p.stem.split("=")[1]) for p in models.glob("vae_checkpoint_final_iteration=*.pt")]
    # a second run with more epochs resumes from the stage's last checkpoint instead of starting again
    assert cli.main(["train", str(BUNDLE), "--stage", "vae", *cli_args({**other, "epochs": 2})]) == 0
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("vae_checkpoint_final_iteration=*.pt"))
    assert finals[-1] == 2 * first[0]
    args = {
        **o["train"],
        "vae_ckpt": str(tmp_path / "other" / "models" / "autoencoder.pt"),
        "cache_dir": str(bundle / "latents"),
        "ckpt_dir": str(tmp_path / "models"),
    }
    message = cli_error(["train", str(BUNDLE), *cli_args(args)], capsys)
    assert "echo_flow infer --stage encode" in message and "fingerprint" in message


def test_missing_stage_checkpoint_names_the_stage(trained, tmp_path, capsys):
    root, o = trained
    args = {**o["infer"], "reid_ckpt": str(tmp_path / "missing.pt"), "output_dir": str(tmp_path / "out")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "echo_flow train --stage reid" in message


def test_multi_gpu_overlay_trains_the_video_stage_with_torchrun_on_cpu(tmp_path):
    """The torchrun + DDP overlay through the same engines, two CPU processes with Gloo."""
    overrides = make_overrides(tmp_path)["train"]
    done = torchrun_train(BUNDLE, {**overrides, "held_out_split": "TRAIN"})
    assert done.returncode == 0, done.stderr[-3000:]
    models = Path(overrides["bundle_root"]) / "models"
    # 6 training videos, 2 ranks x batch 2 -> 3 videos and 2 iterations per rank
    assert (models / "model.pt").is_file() and (models / "video_checkpoint_final_iteration=2.pt").is_file()


def test_a_rerun_with_other_requests_is_refused_then_overwritten(trained, tmp_path, capsys):
    root, o = trained
    out = tmp_path / "export"
    args = {**o["infer"], "output_dir": str(out), "ejection_fractions": [40.0, 60.0]}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    other = {**args, "ejection_fractions": [30.0]}
    message = cli_error(["infer", str(BUNDLE), *cli_args(other)], capsys)
    assert "made by another job (it differs in requests)" in message and "--generation::overwrite True" in message
    assert cli.main(["infer", str(BUNDLE), *cli_args({**other, "generation::overwrite": True})]) == 0
    with open(out / "FileList.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [round(float(r["EF"])) for r in rows] == [30] and len(list((out / "Videos").glob("*.avi"))) == 1
    report = json.loads((out / "generation_report.json").read_text())
    assert report["requested"] == 1 and len(report["written"]) == 1


def test_export_stage_traces_the_video_denoiser_to_model_ts(trained):
    """``infer --stage export`` writes models/model.ts: (x, flow time, EF) positional, equal to the eager network."""
    root, o = trained
    traced, metadata = export_and_load(BUNDLE, root, o["train"]["bundle_root"])
    inputs = metadata["inputs"]
    assert list(inputs) == ["x", "timesteps", "context"] and inputs["context"]["high"] == 100
    x = torch.randn(inputs["x"]["shape"])
    with torch.no_grad():
        out = traced(x, torch.tensor([500.0]), torch.tensor([55.0]))
    assert out.shape == (x.shape[0], x.shape[1] // 2, *x.shape[2:]) and torch.isfinite(out).all()


def test_a_frame_of_your_own_starts_every_cine_at_each_ef(trained, tmp_path, capsys):
    """``--reference_image FILE``: the frame, encoded by the trained autoencoder, replaces the sampled first frame."""
    import cv2

    from echo_monai.data.video_io import read_video

    root, o = trained
    real = read_video(next((root / "echonet" / "Videos").glob("*.avi")))  # (T, H, W) grey levels
    cv2.imwrite(str(tmp_path / "frame.png"), real[0].astype("uint8"))
    cv2.imwrite(str(tmp_path / "dark.png"), (real[0] * 0.2).astype("uint8"))
    videos = {}
    for name in ("frame", "dark"):
        args = {**o["infer"], "output_dir": str(tmp_path / name), "ejection_fractions": [30.0, 70.0],
                "reference_image": str(tmp_path / f"{name}.png")}  # fmt: skip
        assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
        report = json.loads((tmp_path / name / "generation_report.json").read_text())
        assert report["written"] and report["failed"] == [] and report["accepted_references"] == 0  # none sampled
        videos[name] = sorted((tmp_path / name / "Videos").glob("*.avi"))
        assert len(videos[name]) == 2
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(videos["frame"], videos["dark"], strict=True))
    args = {**o["infer"], "output_dir": str(tmp_path / "bad"), "reference_image": str(tmp_path / "absent.png")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "absent.png" in message and "does not exist" in message


def test_verify_net_in_out_runs_the_pipeline_network(trained):
    """MONAI's check of network_data_format: a first frame (and the default EF) in, a one-channel cine out."""
    root, o = trained
    where = {"bundle_root": o["infer"]["bundle_root"], "dataset_dir": o["infer"]["dataset_dir"]}
    parser, net = verify_pipeline_network(BUNDLE, where)
    frames = torch.rand(2, 1, 32, 32) * 255
    cines = net(frames, ejection_fraction=[30.0, 70.0])
    assert cines.shape == (2, 1, parser.get_parsed_content("generate_frames"), 32, 32)
    assert float(cines.min()) >= -1.0 and float(cines.max()) <= 1.0


def test_meanflow_stage_fine_tunes_the_video_denoiser_and_exports_in_one_step(trained, tmp_path, capsys):
    """``train --stage meanflow``: the video denoiser of models/model.pt (left as it was), wrapped in
    MeanFlowDenoiser and fine-tuned to models/meanflow.pt, resumable; ``infer --stage meanflow`` then exports in one
    network evaluation per video."""
    root, o = trained
    train, models = copied_bundle(o["train"], tmp_path / "bundle")
    bundle = models.parent
    flow_bytes = (models / "model.pt").read_bytes()
    assert cli.main(["train", str(BUNDLE), "--stage", "meanflow", *cli_args(train)]) == 0
    assert (models / "meanflow.pt").is_file() and (models / "model.pt").read_bytes() == flow_bytes
    first = [int(p.stem.split("=")[1]) for p in models.glob("meanflow_checkpoint_final_iteration=*.pt")]
    assert cli.main(["train", str(BUNDLE), "--stage", "meanflow", *cli_args({**train, "epochs": 2})]) == 0
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("meanflow_checkpoint_final_iteration=*.pt"))
    assert first and finals[-1] == 2 * first[0]
    state = torch.load(models / "meanflow.pt", map_location="cpu", weights_only=True)
    flow = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(state) == {"gate"} | {f"network.{key}" for key in flow}
    assert any(not torch.equal(state[f"network.{key}"], flow[key]) for key in flow)  # fine-tuned
    out = tmp_path / "export"
    infer = {**o["infer"], "bundle_root": str(bundle), "output_dir": str(out)}
    assert cli.main(["infer", str(BUNDLE), "--stage", "meanflow", *cli_args(infer)]) == 0
    assert len(list((out / "Videos").glob("*.avi"))) == 3
    sampler = json.loads((out / "generation_settings.json").read_text())["sampler"]
    assert sampler["solver"] == "meanflow" and sampler["num_inference_steps"] == 1
    (models / "meanflow.pt").unlink()
    message = cli_error(
        ["infer", str(BUNDLE), "--stage", "meanflow", *cli_args({**infer, "output_dir": str(out / "x")})], capsys
    )
    assert "meanflow.pt" in message and "echo_flow train --stage meanflow" in message
    from monai.bundle import ConfigParser

    parser = ConfigParser()  # the trained network is a copy of the frozen model.pt, whose velocity can be the target's
    configs = ("inference.yaml", "train.yaml", "train_meanflow.yaml", "presets/tiny.yaml")
    parser.read_config([str(BUNDLE / "configs" / f) for f in configs])
    overrides = {k: v for k, v in train.items() if k != "preset"}
    parser.update({**overrides, "device": "$torch.device('cpu')", "meanflow_velocity_network": "@meanflow_teacher"})
    prepare, teacher = parser.get_parsed_content("train::trainer::prepare_batch"), parser.get_parsed_content("network")
    assert prepare.velocity_network is teacher and prepare.network.network is not teacher
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in prepare.network.parameters())


def test_reflow_stage_fine_tunes_on_cached_couplings_and_exports_in_two_steps(trained, tmp_path, capsys):
    """``train --stage reflow``: model.pt (left as it was) makes (noise, video) couplings of the training clips, cached
    in models/reflow_couplings.pt and read again by a resumed run; its copy is fine-tuned on them to models/reflow.pt;
    ``infer --stage reflow`` exports in ``reflow_steps`` Euler steps."""
    root, o = trained
    train, models = copied_bundle({**o["train"], "reflow_teacher_steps": 2, "reflow_pairs_per_clip": 2}, tmp_path / "b")
    bundle = models.parent
    flow_bytes = (models / "model.pt").read_bytes()
    assert cli.main(["train", str(BUNDLE), "--stage", "reflow", *cli_args(train)]) == 0
    assert (models / "reflow.pt").is_file() and (models / "model.pt").read_bytes() == flow_bytes
    saved = torch.load(models / "reflow_couplings.pt", map_location="cpu", weights_only=False)
    couplings, record = saved["couplings"], saved["record"]
    assert record["pairs_per_item"] == 2 and len(couplings) == 2 * record["items"]
    assert all(c["latent"].shape == c["noise"].shape for c in couplings)
    assert {"reference", "ejection_fraction"} <= set(couplings[0])
    cache_bytes = (models / "reflow_couplings.pt").read_bytes()
    first = [int(p.stem.split("=")[1]) for p in models.glob("reflow_checkpoint_final_iteration=*.pt")]
    assert cli.main(["train", str(BUNDLE), "--stage", "reflow", *cli_args({**train, "epochs": 2})]) == 0
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("reflow_checkpoint_final_iteration=*.pt"))
    assert first and finals[-1] == 2 * first[0]
    assert (models / "reflow_couplings.pt").read_bytes() == cache_bytes  # resumed on the same pairs
    state = torch.load(models / "reflow.pt", map_location="cpu", weights_only=True)
    flow = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(state) == set(flow) and any(not torch.equal(state[k], flow[k]) for k in flow)  # fine-tuned
    out = tmp_path / "export"
    infer = {**o["infer"], "bundle_root": str(bundle), "output_dir": str(out)}
    assert cli.main(["infer", str(BUNDLE), "--stage", "reflow", *cli_args(infer)]) == 0
    assert len(list((out / "Videos").glob("*.avi"))) == 3
    sampler = json.loads((out / "generation_settings.json").read_text())["sampler"]
    assert sampler["solver"] == "euler" and sampler["num_inference_steps"] == 2
    # a truncated couplings cache is named on one line, not trained on
    (models / "reflow_couplings.pt").write_bytes(cache_bytes[: len(cache_bytes) // 2])
    message = cli_error(["train", str(BUNDLE), "--stage", "reflow", *cli_args({**train, "epochs": 3})], capsys)
    assert "reflow_couplings.pt" in message and "delete it to make the couplings again" in message
    (models / "reflow.pt").unlink()
    message = cli_error(
        ["infer", str(BUNDLE), "--stage", "reflow", *cli_args({**infer, "output_dir": str(out / "x")})], capsys
    )
    assert "reflow.pt" in message and "echo_flow train --stage reflow" in message


def test_gpu_preset_exports_the_same_videos_on_the_cpu_through_its_fallbacks(trained, tmp_path):
    """``--preset gpu`` (bf16, compiled with CUDA graphs) on a CPU: float32 eager, byte-identical videos."""
    root, o = trained
    plain, fast = gpu_preset_runs(BUNDLE, o["infer"], tmp_path)
    assert assert_same_files(plain / "Videos", fast / "Videos", "*.avi") == 3
    parts = [json.loads((d / "generation_fingerprint.json").read_text())["parts"] for d in (plain, fast)]
    assert parts[0]["network"] != parts[1]["network"] and parts[0]["sampler"] == parts[1]["sampler"]  # wrapped
