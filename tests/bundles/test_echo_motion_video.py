"""echo_motion_video end to end with tiny overrides on an EchoNet phantom: train_vae -> train_reid -> train_mafe ->
encode (latents + motion tokens) -> train -> infer (transfer, prior) -> evaluate; and the bad inputs each get one
clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import assert_same_files, cli_args, cli_error, copied_bundle, gpu_preset_runs

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate
from echo_monai.data import EchoNetDynamic, LatentCacheDataset

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "echo_motion_video"


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data, the three stages before the cache (autoencoder, re-ID, MAFE), the cache, and overrides per
    command. The contract test uses ``train`` and ``infer``, whose datasets read the cache, so it is built here."""
    echonet = root / "echonet"
    if not echonet.exists():
        simulate("echonet", echonet, n=10, seed=0, image_size=(32, 32), n_frames=32)
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(echonet), "preset": "tiny"}
    overrides = {
        "train": common,
        "infer": {**common, "output_dir": str(root / "synthetic")},
        "evaluate": {**common, "report_dir": str(root / "report")},
    }
    if not (root / "bundle" / "latents" / "val" / "latent_stats.json").is_file():
        for stage in ("vae", "reid", "mafe"):
            assert cli.main(["train", str(BUNDLE), "--stage", stage, *cli_args(common)]) == 0, stage
        assert cli.main(["infer", str(BUNDLE), "--stage", "encode", *cli_args(common)]) == 0
    return overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo_motion_video")
    o = make_overrides(root)
    assert cli.main(["train", str(BUNDLE), *cli_args(o["train"])]) == 0
    return root, o


def test_train_mafe_then_cache_motion_tokens_fingerprinted_against_it(trained):
    root, o = trained
    models = Path(o["train"]["bundle_root"]) / "models"
    for name in ("autoencoder.pt", "reid.pt", "mafe.pt", "model.pt", "model.pt.trained_on.json"):
        assert (models / name).is_file(), name
    recorded = json.loads((models / "model.pt.trained_on.json").read_text())["fingerprints"]
    assert set(recorded) == {"autoencoder", "mafe"}
    cache = LatentCacheDataset(Path(o["train"]["bundle_root"]) / "latents" / "train")
    item = cache[0]
    assert item["latent"].shape == (4, 8, 8, 8) and item["motion"].shape == (1, 8)
    motions = torch.stack([cache[i]["motion"] for i in range(len(cache))])
    assert motions.std(0).max() > 0  # the videos' motions differ
    index = json.loads((Path(o["train"]["bundle_root"]) / "latents" / "train" / "latent_index.json").read_text())
    assert "mafe" in index["autoencoder_config"]


def test_infer_transfer_and_prior(trained):
    root, o = trained
    assert cli.main(["infer", str(BUNDLE), *cli_args({**o["infer"], "output_dir": str(root / "transfer")})]) == 0
    exported = EchoNetDynamic(root / "transfer", split="TRAIN", require_tracings=False)
    test_videos = EchoNetDynamic(root / "echonet", split="TEST", require_tracings=False)
    assert len(exported) == len(test_videos) >= 1
    item = exported[0]
    assert item["video"].shape == (1, 8, 16, 16)
    # the export records each driving video's EF
    assert sorted(r["meta"]["ejection_fraction"] for r in exported.data) == pytest.approx(
        sorted(r["meta"]["ejection_fraction"] for r in test_videos.data), abs=1e-3
    )
    report = json.loads((root / "transfer" / "generation_report.json").read_text())
    assert report["gated"] == [] and len(report["written"]) == len(test_videos)  # the privacy gate let them pass
    settings = json.loads((root / "transfer" / "generation_settings.json").read_text())
    assert settings["output_gate"] == "PrivacyGate"  # (its rule is tested in tests/apps/generation)
    args = {**o["infer"], "privacy_gate": False, "output_dir": str(root / "ungated")}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    assert json.loads((root / "ungated" / "generation_settings.json").read_text())["output_gate"] is None
    args = {**o["infer"], "mode": "prior", "copies": 2, "output_dir": str(root / "prior")}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    gifs = sorted((root / "prior").glob("*.gif"))
    assert len(gifs) == 2 * len(test_videos)
    import nibabel as nib

    videos = [nib.load(str(p)).get_fdata() for p in sorted((root / "prior").glob("*.nii.gz"))]
    assert not np.allclose(videos[0], videos[1])  # two motions drawn for one reference


def test_evaluate_scores_motion_and_ef_faithfulness(trained):
    root, o = trained
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(o["evaluate"])]) == 0
    metrics = json.loads((root / "report" / "metrics.json").read_text())
    assert -1.0 <= metrics["motion_faithfulness"]["model"]["flow_correlation"] <= 1.0
    assert set(metrics["temporal_consistency"]) == {"real_driving", "model"}
    assert metrics["ef_faithfulness"]["model"]["mae"] >= 0.0
    privacy = metrics["privacy"]["model"]  # the export's gate on the evaluated videos
    assert 0.0 <= privacy["gated_rate"] <= 1.0 and privacy["nearest_train_similarity_max"] <= 1.0 + 1e-6
    assert (root / "report" / "report.md").is_file()


def test_bad_inputs_get_one_line(trained, tmp_path, capsys):
    root, o = trained
    # a driving video shorter than a clip
    args = {**o["infer"], "num_frames": 64, "output_dir": str(tmp_path / "short")}
    report = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "a clip of 64 frames" in report
    # motion features of another size than the video model expects (another MAFE's settings)
    other = tmp_path / "other"
    shutil.copytree(o["train"]["bundle_root"], other, ignore=shutil.ignore_patterns("model.pt*", "video_*"))
    args = {**o["train"], "bundle_root": str(other), "num_motion_tokens": 2}
    report = cli_error(["train", str(BUNDLE), *cli_args(args)], capsys)
    assert "'motion' from the latent cache's motion features" in report and "expects (2, 8)" in report
    # a feature cache made with another MAFE (retrained: other weights, same settings)
    state = torch.load(other / "models" / "mafe.pt", map_location="cpu", weights_only=True)
    weights = state.get("model", state)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 0.5
    torch.save(state, other / "models" / "mafe.pt")
    report = cli_error(["train", str(BUNDLE), *cli_args({**o["train"], "bundle_root": str(other)})], capsys)
    assert "latent cache" in report and "or with another mafe" in report


def test_ef_as_a_second_token(trained, tmp_path):
    root, o = trained
    ef_root = tmp_path / "ef_token"
    shutil.copytree(o["train"]["bundle_root"], ef_root, ignore=shutil.ignore_patterns("model.pt*", "video_*"))
    common = {**o["train"], "bundle_root": str(ef_root), "ef_conditioning": "token"}
    assert cli.main(["train", str(BUNDLE), *cli_args(common)]) == 0
    weights = torch.load(ef_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    weights = weights.get("model", weights)
    assert any(k.startswith("extra_tokens.ejection_fraction.") for k in weights)  # the EF embedding is learnt with it
    args = {**common, "ejection_fraction": 40.0, "output_dir": str(tmp_path / "at40")}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    exported = EchoNetDynamic(tmp_path / "at40", split="TRAIN", require_tracings=False)
    assert [r["meta"]["ejection_fraction"] for r in exported.data] == pytest.approx([40.0] * len(exported))
    args = {**common, "report_dir": str(tmp_path / "report")}
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(args)]) == 0  # conditioned on the driving videos' labels
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["ef_faithfulness"]["model"]["num_videos"] >= 1


def test_evaluate_beside_echo_flow_trained_on_the_same_phantom(trained, tmp_path):
    from echo_monai.apps.motion_video_evaluation import ef_conditioned_models

    root, o = trained
    flow = Path(__file__).resolve().parents[2] / "bundles" / "echo_flow"
    same_clips = {"image_size": 16, "num_frames": 8, "fps": 16}
    common = {"bundle_root": str(tmp_path / "flow"), "dataset_dir": o["train"]["dataset_dir"], "preset": "tiny",
              **same_clips}  # fmt: skip
    assert cli.main(["train", str(flow), "--stage", "vae", *cli_args(common)]) == 0
    assert cli.main(["infer", str(flow), "--stage", "encode", *cli_args(common)]) == 0
    assert cli.main(["train", str(flow), *cli_args(common)]) == 0
    compare = {"echo_flow": common["bundle_root"]}
    args = {**o["evaluate"], "report_dir": str(tmp_path / "report"), "compare_with": compare}
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(args)]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["data"]["models"] == ["model", "echo_flow"]
    for section in ("motion_faithfulness", "ef_faithfulness", "temporal_consistency"):
        assert {"model", "echo_flow"} <= set(metrics[section]), section
    with pytest.raises(ValueError, match="was trained with fps 16"):
        ef_conditioned_models({"echo_flow": common["bundle_root"]}, 8, 16, fps=25)
    with pytest.raises(FileNotFoundError, match="has no models/ folder"):
        ef_conditioned_models({"echo_flow": str(tmp_path / "nowhere")}, 8, 16, fps=16)


def test_gpu_preset_generates_the_same_videos_on_the_cpu_through_its_fallbacks(trained, tmp_path):
    """``--preset gpu`` (bf16, compiled with CUDA graphs) on a CPU: float32 eager, the same videos."""
    root, o = trained
    plain, fast = gpu_preset_runs(BUNDLE, o["infer"], tmp_path)
    assert assert_same_files(plain, fast, "*.avi") > 0


def test_distill_stage_generates_in_two_and_one_steps(trained, tmp_path, capsys):
    """``train --stage distill``: a consistency student of the DDPM models/model.pt (left as it was) trained to
    models/student.pt with its trained-on record; ``infer --stage distill`` generates with the consistency sampler in
    ``student_steps`` evaluations; a flow-matching model.pt is refused on one line, and so is a missing student.pt."""
    root, o = trained
    train, models = copied_bundle(o["train"], tmp_path / "bundle", ignore=("outputs", "eval*"))
    bundle = models.parent
    teacher_bytes = (models / "model.pt").read_bytes()
    assert cli.main(["train", str(BUNDLE), "--stage", "distill", *cli_args(train)]) == 0
    assert (models / "model.pt").read_bytes() == teacher_bytes
    record = json.loads((models / "student.pt.trained_on.json").read_text())
    assert record["stage"] == "echo_motion_video train --stage distill"
    assert set(record["fingerprints"]) == {"autoencoder", "mafe"}
    student = torch.load(models / "student.pt", map_location="cpu", weights_only=True)
    teacher = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(student) == set(teacher) and any(not torch.equal(student[k], teacher[k]) for k in teacher)
    assert list(models.glob("student_checkpoint_final_iteration=*.pt"))  # resumable

    for steps in (2, 1):
        out = tmp_path / f"steps_{steps}"
        infer = {**o["infer"], "bundle_root": str(bundle), "output_dir": str(out), "student_steps": steps}
        assert cli.main(["infer", str(BUNDLE), "--stage", "distill", *cli_args(infer)]) == 0
        exported = EchoNetDynamic(out, split="TRAIN", require_tracings=False)
        assert len(exported) >= 1 and exported[0]["video"].shape == (1, 8, 16, 16)
        sampler = json.loads((out / "generation_settings.json").read_text())["sampler"]
        assert sampler["num_inference_steps"] == steps and sampler["kind"] == "consistency"

    # a flow-matching model.pt has no noise schedule to distil along: refused before any training
    flow = {**train, "objective": "flow"}
    message = cli_error(["train", str(BUNDLE), "--stage", "distill", *cli_args(flow)], capsys)
    assert "objective is 'flow'" in message and "--objective ddpm" in message
    (models / "student.pt").unlink()
    missing = {**o["infer"], "bundle_root": str(bundle), "output_dir": str(tmp_path / "x")}
    message = cli_error(["infer", str(BUNDLE), "--stage", "distill", *cli_args(missing)], capsys)
    assert "student.pt" in message and "echo_motion_video train --stage distill" in message
