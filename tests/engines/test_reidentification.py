"""Contrastive re-identification through MONAI's SupervisedTrainer, then the privacy filter on its embeddings."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer

from echo_monai.engines.reidentification import ContrastivePairPrepareBatch, PairContrastiveLoss
from echo_monai.metrics import privacy_filter
from echo_monai.networks.nets.reidentification import ReIdentificationNet
from echo_monai.transforms import PairedFramesd


def _videos(n: int, seed: int) -> torch.Tensor:
    """n 'patients': each a fixed random pattern (2, 8, 8), seen over 6 frames with small frame-to-frame noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(n, 2, 1, 8, 8, generator=g)
    return patterns + 0.1 * torch.randn(n, 2, 6, 8, 8, generator=g)


def test_paired_frames_are_distinct_frames():
    video = torch.arange(5.0).reshape(1, 5, 1, 1).expand(2, 5, 3, 3)
    transform = PairedFramesd("latent", min_gap=2)
    transform.set_random_state(0)
    for _ in range(10):
        d = transform({"latent": video})
        assert d["view_a"].shape == (2, 3, 3) and abs(float(d["view_a"][0, 0, 0] - d["view_b"][0, 0, 0])) >= 2
    with pytest.raises(ValueError, match="no two frames"):
        PairedFramesd("latent", min_gap=5)({"latent": video})
    with pytest.raises(ValueError, match=r"must be a video \(C, T, H, W\)"):
        PairedFramesd("latent")({"latent": torch.zeros(2, 3, 3)})
    with pytest.raises(ValueError, match="min_gap"):
        PairedFramesd("latent", min_gap=0)


def test_contrastive_training_separates_patients_and_filter_drops_copies():
    torch.manual_seed(0)
    videos = _videos(24, seed=1)
    transform = PairedFramesd("latent")
    transform.set_random_state(0)
    loader = DataLoader(Dataset([{"latent": v} for v in videos], transform), batch_size=8, shuffle=True)
    net = ReIdentificationNet(in_channels=2, channels=(8, 16), embedding_dim=16, norm_num_groups=4)
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=12,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 3e-3),
        loss_function=PairContrastiveLoss(0.2),
        inferer=SimpleInferer(),
        prepare_batch=ContrastivePairPrepareBatch(),
        decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert sum(losses[-6:]) / 6 < 0.7 * sum(losses[:3]) / 3

    train_frames, held_out = videos[:, :, 0], _videos(12, seed=2)[:, :, 0]
    copies = videos[:4, :, 3]  # other frames of training patients: re-identified
    fresh = _videos(8, seed=3)[:, :, 0]  # new patients: kept
    keep, report = privacy_filter(torch.cat([copies, fresh]), train_frames, held_out, net)
    assert not keep[:4].any() and keep[4:].float().mean() >= 0.75
    assert report["memorised_count"] == int((~keep).sum()) and net.training


def test_prepare_batch_and_loss_errors():
    with pytest.raises(KeyError, match="add echo_monai.transforms.PairedFramesd"):
        ContrastivePairPrepareBatch()({"latent": torch.zeros(2, 1, 4, 4)})
    with pytest.raises(ValueError, match="even batch"):
        PairContrastiveLoss()(torch.randn(3, 4))
    inputs, _ = ContrastivePairPrepareBatch()({"view_a": torch.zeros(2, 1, 4, 4), "view_b": torch.ones(2, 1, 4, 4)})
    assert inputs.shape == (4, 1, 4, 4) and inputs[2:].eq(1).all()
