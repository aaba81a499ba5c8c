"""MAFE training pieces: the triplet PrepareBatch, each MAFELoss term against its formula, a falling SupervisedTrainer
run, and one test per raise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer

from echo_monai.engines import FrameTripletPrepareBatch, MAFELoss
from echo_monai.networks.nets import MotionAppearanceFeatureExtractor, ReIdentificationNet
from echo_monai.transforms import PseudoFlowd

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def reid() -> ReIdentificationNet:
    torch.manual_seed(1)
    return ReIdentificationNet(in_channels=1, channels=(8, 16), embedding_dim=6, norm_num_groups=8)


def _batch(b: int = 3, size: int = 8) -> dict[str, torch.Tensor]:
    return {
        "frame_a": torch.rand(b, 1, size, size),
        "frame_mid": torch.rand(b, 1, size, size),
        "frame_b": torch.rand(b, 1, size, size),
        "pseudo_flow": torch.randn(b, 2, size, size),
        "sector": (torch.rand(b, 1, size, size) > 0.5).to(torch.uint8),
    }


def _pred(b: int = 3, size: int = 8, dim: int = 6) -> dict[str, torch.Tensor]:
    return {
        "middle": torch.rand(b, 1, size, size),
        "flow": torch.randn(b, 2, size, size),
        "appearance": F.normalize(torch.randn(b, dim), dim=1),
    }


def test_prepare_batch_places_the_pair_and_every_target():
    batch = _batch()
    inputs, targets, args, kwargs = FrameTripletPrepareBatch(mask_key="sector")(batch, torch.device("cpu"))
    assert inputs.shape == (3, 2, 8, 8) and torch.equal(inputs[:, :1], batch["frame_a"])
    assert torch.equal(inputs[:, 1:], batch["frame_b"]) and args == () and kwargs == {}
    assert set(targets) == {"middle", "frame_a", "flow", "mask"} and targets["mask"].dtype == torch.float32
    assert torch.equal(targets["middle"], batch["frame_mid"]) and torch.equal(targets["flow"], batch["pseudo_flow"])
    _, targets, _, _ = FrameTripletPrepareBatch(flow_key=None)(batch)
    assert set(targets) == {"middle", "frame_a"}


def test_prepare_batch_errors():
    batch = _batch()
    del batch["pseudo_flow"]
    with pytest.raises(KeyError, match=r"'pseudo_flow' is missing \(made by echo_monai.transforms.PseudoFlowd\)"):
        FrameTripletPrepareBatch()(batch)
    with pytest.raises(KeyError, match=r"'frame_mid' is missing \(made by echo_monai.transforms.FrameTripletd\)"):
        FrameTripletPrepareBatch(flow_key=None)({"frame_a": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(KeyError, match=r"'lv_mask' is missing \(made by a mask transform"):
        FrameTripletPrepareBatch(flow_key=None, mask_key="lv_mask")(_batch())
    with pytest.raises(TypeError, match="expected a dict batch, got Tensor"):
        FrameTripletPrepareBatch()(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="frame_keys must name 3 keys"):
        FrameTripletPrepareBatch(frame_keys=("a", "b"))


def test_each_term_matches_an_independent_computation(reid):
    pred = _pred()
    _, targets, _, _ = FrameTripletPrepareBatch(mask_key="sector")(_batch())
    loss = MAFELoss(reconstruction_weight=2.0, reid_weight=0.5, flow_weight=0.25, reid_network=reid)
    total = loss(pred, targets)

    reconstruction = (pred["middle"] - targets["middle"]).abs().mean()
    embedding = reid(targets["frame_a"])
    cosines = [torch.dot(p, e) / (p.norm() * e.norm()) for p, e in zip(pred["appearance"], embedding, strict=True)]
    reid_term = (1 - torch.stack(cosines)).mean()
    diff = pred["flow"] - targets["flow"]
    epe = (diff[:, 0] ** 2 + diff[:, 1] ** 2).sqrt()
    mask = targets["mask"][:, 0].bool()
    flow_term = epe[mask].mean()
    expected = {"reconstruction": reconstruction, "reid": reid_term, "flow": flow_term}
    for name, value in expected.items():
        assert loss.terms[name] == pytest.approx(float(value), rel=1e-5)
    assert float(total) == pytest.approx(float(2 * reconstruction + 0.5 * reid_term + 0.25 * flow_term), rel=1e-5)
    assert loss.terms["loss"] == pytest.approx(float(total))

    del targets["mask"]
    unmasked = MAFELoss(reconstruction_weight=0.0, reid_weight=0.0, flow_weight=1.0)
    assert float(unmasked(pred, targets)) == pytest.approx(float(epe.mean()), rel=1e-5)
    assert set(unmasked.terms) == {"flow", "loss"}


def test_reid_network_is_frozen_and_gradients_reach_the_prediction(reid):
    loss = MAFELoss(reid_network=reid)
    loss.train()
    assert not reid.training and not any(p.requires_grad for p in reid.parameters())
    pred = _pred()
    pred["appearance"].requires_grad_(True)
    _, targets, _, _ = FrameTripletPrepareBatch()(_batch())
    loss(pred, targets).backward()
    assert pred["appearance"].grad is not None and all(p.grad is None for p in reid.parameters())


def test_loss_errors(reid):
    with pytest.raises(ValueError, match=r"reid_weight = 0.1 needs a reid_network"):
        MAFELoss()
    with pytest.raises(ValueError, match=r"flow_weight must be >= 0, got -1"):
        MAFELoss(reid_weight=0, flow_weight=-1)
    with pytest.raises(ValueError, match="at least one weight must be > 0"):
        MAFELoss(reconstruction_weight=0, reid_weight=0, flow_weight=0)
    _, targets, _, _ = FrameTripletPrepareBatch(flow_key=None)(_batch())
    with pytest.raises(KeyError, match=r"flow_weight = 0.1 but the targets have no 'flow'"):
        MAFELoss(reid_weight=0)(_pred(), targets)
    with pytest.raises(ValueError, match=r"appearance_dim to the re-ID embedding_dim"):
        MAFELoss(flow_weight=0, reid_network=reid)(_pred(dim=4), targets)
    with pytest.raises(KeyError, match=r"pred\['middle'\] is missing \(made by MotionAppearanceFeatureExtractor\)"):
        MAFELoss(reid_weight=0, flow_weight=0)({}, targets)
    with pytest.raises(KeyError, match=r"targets\['frame_a'\] is missing"):
        MAFELoss(reconstruction_weight=0, flow_weight=0, reid_network=reid)(_pred(), {"middle": targets["middle"]})
    with pytest.raises(ValueError, match=r"pred\['middle'\] \(3, 1, 8, 8\) and targets\['middle'\] \(3, 1, 4, 4\)"):
        MAFELoss(reid_weight=0, flow_weight=0)(_pred(), {"middle": torch.zeros(3, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"must both be \(B, 2, H, W\)"):
        MAFELoss(reid_weight=0)(_pred(), {**targets, "flow": torch.zeros(3, 2, 4, 4)})
    with pytest.raises(ValueError, match=r"targets\['mask'\] \(3, 8, 8\) must be \(B, 1, H, W\)"):
        MAFELoss(reid_weight=0)(_pred(), {**targets, "flow": torch.zeros(3, 2, 8, 8), "mask": torch.ones(3, 8, 8)})
    with pytest.raises(ValueError, match="reid_term needs a reid_network"):
        MAFELoss(reid_weight=0).reid_term(_pred(), targets)


def _smooth_triplets(n: int, size: int = 16, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random smooth frames a, b (bilinear 4x4 noise) in [-1, 1], the middle frame their average, with pseudo flow."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 2, 4, 4, generator=g) * 2 - 1
    frames = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    flow = PseudoFlowd()
    return [flow({"frame_a": f[:1], "frame_mid": f.mean(0, keepdim=True), "frame_b": f[1:]}) for f in frames]


def test_seeded_supervised_trainer_run_lowers_the_loss(reid):
    torch.manual_seed(0)
    net = MotionAppearanceFeatureExtractor(channels=(8, 16), motion_dim=8, appearance_dim=6, norm_num_groups=8)
    loader = DataLoader(Dataset(_smooth_triplets(16)), batch_size=4, shuffle=False)
    loss_function = MAFELoss(reid_weight=0.1, flow_weight=0.1, reid_network=reid)
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=5,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 3e-3),
        loss_function=loss_function,
        inferer=SimpleInferer(),
        prepare_batch=FrameTripletPrepareBatch(),
        decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert len(losses) == 20 and set(loss_function.terms) == {"reconstruction", "reid", "flow", "loss"}
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
