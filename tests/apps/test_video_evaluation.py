"""Evaluation of a synthetic video set: EF faithfulness, feature distances, utility, memorisation after the filter."""

from __future__ import annotations

import pytest
import torch

from echo_monai.apps.video_evaluation import (
    LatentEmbeddingEncoder,
    evaluate_video_generation,
    stack_videos,
    video_frames,
)
from echo_monai.data.latents import LatentScaler
from echo_monai.metrics import EjectionFractionEvaluator
from echo_monai.networks.nets import ReIdentificationNet


def _clips(efs, seed):
    """Clips whose brightness pulses with an amplitude that grows with EF: a learnable toy EF signal."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2 * torch.pi, 8)
    items = []
    for ef in efs:
        amplitude = ef / 100.0
        video = (amplitude * torch.sin(t)).reshape(1, 8, 1, 1).expand(1, 8, 16, 16).clone()
        video += 0.05 * torch.randn(video.shape, generator=g)
        items.append({"video": video.clamp(-1, 1), "ejection_fraction": float(ef)})
    return items


@pytest.fixture
def latent_encoder(make_autoencoder):
    autoencoder = make_autoencoder(seed=0)
    reid = ReIdentificationNet(in_channels=4, channels=(8,), embedding_dim=8, norm_num_groups=4)
    return LatentEmbeddingEncoder(autoencoder, LatentScaler(), reid)


def test_evaluation_sections(latent_encoder):
    real_train = _clips([20, 30, 40, 50, 60, 70, 80] * 2, 0)
    real_test = _clips([25, 45, 65, 75], 1)
    synthetic = _clips([30, 50, 70], 2)
    flagged_all = lambda latents: torch.zeros(latents.shape[0], dtype=torch.bool)  # noqa: E731
    evaluator = EjectionFractionEvaluator(block_inplanes=(4, 8, 8, 8), max_epochs=2, batch_size=4)
    result = evaluate_video_generation(
        evaluator,
        real_train,
        real_test,
        synthetic,
        image_encoders=[latent_encoder],
        frame_stride=4,
        memorisation=(latent_encoder, flagged_all),
    )
    m = result.metrics
    assert m["ef_faithfulness"]["num_videos"] == 3 and m["ef_faithfulness"]["mae"] >= 0
    assert m["ef_faithfulness"]["judge_mae_on_real_test"] == m["ef_regression"]["real"]["mae"]
    assert set(m["ef_regression"]) == {"real", "synthetic"}
    assert m["ef_regression"]["synthetic"]["num_train_samples"] == 3
    assert "FD_ef_regressor" in m["video_features"] and "FD_reid" in m["image_features"]
    assert m["privacy_after_filter"] == {
        "videos_audited": 3,
        "videos_flagged": 3,
        "memorisation_rate": 1.0,
        "frames_per_video": 2,
    }
    assert result.ef_requested == [30.0, 50.0, 70.0] and len(result.ef_measured) == 3
    assert result.real_samples.shape == (4, 1, 8, 16, 16)


def test_one_clip_per_set_skips_feature_distances_with_the_reason():
    evaluator = EjectionFractionEvaluator(block_inplanes=(4, 8, 8, 8), max_epochs=1, batch_size=2)
    result = evaluate_video_generation(evaluator, _clips([30, 60], 0), _clips([40], 1), _clips([50, 55], 2))
    assert "needs >= 2 real" in result.metrics["video_features"]["skipped"]


def test_helpers_and_errors():
    videos = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 1, 5, 1, 1).expand(2, 1, 5, 2, 2)
    frames = video_frames(videos, 2)
    assert frames.shape == (6, 1, 2, 2) and frames[:3, 0, 0, 0].tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="item 1 has a 'video' of shape"):
        stack_videos([{"video": torch.zeros(1, 4, 8, 8)}, {"video": torch.zeros(1, 3, 8, 8)}])
    evaluator = EjectionFractionEvaluator(block_inplanes=(4, 8, 8, 8), max_epochs=1)
    with pytest.raises(ValueError, match="synthetic is empty"):
        evaluate_video_generation(evaluator, _clips([30], 0), _clips([40], 1), [])
