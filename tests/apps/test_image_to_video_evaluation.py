"""Image-to-video evaluation (LDDM protocol): continuation metrics, the utility study with baselines, the report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from echo_monai.apps.image_to_video_evaluation import (
    continuation_metrics,
    evaluate_image_to_video,
    study_table,
    video_classification_study,
)
from echo_monai.metrics import FeatureEncoder, InputKind, PerceptualDistance
from echo_monai.transforms import still_video

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"max_epochs": 1, "batch_size": 4, "block_inplanes": (4, 8, 8, 8)}


class FrameMeans(FeatureEncoder):
    """Per-frame mean intensity `(N, T)`; records the clip lengths it was given."""

    name, input_kind = "frame_means", InputKind.VIDEO

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.lengths.append(x.shape[2])
        return x.mean(dim=(1, 3, 4)).float()


def _clips(labels, seed, frames=4, size=16):
    """Noisy clips whose brightness gives the class (bright = 1) and with a bright square drifting right."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for label in labels:
        video = torch.full((1, frames, size, size), 0.4 if label else -0.4)
        for t in range(frames):
            video[:, t, 4:9, 2 + 2 * t : 7 + 2 * t] += 0.5
        video = (video + 0.1 * torch.randn(video.shape, generator=g)).clamp(-1, 1)
        items.append({"video": video, "label": int(label)})
    return items


def _still_animate(noise=0.05):
    """A fake model: the first frame repeated, plus seeded noise per sample."""

    def animate(first_frames, samples, seed):
        g = torch.Generator().manual_seed(seed)
        videos = torch.stack([still_video(f, 4) for f in first_frames])[:, None].repeat(1, samples, 1, 1, 1, 1)
        videos[:, :, :, 1:] += noise * torch.randn(videos[:, :, :, 1:].shape, generator=g)
        return videos.clamp(-1, 1)

    return animate


# --------------------------------------------------------------------------------------------- continuation
def test_identical_generation_scores_perfectly():
    real = torch.stack([c["video"] for c in _clips([0, 1, 0, 1], seed=0)])
    generated = real[:, None].repeat(1, 2, 1, 1, 1, 1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    metrics = continuation_metrics(real, generated, perceptual=PerceptualDistance(net, ["0"]))
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["psnr"] > 60
    assert metrics["lpips_style"] == pytest.approx(0.0, abs=1e-6)
    features = continuation_metrics(real, real[:, None], encoder=FrameMeans())  # K = 1: the same set of features
    assert features["FD_frame_means"] == pytest.approx(0.0, abs=1e-6)
    assert features["DT_FD_frame_means"] == pytest.approx(0.0, abs=1e-6)
    assert "DT_KD_frame_means" in features and "diversity_frame_means" in features
    assert metrics["diversity_ms_ssim"] == pytest.approx(1.0, abs=1e-4)  # the two samples are the same
    assert metrics["motion_energy_generated"] == pytest.approx(metrics["motion_energy_real"])
    assert metrics["motion_energy_real"] > 0.1


def test_still_video_has_no_motion_and_lower_ssim():
    real = torch.stack([c["video"] for c in _clips([0, 1, 1], seed=1)])
    generated = torch.stack([still_video(clip[:, 0], 4) for clip in real])[:, None]  # K = 1
    metrics = continuation_metrics(real, generated)
    assert metrics["motion_energy_generated"] == 0.0 and metrics["motion_energy_real"] > 0.1
    assert metrics["ssim"] < 0.95
    assert "diversity_ms_ssim" not in metrics and not any(key.startswith("FD_") for key in metrics)  # K = 1, no encoder


def test_dynamics_clips_are_differences_padded_on_request():
    real = torch.stack([c["video"] for c in _clips([0, 1, 0], seed=2)])
    generated = real[:, None] + 0.01
    encoder = FrameMeans()
    continuation_metrics(real, generated, encoder=encoder)
    assert encoder.lengths == [4, 4, 3, 3]  # appearance clips, then their frame differences
    encoder.lengths.clear()
    continuation_metrics(real, generated, encoder=encoder, pad_dynamics=True)
    assert encoder.lengths == [4, 4, 4, 4]


@pytest.mark.parametrize(
    "real, generated, match",
    [
        (torch.zeros(2, 1, 4, 16, 16)[0], torch.zeros(2, 1, 1, 4, 16, 16), r"real must be a \(N, C, T, H, W\)"),
        (torch.zeros(2, 1, 4, 16, 16), torch.zeros(2, 1, 4, 16, 16), r"generated must be a \(N, K, C, T, H, W\)"),
        (torch.zeros(2, 1, 4, 16, 16), torch.zeros(3, 1, 1, 4, 16, 16), "generated must be .* of real"),
        (torch.zeros(2, 1, 4, 16, 16), torch.zeros(2, 1, 1, 4, 8, 8), "generated must be .* of real"),
        (torch.zeros(2, 1, 1, 16, 16), torch.zeros(2, 1, 1, 1, 16, 16), "T >= 2"),
    ],
)
def test_continuation_rejects_bad_shapes(real, generated, match):
    with pytest.raises(ValueError, match=match):
        continuation_metrics(real, generated)


# --------------------------------------------------------------------------------------------- utility study
def test_study_keys_counts_and_determinism():
    train, test = _clips([0, 1] * 4, seed=3), _clips([0, 1] * 2, seed=4)
    extra = {"synthetic": _clips([1, 0, 1, 0], seed=5)}
    study = video_classification_study(train, test, extra, fractions=(0.5, 1.0), seeds=(0, 1), evaluator_kwargs=TINY)
    assert study["mixes"] == ["real", "real+synthetic"] and study["seeds"] == [0, 1] and study["num_test_videos"] == 4
    assert set(study["fractions"]) == {"0.5", "1"}
    half = study["fractions"]["0.5"]
    assert half["real"]["num_train_videos"] == 4 and half["real+synthetic"]["num_train_videos"] == 8
    assert study["fractions"]["1"]["real+synthetic"]["num_train_videos"] == 12
    for row in half.values():
        assert {"accuracy", "f1", "auc", "runs", "num_real_videos"} <= set(row) and row["num_real_videos"] == 4
        assert row["accuracy"]["runs"] == 2 and len(row["runs"]["auc"]) == 2
        assert 0.0 <= row["accuracy"]["mean"] <= 1.0
    delta = half["real+synthetic"]["delta_vs_real"]["accuracy"]
    runs = half["real+synthetic"]["runs"]["accuracy"], half["real"]["runs"]["accuracy"]
    assert delta["mean"] == pytest.approx(sum(a - b for a, b in zip(*runs, strict=True)) / 2)
    # a run depends only on its seed and fraction: rerun seed 1 alone and get its numbers back
    again = video_classification_study(train, test, extra, fractions=(0.5,), seeds=(1,), evaluator_kwargs=TINY)
    for mix in ("real", "real+synthetic"):
        assert again["fractions"]["0.5"][mix]["runs"]["f1"] == [half[mix]["runs"]["f1"][1]]
        assert again["fractions"]["0.5"][mix]["runs"]["auc"] == [half[mix]["runs"]["auc"][1]]


def test_study_table_renders_every_row():
    summary = {"mean": 0.75, "standard_error": 0.05, "low": 0.7, "high": 0.8, "runs": 2}
    nan = {"mean": math.nan, "standard_error": math.nan, "low": math.nan, "high": math.nan, "runs": 0}
    row = {"num_train_videos": 4, "accuracy": summary, "f1": summary, "auc": nan}
    result = {
        "fractions": {"0.5": {"real": row, "real+still": {**row, "delta_vs_real": {k: summary for k in row}}}},
        "seeds": [0, 1],
    }
    text = study_table(result)
    lines = text.splitlines()
    assert lines[0].startswith("| real fraction | mix | videos | accuracy | F1 | AUC | Δ accuracy")
    assert lines[2] == "| 0.5 | real | 4 | 0.750 ± 0.050 | 0.750 ± 0.050 | n/a | — | — | — |"
    assert lines[3].startswith("| 0.5 | real+still | 4 | 0.750 ± 0.050") and "+0.750 ± 0.050" in lines[3]
    with pytest.raises(ValueError, match="result must be the dict"):
        study_table({})


@pytest.mark.parametrize(
    "change, match",
    [
        ({"real_train": _clips([1, 1, 1], seed=0)}, "real_train must hold videos of both classes"),
        ({"real_test": []}, "real_test must be a non-empty"),
        ({"augmentations": {"real": _clips([0, 1], seed=0)}}, "not 'real'"),
        ({"augmentations": {"x": _clips([0, 1], seed=0, size=8)}}, r"augmentations\['x'\] clips must have the shape"),
        ({"fractions": (0.0,)}, r"fractions must be .* in \(0, 1\]"),
        ({"seeds": ()}, "seeds must hold at least one"),
        ({"real_train": [{"video": torch.zeros(1, 4, 16, 16), "label": 2}] * 2}, r"real_train\[0\]\['label'\]"),
    ],
)
def test_study_rejects_bad_input(change, match):
    arguments = {"real_train": _clips([0, 1], seed=0), "real_test": _clips([0, 1], seed=1), "augmentations": {}}
    with pytest.raises(ValueError, match=match):
        video_classification_study(**{**arguments, **change})


# --------------------------------------------------------------------------------------------- entry point
def _images(labels, seed):
    return [{"image": clip["video"][:, 0], "label": clip["label"]} for clip in _clips(labels, seed)]


def test_evaluate_end_to_end_writes_the_report(tmp_path):
    metrics = evaluate_image_to_video(
        _still_animate(),
        held_out=_clips([0, 1, 0, 1], seed=6),
        real_train=_clips([0, 1] * 4, seed=7),
        synthetic=_clips([0, 1, 1, 0], seed=8),
        images=_images([0, 1], seed=9),
        report_dir=tmp_path,
        samples_per_image=2,
        num_frames=4,
        fractions=(1.0,),
        seeds=(0,),
        evaluator_kwargs=TINY,
    )
    continuation = metrics["continuation"]
    assert {"ssim", "psnr", "lpips_style", "FD_video_classifier", "DT_FD_video_classifier"} <= set(continuation)
    assert {"diversity_ms_ssim", "motion_energy_real", "motion_energy_generated"} <= set(continuation)
    assert continuation["motion_energy_generated"] < continuation["motion_energy_real"]
    assert set(metrics["judges"]) == {"video_classifier_on_held_out", "image_classifier_on_held_out_frames"}
    rows = metrics["classification"]["fractions"]["1"]
    assert list(rows) == ["real", "real+synthetic", "real+still", "real+jitter"]
    assert {row["num_train_videos"] for name, row in rows.items() if name != "real"} == {12}  # equal-size baselines
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"]["synthetic_videos"] == 4 and "DT_FD_video_classifier" in saved["continuation"]
    report = (tmp_path / "report.md").read_text()
    assert "| 1 | real+jitter | 12 |" in report and "samples_held_out_vs_generated.png" in report
    assert (tmp_path / "samples_held_out_vs_generated.png").stat().st_size > 0
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"real_train": _clips([0, 0, 0], seed=0)}, "real_train must hold videos of both classes"),
        ({"synthetic": []}, "synthetic must be a non-empty"),
        ({"images": []}, "images must be a non-empty"),
        ({"synthetic": _clips([0, 1], seed=0, size=8)}, "synthetic clips must have the shape of the held_out"),
        ({"images": _images([0], seed=0) + [{"image": torch.zeros(1, 8, 8), "label": 1}]}, r"images must be \(1, 16"),
        ({"num_frames": 8}, "num_frames must equal the clips' T = 4"),
        ({"animate": lambda frames, samples, seed: torch.zeros(len(frames), samples, 1, 4, 8, 8)}, "animate must"),
    ],
)
def test_evaluate_rejects_bad_input(tmp_path, change, match):
    arguments = {
        "animate": _still_animate(),
        "held_out": _clips([0, 1], seed=1),
        "real_train": _clips([0, 1], seed=2),
        "synthetic": _clips([0, 1], seed=3),
        "images": _images([0, 1], seed=4),
        "report_dir": tmp_path,
        "num_frames": 4,
        "encoder_factory": FrameMeans,  # no judge is trained before the checks of animate's output
        "perceptual_layers": None,
    }
    with pytest.raises(ValueError, match=match):
        evaluate_image_to_video(**{**arguments, **change})
    assert not (tmp_path / "metrics.json").exists()
