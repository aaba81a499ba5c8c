"""us_image_to_video end to end with tiny overrides on the breast phantom: train_vae -> encode -> train (flow and
DDPM) -> infer (a BUSI folder into a BUSV-layout dataset; one image into viewer files) -> evaluate; and the bad
inputs each get one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from bundle_helpers import (
    assert_same_volumes,
    cli_args,
    cli_error,
    copied_bundle,
    ensure_latent_cache,
    gpu_preset_runs,
    torchrun_train,
    verify_pipeline_network,
)

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate
from echo_monai.data import BUSV, LatentCacheDataset

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "us_image_to_video"


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data (BUSV videos to train on, BUSI images to animate), the stage-1 autoencoder and latent cache,
    and overrides per command. The contract test uses ``train`` and ``infer``; ``check_properties`` instantiates
    their datasets, which read the latent cache, so it is built here (train_vae then encode, seconds at this size)."""
    busv, busi = root / "busv", root / "busi"
    if not busv.exists():
        simulate("busv", busv, n=10, seed=0, image_size=(32, 40), n_frames=10)  # 8 train, 2 val videos
        simulate("busi", busi, n=6, seed=0, image_size=(32, 40))  # 2 benign, 2 malignant, 2 normal
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(busv), "preset": "tiny"}
    overrides = {
        "train_vae": common,
        "encode": common,
        "train": common,
        "infer": {**common, "images": str(busi), "output_dir": str(root / "synthetic")},
        "evaluate": {
            **common,
            "images": str(busi),
            "synthetic_dir": str(root / "synthetic"),
            "report_dir": str(root / "report"),
        },  # fmt: skip
    }
    ensure_latent_cache(BUNDLE, overrides, root / "bundle" / "latents" / "val")
    return overrides


@pytest.fixture(scope="module")
def trained(image_to_video_bundle):
    return image_to_video_bundle  # trained once per session (conftest.py), shared with the serving tests


def test_train_stage_one_reproduces_the_first_frame_and_caches_it(trained):
    root, o = trained
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "inference.yaml"), str(BUNDLE / "configs" / "presets" / "tiny.yaml")])
    parser.update({"bundle_root": o["train"]["bundle_root"]})
    autoencoder = parser.get_parsed_content("checkpoints::autoencoder").load().eval()
    cache = LatentCacheDataset(Path(o["train"]["bundle_root"]) / "latents" / "train")
    assert len(cache) == 8
    item = cache[0]
    assert item["latent"].shape == (4, 4, 8, 8) and item["first_frame"].shape == (1, 16, 16)
    assert item["label"] in ("benign", "malignant") and "video_name" in item
    video = torch.rand(1, 1, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(autoencoder(video)[0][:, :, 0], video[:, :, 0])  # by construction


def test_multi_gpu_overlay_trains_stage_two_with_torchrun_on_cpu(tmp_path):
    """The torchrun + DDP overlay through the same engines, two CPU processes with Gloo."""
    overrides = make_overrides(tmp_path)["train"]
    done = torchrun_train(BUNDLE, overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    models = Path(overrides["bundle_root"]) / "models"
    # 8 training clips, 2 ranks x batch 2 -> 4 clips and 2 iterations per rank
    assert (models / "model.pt").is_file() and (models / "video_flow_checkpoint_final_iteration=2.pt").is_file()
    assert (models / "model.pt.trained_on.json").is_file()


def test_infer_busi_folder_into_a_busv_dataset_with_boxes(trained):
    root, o = trained
    assert cli.main(["infer", str(BUNDLE), *cli_args(o["infer"])]) == 0
    synthetic = BUSV(root / "synthetic", validate=True)
    assert len(synthetic) == 8  # 4 benign/malignant images (normal ones are not animated) x 2 videos each
    labels = sorted(synthetic[i]["label"] for i in range(len(synthetic)))
    assert labels == ["benign"] * 4 + ["malignant"] * 4
    item = synthetic[0]
    assert item["video"].shape == (1, 8, 16, 16)
    assert torch.isfinite(item["boxes"]).all()  # every BUSI image has a lesion mask: a box per frame
    report = json.loads((root / "synthetic" / "generation_report.json").read_text())
    assert report["requested"] == 8 and len(report["written"]) == 8
    # the two videos of one image differ (their own seeds) and both start from the image
    names = sorted(p.name for p in (root / "synthetic" / "rawframes" / "benign").iterdir())
    first = [cv2.imread(str(root / "synthetic" / "rawframes" / "benign" / n / "000000.png"), 0) for n in names[:2]]
    later = [cv2.imread(str(root / "synthetic" / "rawframes" / "benign" / n / "000007.png"), 0) for n in names[:2]]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(later[0], later[1])


def test_infer_one_image_into_viewer_files_and_ddpm(trained, tmp_path):
    root, o = trained
    image = sorted((root / "busi").rglob("malignant (1).png"))[0]
    args = {**o["infer"], "images": str(image), "output_layout": "files", "output_dir": str(tmp_path / "files")}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    files = sorted(p.name for p in (tmp_path / "files").iterdir())
    for suffix in (".gif", ".mp4", ".nii.gz", ".dcm"):
        assert sum(name.endswith(suffix) for name in files) == 2, (suffix, files)
    # DDPM (v-prediction) instead of flow matching: the same stage, another objective
    ddpm_root = tmp_path / "ddpm"
    shutil.copytree(o["train"]["bundle_root"], ddpm_root, ignore=shutil.ignore_patterns("model.pt", "video_*"))
    ddpm = {**o["train"], "bundle_root": str(ddpm_root), "objective": "ddpm"}
    assert cli.main(["train", str(BUNDLE), *cli_args(ddpm)]) == 0
    args = {**args, "bundle_root": str(ddpm_root), "objective": "ddpm", "output_dir": str(tmp_path / "ddpm_files"),
            "formats": ["nifti"]}  # fmt: skip
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    assert len(list((tmp_path / "ddpm_files").glob("*.nii.gz"))) == 2


def test_evaluate_writes_the_continuation_and_downstream_report(trained):
    root, o = trained
    if not (root / "synthetic" / "generation_report.json").is_file():
        assert cli.main(["infer", str(BUNDLE), *cli_args(o["infer"])]) == 0
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(o["evaluate"])]) == 0
    metrics = json.loads((root / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["continuation"]["ssim"] <= 1.0
    assert metrics["continuation_still_baseline"]["motion_energy_generated"] == 0.0
    assert metrics["reconstruction"]["first_frame_exact"] == 1.0
    assert 0.0 <= metrics["reconstruction"]["autoencoder_ssim"] <= 1.0
    assert any(k.startswith("FD_video_classifier") for k in metrics["continuation"])
    assert any(k.startswith("DT_FD_video_classifier") for k in metrics["continuation"])
    assert (root / "report" / "report.md").is_file()


def test_bad_inputs_get_one_line(trained, tmp_path, capsys):
    root, o = trained
    # an image of the wrong kind, and an unreadable one
    (tmp_path / "broken.png").write_bytes(b"not an image")
    args = {**o["infer"], "images": str(tmp_path / "broken.png"), "output_layout": "files",
            "output_dir": str(tmp_path / "out")}  # fmt: skip
    report = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "broken.png" in report and "could not be decoded" in report
    # a BUSI image without its mask when boxes are asked for
    busi = tmp_path / "busi"
    shutil.copytree(root / "busi", busi)
    mask = sorted(busi.rglob("benign (1)_mask.png"))[0]
    mask.unlink()
    args = {**o["infer"], "images": str(busi), "output_dir": str(tmp_path / "nomask")}
    report = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "benign (1)" in report and "mask" in report
    # a video with fewer frames than a clip
    args = {**o["train_vae"], "num_frames": 16, "bundle_root": str(tmp_path / "short")}
    report = cli_error(["train", str(BUNDLE), "--stage", "vae", *cli_args(args)], capsys)
    assert "frames; a clip of 16 frames" in report
    # a stage-2 checkpoint for another autoencoder (same network, other weights: a retrained stage 1)
    other = tmp_path / "other"
    shutil.copytree(o["train"]["bundle_root"], other)
    state = torch.load(other / "models" / "autoencoder.pt", map_location="cpu", weights_only=True)
    weights = state.get("autoencoder", state)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 0.5
    torch.save(state, other / "models" / "autoencoder.pt")
    args = {**o["infer"], "bundle_root": str(other), "output_dir": str(tmp_path / "stale")}
    report = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "model.pt' was trained on the latents of another autoencoder" in report
    assert not (tmp_path / "stale" / "rows").exists()  # refused before anything was generated


def test_verify_net_in_out_runs_the_pipeline_network(trained):
    """MONAI's check of network_data_format: a still image in, a one-channel video out; the first frame is the
    image's (the autoencoder keeps it exactly)."""
    root, o = trained
    where = {"bundle_root": o["train"]["bundle_root"], "dataset_dir": o["train"]["dataset_dir"]}
    parser, net = verify_pipeline_network(BUNDLE, where)
    size, frames = parser.get_parsed_content("image_size"), parser.get_parsed_content("num_frames")
    images = torch.rand(2, 1, size, size) * 255
    videos = net(images)
    assert videos.shape == (2, 1, frames, size, size) and float(videos.abs().max()) <= 1.0
    torch.testing.assert_close(videos[:, :, 0], images / 127.5 - 1, atol=1e-4, rtol=0)


def test_gpu_preset_animates_the_same_videos_on_the_cpu_through_its_fallbacks(trained, tmp_path):
    """``--preset gpu`` (bf16, compiled with CUDA graphs) on a CPU: float32 eager, the same videos."""
    root, o = trained
    plain, fast = gpu_preset_runs(BUNDLE, {**o["infer"], "output_layout": "files"}, tmp_path)
    assert assert_same_volumes(plain, fast) > 0


def test_meanflow_stage_animates_in_one_step(trained, tmp_path, capsys):
    """``train --stage meanflow``: the flow-matching denoiser of models/model.pt (left as it was) copied, wrapped in
    MeanFlowDenoiser and fine-tuned to models/meanflow.pt (with its trained-on record); ``infer --stage meanflow``
    animates in one guided network evaluation per video; a DDPM model.pt is refused on one line."""
    root, o = trained
    train, models = copied_bundle(o["train"], tmp_path / "bundle")
    bundle = models.parent
    flow_bytes = (models / "model.pt").read_bytes()
    assert cli.main(["train", str(BUNDLE), "--stage", "meanflow", *cli_args(train)]) == 0
    assert (models / "model.pt").read_bytes() == flow_bytes
    record = json.loads((models / "meanflow.pt.trained_on.json").read_text())
    assert record["stage"] == "us_image_to_video train --stage meanflow"
    assert set(record["fingerprints"]) == {"autoencoder"}
    state = torch.load(models / "meanflow.pt", map_location="cpu", weights_only=True)
    flow = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(state) == {"gate"} | {f"network.{key}" for key in flow}
    assert any(not torch.equal(state[f"network.{key}"], flow[key]) for key in flow)  # fine-tuned
    assert list(models.glob("meanflow_checkpoint_final_iteration=*.pt"))  # resumable, beside video_flow_*

    out = tmp_path / "one_step"
    infer = {**o["infer"], "bundle_root": str(bundle), "output_dir": str(out)}
    assert cli.main(["infer", str(BUNDLE), "--stage", "meanflow", *cli_args(infer)]) == 0
    synthetic = BUSV(out, validate=True)
    assert len(synthetic) == 8 and synthetic[0]["video"].shape == (1, 8, 16, 16)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    configs = ("inference.yaml", "inference_meanflow.yaml", "presets/tiny.yaml")
    parser.read_config([str(BUNDLE / "configs" / f) for f in configs])
    sampler = parser.get_parsed_content("sampler")
    assert sampler.solver == "meanflow" and sampler.num_inference_steps == 1

    # a model.pt trained with --objective ddpm has no velocity to start from: refused before any training
    ddpm = {**train, "objective": "ddpm"}
    message = cli_error(["train", str(BUNDLE), "--stage", "meanflow", *cli_args(ddpm)], capsys)
    assert "objective is 'ddpm'" in message and "--objective flow" in message
    # no meanflow.pt: the loader names the file and the stage that writes it
    (models / "meanflow.pt").unlink()
    missing = {**infer, "output_dir": str(out / "x")}
    message = cli_error(["infer", str(BUNDLE), "--stage", "meanflow", *cli_args(missing)], capsys)
    assert "meanflow.pt" in message and "us_image_to_video train --stage meanflow" in message
