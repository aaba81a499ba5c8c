"""Motion-transfer evaluation: optical flow, motion faithfulness, frame-to-frame SSIM, EF faithfulness, the report."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from echo_monai.apps.motion_video_evaluation import (
    dense_flow,
    ef_faithfulness,
    evaluate_motion_video,
    motion_faithfulness,
    temporal_consistency,
)
from echo_monai.metrics import EjectionFractionEvaluator
from echo_monai.transforms.label_map import fan_sector_mask

SIZE = 32


def _texture(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random texture `(size, size)` in [-0.8, 0.8]: something optical flow can track."""
    noise = np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 1.6 - 0.8


def _translated(seed: int, offsets: list[int]) -> torch.Tensor:
    """A `(1, 1, T, 32, 32)` window moving over a texture by `offsets[t]` pixels along W (content moves opposite)."""
    texture = _texture(seed)
    frames = [texture[8 : 8 + SIZE, 8 + o : 8 + o + SIZE] for o in offsets]
    return torch.from_numpy(np.stack(frames))[None, None]


def _beating(seed: int, kind: str, frames: int = 6) -> torch.Tensor:
    """`(1, T, 32, 32)` texture oscillating in scale (``zoom``) or angle (``turn``) about the centre, in a fan."""
    texture = _texture(seed, SIZE)
    phases = np.sin(np.linspace(0, 2 * np.pi, frames, endpoint=False))
    clip = []
    for phase in phases:
        angle, scale = (0.0, 1.0 + 0.08 * phase) if kind == "zoom" else (6.0 * phase, 1.0)
        matrix = cv2.getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2), angle, scale)
        clip.append(cv2.warpAffine(texture, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT))
    video = torch.from_numpy(np.stack(clip))[None]
    return torch.where(torch.from_numpy(fan_sector_mask(SIZE, SIZE, opening_deg=120.0)), video, -1.0)


OSCILLATION = [0, 1, 2, 1, 0, -1, -2, -1]


def test_dense_flow_measures_a_translation_in_pixels():
    video = _translated(0, [0, 1, 2])  # the window moves right: the content moves left by 1 px per frame
    for method in ("farneback", "dis"):
        flow = dense_flow(video, method=method)
        assert flow.shape == (1, 2, 2, SIZE, SIZE) and flow.dtype == torch.float32
        centre = flow[0, :, :, 8:24, 8:24].mean(dim=(-1, -2))
        assert torch.allclose(centre, torch.tensor([[-1.0, 0.0], [-1.0, 0.0]]), atol=0.2)


def test_a_video_against_itself_is_perfectly_faithful():
    video = _translated(1, OSCILLATION)
    scores = motion_faithfulness(video, video.clone())
    assert scores["flow_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert scores["flow_epe"] == pytest.approx(0.0, abs=1e-6)
    assert scores["motion_energy_driving"] == pytest.approx(scores["motion_energy_generated"])
    assert scores["motion_energy_driving"] > 0.5 and scores["num_videos"] == 1
    assert math.isnan(scores["flow_correlation_shuffled"])  # no other video to pair with


def test_same_motion_correlates_and_opposite_motion_anticorrelates():
    driving = _translated(2, OSCILLATION)
    same = _translated(3, OSCILLATION)  # another texture, the same motion
    opposite = _translated(4, [-o for o in OSCILLATION])
    agreeing = motion_faithfulness(driving, same)
    assert agreeing["flow_correlation"] > 0.8 and agreeing["flow_epe"] < 0.5
    opposing = motion_faithfulness(driving, opposite)
    assert opposing["flow_correlation"] < -0.5 and opposing["flow_epe"] > 1.0


def test_shuffled_pairs_give_the_chance_level_and_a_mask_restricts_the_pixels():
    driving = torch.stack([_beating(i, kind) for i, kind in enumerate(["zoom", "turn", "zoom", "turn"])])
    noise = 0.01 * torch.randn(driving.shape, generator=torch.Generator().manual_seed(0))
    scores = motion_faithfulness(driving, driving + noise)
    assert scores["flow_correlation"] > 0.8 and abs(scores["flow_correlation_shuffled"]) < 0.3
    assert scores["flow_correlation_standard_error"] >= 0
    # inside a mask of one column of pixels only, identical videos still agree
    column = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    column[20:28, 16] = True
    assert motion_faithfulness(driving, driving, mask=column)["flow_correlation"] == pytest.approx(1.0, abs=1e-6)


def test_motion_faithfulness_errors():
    video = _translated(0, [0, 1, 2])
    with pytest.raises(ValueError, match="generated must have the shape of driving"):
        motion_faithfulness(video, video[:, :, :2])
    with pytest.raises(ValueError, match=r"driving must be a \(N, 1, T, H, W\) tensor"):
        motion_faithfulness(video[0], video)
    with pytest.raises(ValueError, match="driving needs N >= 1 videos of T >= 2"):
        motion_faithfulness(video[:, :, :1], video[:, :, :1])
    with pytest.raises(ValueError, match="mask must be"):
        motion_faithfulness(video, video, mask=torch.ones(SIZE, SIZE + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="method must be one of"):
        dense_flow(video, method="horn_schunck")
    with pytest.raises(ValueError, match="OpenCV's 'dis' flow failed on frames of"):
        dense_flow(video[..., :6, :6], method="dis")


def test_temporal_consistency_of_a_still_video_and_of_noise():
    frame = torch.from_numpy(_texture(5, SIZE))
    still = frame.expand(2, 1, 5, SIZE, SIZE)
    assert temporal_consistency(still) == pytest.approx(
        {"frame_ssim_mean": 1.0, "frame_ssim_min": 1.0, "num_videos": 2}
    )
    noise = torch.rand(2, 1, 5, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = temporal_consistency(noise)
    assert abs(scores["frame_ssim_mean"]) < 0.1 and scores["frame_ssim_min"] <= scores["frame_ssim_mean"]
    with pytest.raises(ValueError, match="win_size must be >= 1"):
        temporal_consistency(still, win_size=0)
    with pytest.raises(ValueError, match=r"videos must be a \(N, 1, T, H, W\) tensor"):
        temporal_consistency(still[:, 0])


def test_ef_faithfulness_against_its_formulas():
    driving, generated = [40.0, 50.0, 60.0, 70.0], [42.0, 49.0, 63.0, 70.0]
    scores = ef_faithfulness(torch.tensor(driving), generated)
    errors = np.subtract(generated, driving)
    assert scores["mae"] == pytest.approx(np.abs(errors).mean()) and scores["bias"] == pytest.approx(errors.mean())
    assert scores["rmse"] == pytest.approx(np.sqrt((errors**2).mean()))
    assert scores["r2"] == pytest.approx(1 - (errors**2).sum() / ((np.array(driving) - 55.0) ** 2).sum())
    assert scores["pearson_r"] == pytest.approx(np.corrcoef(driving, generated)[0, 1]) and scores["num_videos"] == 4
    with pytest.raises(ValueError, match="the same N >= 1 values"):
        ef_faithfulness([40.0, 50.0], [40.0])
    with pytest.raises(ValueError, match="must be finite"):
        ef_faithfulness([40.0, float("nan")], [40.0, 50.0])


# --------------------------------------------------------------------------------------------- end to end
def _driving(count: int = 4) -> list[dict]:
    kinds = ["zoom", "turn"] * count
    return [{"video": _beating(10 + i, kinds[i]), "ejection_fraction": 40.0 + 5 * i} for i in range(count)]


def _noisy_copy(reference_frames, driving_videos, seed, ejection_fraction):
    generator = torch.Generator().manual_seed(seed)
    return (driving_videos + 0.02 * torch.randn(driving_videos.shape, generator=generator)).clamp(-1, 1)


def _still(reference_frames, driving_videos, seed, ejection_fraction):
    return reference_frames[:, :, None].expand(-1, -1, driving_videos.shape[2], -1, -1).clone()


def test_end_to_end_scores_a_faithful_and_a_still_model_side_by_side(tmp_path):
    driving = _driving()
    judge = EjectionFractionEvaluator(block_inplanes=(4, 4, 4, 4), max_epochs=1, batch_size=4)
    metrics = evaluate_motion_video(
        _noisy_copy,
        driving,
        None,
        tmp_path / "report",
        ef_evaluator=judge,
        real_train=_driving(4),
        extra_models={"still": _still},
        privacy_gate=lambda videos: videos[:, 0, 0, 0, 0] < 0.5,  # any keep-mask callable
    )
    assert set(metrics["privacy"]) == {"real_driving", "model", "still"}
    assert 0.0 <= metrics["privacy"]["model"]["gated_rate"] <= 1.0 and metrics["privacy"]["still"]["videos"] == 4
    motion = metrics["motion_faithfulness"]
    assert motion["model"]["flow_correlation"] > 0.8 and abs(motion["still"]["flow_correlation"]) < 0.2
    assert motion["still"]["motion_energy_generated"] < 0.1 < motion["model"]["motion_energy_generated"]
    consistency = metrics["temporal_consistency"]
    assert set(consistency) == {"real_driving", "model", "still"}
    assert consistency["still"]["frame_ssim_mean"] == pytest.approx(1.0)
    assert set(metrics["ef_faithfulness"]) == {"model", "still"}
    assert metrics["ef_faithfulness"]["model"]["num_videos"] == 4
    assert metrics["judge"]["trained_here"] and metrics["judge"]["labelled_driving_videos"] == 4
    assert "FD_ef_regressor" in metrics["video_features"]["still"]
    assert metrics["data"]["models"] == ["model", "still"] and "reconstruction" in metrics["data"]["references"]

    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written["motion_faithfulness"]["model"]["flow_correlation"] == pytest.approx(
        motion["model"]["flow_correlation"]
    )
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.startswith("# echo_motion_video evaluation") and "| still |" in report
    assert "flow_correlation_shuffled" in report


def test_references_are_animated_instead_of_the_first_frames(tmp_path):
    driving = _driving(2)
    references = [{"image": torch.full((1, SIZE, SIZE), 0.5)}, {"image": torch.full((1, SIZE, SIZE), -0.5)}]
    seen = {}

    def model(reference_frames, driving_videos, seed, ejection_fraction):
        seen["references"], seen["seed"], seen["ef"] = reference_frames, seed, ejection_fraction
        return driving_videos

    metrics = evaluate_motion_video(model, driving, references, tmp_path, seed=7)
    assert torch.equal(seen["references"][:, 0, 0, 0], torch.tensor([0.5, -0.5])) and seen["seed"] == 7
    assert torch.equal(seen["ef"], torch.tensor([40.0, 45.0], dtype=torch.float64))  # the driving clips' labels
    assert "cross-patient" in metrics["data"]["references"] and "ef_faithfulness" not in metrics
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "report.md").is_file()


def test_evaluate_motion_video_errors(tmp_path):
    driving = _driving(2)
    with pytest.raises(ValueError, match="driving must be a non-empty sequence"):
        evaluate_motion_video(_still, [], None, tmp_path)
    with pytest.raises(ValueError, match=r"driving\[1\]\['video'\] must be"):
        evaluate_motion_video(_still, [driving[0], {"video": torch.zeros(1, 6, 16, 16)}], None, tmp_path)
    with pytest.raises(ValueError, match="references must hold 2 images"):
        evaluate_motion_video(_still, driving, [{"image": torch.zeros(1, SIZE, SIZE)}], tmp_path)
    with pytest.raises(ValueError, match="frame_stride must be >= 1"):
        evaluate_motion_video(_still, driving, None, tmp_path, frame_stride=0)
    with pytest.raises(ValueError, match="extra_models names"):
        evaluate_motion_video(_still, driving, None, tmp_path, extra_models={"model": _still})
    with pytest.raises(ValueError, match="pass ef_evaluator too"):
        evaluate_motion_video(_still, driving, None, tmp_path, real_train=driving)
    with pytest.raises(ValueError, match=r"extra_models\['half'\] must return videos"):
        evaluate_motion_video(_still, driving, None, tmp_path, extra_models={"half": lambda r, d, s, e: d[:, :, :3]})
    with pytest.raises(ValueError, match="encoder_factory must return a FeatureEncoder"):
        evaluate_motion_video(_still, driving, None, tmp_path, encoder_factory=lambda: "i3d")
    assert not (tmp_path / "metrics.json").exists()
