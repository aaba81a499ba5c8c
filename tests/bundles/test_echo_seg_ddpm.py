"""echo_seg_ddpm end to end with tiny overrides on a CAMUS-layout phantom: train → infer → generate → evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from bundle_helpers import cli_args, cli_error, export_and_load, torchrun_train

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate
from echo_monai.data import CAMUS

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "echo_seg_ddpm"
TINY = yaml.safe_load((BUNDLE / "configs" / "presets" / "tiny.yaml").read_text())  # what --preset tiny sets


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data and overrides per command (``train``, ``infer``, ``evaluate``); the contract test uses them."""
    camus = root / "camus"
    if not camus.exists():
        simulate("camus", camus, n=3, seed=0, image_size=(64, 64))
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(camus), "preset": "tiny"}
    train = {
        **common,
        "train_split": ["patient0001", "patient0002"],
        "val_split": ["patient0002"],
        "epochs": 1,
        "batch_size": 4,
        "num_workers": 0,
        "preview_steps": 2,
        "preview_interval": 1,
        "save_interval": 2,
        "ema_start": 0,
    }
    infer = {**common, "num_inference_steps": 2, "batch_size": 4, "resize_label_maps": True}  # 64 px phantom
    evaluate = {
        **infer,
        "train_split": ["patient0001", "patient0002"],
        "test_split": ["patient0003"],
        "seg_channels": [8, 16],
        "seg_strides": [2],
        "seg_epochs": 1,
        "classifier_epochs": 1,
        "seg_batch_size": 4,
    }
    return {"train": train, "infer": infer, "evaluate": evaluate}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo_seg_ddpm")
    overrides = make_overrides(root)
    assert cli.main(["train", str(BUNDLE), *cli_args(overrides["train"])]) == 0
    return root, overrides


def test_train_writes_resumable_checkpoints_and_previews(trained):
    root, overrides = trained
    models = Path(overrides["train"]["bundle_root"]) / "models"
    assert (models / "model.pt").is_file()
    assert any(p.name.startswith("checkpoint_final_iteration=") for p in models.iterdir())
    assert list((Path(overrides["train"]["bundle_root"]) / "runs" / "previews").glob("samples_epoch=1.png"))
    # a second run with more epochs resumes from the last checkpoint instead of starting again
    first = [int(p.stem.split("=")[1]) for p in models.glob("checkpoint_final_iteration=*.pt")]
    assert cli.main(["train", str(BUNDLE), *cli_args({**overrides["train"], "epochs": 2})]) == 0
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("checkpoint_final_iteration=*.pt"))
    assert finals[-1] == 2 * first[0]
    assert len(list(models.glob("checkpoint*.pt"))) == 2  # rotated over both runs (n_saved = 2)


@pytest.mark.parametrize("sampler_name", ["ddim", "dpm_solver"])
def test_infer_writes_one_image_per_label_map(trained, sampler_name):
    root, overrides = trained
    out = root / f"png_{sampler_name}"
    args = {**overrides["infer"], "sampler_name": sampler_name, "output_dir": str(out)}
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    images = sorted((out / "images").glob("*.png"))
    assert len(images) == 12 and len(list((out / "labels").glob("*.png"))) == 12  # 3 patients x 2 views x 2 phases


def test_generate_camus_layout_resumes_then_evaluate(trained):
    root, overrides = trained
    synthetic = root / "synthetic_camus"
    train = overrides["evaluate"]["train_split"]  # generate from the training patients' label maps only
    args = {**overrides["infer"], "copies": 2, "output_dir": str(synthetic), "label_map_split": train}
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args(args)]) == 0
    dataset = CAMUS(synthetic)
    assert len(dataset) == 16 and set(np.unique(dataset[0]["label"])) <= {0, 1, 2, 3}  # 2 patients x 4 x 2 copies
    # interrupted generation: a missing image is written again, finished files are left untouched
    victim = sorted(synthetic.rglob("*_ES.nii.gz"))[0]
    keep = sorted(synthetic.rglob("*_ED.nii.gz"))[0]
    mtime = keep.stat().st_mtime_ns
    victim.unlink()
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args(args)]) == 0
    assert victim.is_file() and keep.stat().st_mtime_ns == mtime
    assert not [p for p in synthetic.rglob("*") if p.name.startswith(".tmp")]

    report = root / "report"
    eval_args = {**overrides["evaluate"], "synthetic_dir": str(synthetic), "report_dir": str(report)}
    assert cli.main(["evaluate", str(BUNDLE), *cli_args(eval_args)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["segmentation"]) == {"synthetic", "real", "real+synthetic"}
    assert 0.0 <= metrics["segmentation"]["synthetic"]["dice_lv_endo"] <= 1.0
    assert "FD_view_classifier" in metrics["distribution"]
    assert (report / "report.md").is_file() and (report / "label_synthetic_real.png").is_file()
    assert metrics["settings"]["generation"]["sampler"]["num_inference_steps"] == 2
    steps = metrics["settings"]["evaluation"]["segmentation_steps_per_mix"]
    assert steps == 2  # seg_epochs 1 x ceil(8 real images / batch 4), the same for every mix


def test_evaluate_refuses_synthetic_images_of_the_test_patients(trained, capsys):
    root, overrides = trained
    leaked = root / "leaked"
    args = {**overrides["infer"], "output_dir": str(leaked), "label_map_split": None}  # every patient, test ones too
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args(args)]) == 0
    eval_args = {**overrides["evaluate"], "synthetic_dir": str(leaked), "report_dir": str(root / "leak_report")}
    message = cli_error(["evaluate", str(BUNDLE), *cli_args(eval_args)], capsys)
    assert "generated from label maps of test patients (patient0003" in message and "allow_test_sources" in message


def test_label_values_outside_the_classes_name_the_file(trained, tmp_path, capsys):
    root, overrides = trained
    bad = tmp_path / "labels" / "bad_map.nii.gz"
    bad.parent.mkdir()
    nib.save(nib.Nifti1Image(np.full((32, 32), 7, np.uint8), np.eye(4)), str(bad))
    args = {**overrides["infer"], "dataset_dir": str(bad.parent), "output_dir": str(tmp_path / "out")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "bad_map.nii.gz" in message and "outside the classes" in message


def test_checkpoint_of_another_network_is_refused(trained, tmp_path, capsys):
    root, overrides = trained
    other = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, other)
    args = {**overrides["infer"], "ckpt_path": str(other), "output_dir": str(tmp_path / "out")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "does not fit the network" in message
    (tmp_path / "random.pt").write_bytes(b"\x00" * 7 + b"not a checkpoint")
    message = cli_error(["infer", str(BUNDLE), *cli_args({**args, "ckpt_path": str(tmp_path / "random.pt")})], capsys)
    assert "random.pt' (23 bytes) is not a readable PyTorch checkpoint" in message and "another network" not in message
    missing = {**args, "ckpt_path": str(tmp_path / "missing.pt")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(missing)], capsys)
    assert "echo_seg_ddpm train" in message


def test_multi_gpu_overlay_trains_with_torchrun_on_cpu(tmp_path):
    """The torchrun + DDP overlay through the same engines, two CPU processes with Gloo."""
    overrides = make_overrides(tmp_path)["train"]
    patients = ["patient0001", "patient0002", "patient0003"]
    done = torchrun_train(BUNDLE, {**overrides, "train_split": patients, "val_split": patients})
    assert done.returncode == 0, done.stderr[-3000:]
    models = Path(overrides["bundle_root"]) / "models"
    # 3 patients x 2 views x 2 phases = 12 images, 2 ranks x batch 4 -> 2 iterations for the epoch
    assert (models / "model.pt").is_file() and (models / "checkpoint_final_iteration=2.pt").is_file()


def test_label_maps_of_another_size_are_refused_unless_resampling_is_asked(trained, capsys):
    root, overrides = trained
    args = {**overrides["infer"], "resize_label_maps": False, "output_dir": str(root / "refused")}
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "'label_map' is 64x64 but the network takes 32x32" in message and "resize_label_maps: true" in message
    assert len(message.strip().splitlines()) == 2  # the error on one line, then where the traceback is


def test_a_resumed_generate_writes_the_same_bytes_as_an_uninterrupted_one(trained):
    root, overrides = trained
    args = {**overrides["infer"], "copies": 2}
    whole, resumed = root / "gen_whole", root / "gen_resumed"
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args({**args, "output_dir": str(whole)})]) == 0
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args({**args, "output_dir": str(resumed)})]) == 0
    images = sorted(resumed.rglob("*.nii.gz"))
    for victim in images[::5]:  # an interrupted run: some items lost their files, their records stay
        victim.unlink()
    assert cli.main(["infer", str(BUNDLE), "--stage", "generate", *cli_args({**args, "output_dir": str(resumed)})]) == 0
    for path in sorted(whole.rglob("*.nii.gz")):
        assert path.read_bytes() == (resumed / path.relative_to(whole)).read_bytes(), path.name
    assert (whole / "synthetic_sources.csv").read_text() == (resumed / "synthetic_sources.csv").read_text()


def test_export_stage_traces_the_trained_denoiser_to_model_ts(trained):
    """``infer --stage export`` writes models/model.ts (traced, checked against the eager network), no data read."""
    root, o = trained
    traced, metadata = export_and_load(BUNDLE, root, o["infer"]["bundle_root"])
    size, classes = TINY["image_size"], 5
    assert metadata["inputs"]["seg"]["shape"] == [1, classes, size, size] and metadata["max_abs_difference"] <= 1e-4
    seg = torch.nn.functional.one_hot(torch.randint(0, classes, (1, size, size)), classes).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        out = traced(torch.randn(1, 1, size, size), torch.tensor([3]), seg)
    assert out.shape == (1, 1, size, size) and torch.isfinite(out).all()


def test_distill_stage_trains_a_resumable_student_that_samples_in_one_step(trained, tmp_path, capsys):
    """``train --stage distill``: consistency distillation from models/model.pt (left as it was) to models/student.pt,
    resumable from its own checkpoints; the student then generates with the consistency sampler in 1 and 2 steps."""
    root, overrides = trained
    models = Path(overrides["train"]["bundle_root"]) / "models"
    teacher_bytes = (models / "model.pt").read_bytes()
    assert cli.main(["train", str(BUNDLE), "--stage", "distill", *cli_args(overrides["train"])]) == 0
    assert (models / "student.pt").is_file() and (models / "model.pt").read_bytes() == teacher_bytes
    first = [int(p.stem.split("=")[1]) for p in models.glob("student_checkpoint_final_iteration=*.pt")]
    args = {**overrides["train"], "epochs": 2}
    assert cli.main(["train", str(BUNDLE), "--stage", "distill", *cli_args(args)]) == 0
    finals = sorted(int(p.stem.split("=")[1]) for p in models.glob("student_checkpoint_final_iteration=*.pt"))
    assert first and finals[-1] == 2 * first[0]
    student = torch.load(models / "student.pt", map_location="cpu", weights_only=True)
    teacher = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert student.keys() == teacher.keys() and any(not torch.equal(student[k], teacher[k]) for k in student)
    for steps in (1, 2):
        out = root / f"png_student_{steps}"
        infer = {**overrides["infer"], "ckpt_path": str(models / "student.pt"), "sampler_name": "consistency",
                 "num_inference_steps": steps, "output_dir": str(out)}  # fmt: skip
        assert cli.main(["infer", str(BUNDLE), *cli_args(infer)]) == 0
        assert len(list((out / "images").glob("*.png"))) == 12
    fresh = {**overrides["train"], "bundle_root": str(tmp_path / "no_teacher")}
    message = cli_error(["train", str(BUNDLE), "--stage", "distill", *cli_args(fresh)], capsys)
    assert "model.pt" in message and "echo_seg_ddpm train" in message


def test_gpu_preset_generates_on_the_cpu_through_its_fallbacks(trained):
    """``--preset gpu`` (bf16, channels-last, compiled, static batch) on a CPU: float32 eager, the same images."""
    root, overrides = trained
    sizes = ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups",
             "spade_hidden_channels", "image_size", "num_train_timesteps")  # fmt: skip
    plain, fast = root / "png_plain", root / "png_gpu_preset"
    args = {**overrides["infer"], "sampler_name": "ddim", "batch_size": 5}  # 12 label maps: batches 5, 5, 2
    assert cli.main(["infer", str(BUNDLE), *cli_args({**args, "output_dir": str(plain)})]) == 0
    gpu = {**args, **{key: TINY[key] for key in sizes}, "preset": "gpu", "output_dir": str(fast)}
    assert cli.main(["infer", str(BUNDLE), *cli_args(gpu)]) == 0
    images = sorted((plain / "images").glob("*.png"))
    assert len(images) == 12
    from PIL import Image

    for path in images:
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(fast / "images" / path.name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, path.name  # float rounding of the padded, channels-last batches
