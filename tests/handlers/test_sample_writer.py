from __future__ import annotations

import cv2
import pytest
import torch
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator

from echo_monai.data import CAMUS
from echo_monai.engines import first_batch
from echo_monai.handlers import StageCheckpointLoader, SyntheticSampleWriter


def _batch(n=2):
    indices = torch.randint(0, 5, (n, 8, 8))
    one_hot = torch.nn.functional.one_hot(indices, 5).permute(0, 3, 1, 2).float()
    return {
        "label_map": one_hot,
        "name": [f"patient000{i}_2CH_ED" for i in range(n)],
        "copy": torch.arange(n),
        "patient": [f"patient000{i}" for i in range(n)],
        "view": ["2CH"] * n,
        "phase": ["ED"] * n,
    }, indices


def test_png_layout(tmp_path):
    batch, indices = _batch()
    writer = SyntheticSampleWriter(tmp_path, layout="png")
    writer.write_batch(batch, torch.ones(2, 1, 8, 8))
    label = cv2.imread(str(tmp_path / "labels" / "patient0001_2CH_ED_c01.png"), cv2.IMREAD_UNCHANGED)
    image = cv2.imread(str(tmp_path / "images" / "patient0001_2CH_ED_c01.png"), cv2.IMREAD_UNCHANGED)
    assert (label == (indices[1] - 1).clamp(min=0).numpy()).all() and (image == 255).all()


def test_camus_layout_reads_back_and_pending(tmp_path):
    batch, indices = _batch()
    writer = SyntheticSampleWriter(tmp_path, layout="camus")
    items = [
        {k: (v[i].item() if torch.is_tensor(v) else v[i]) for k, v in batch.items() if k != "label_map"}
        for i in range(2)
    ]
    assert writer.pending(items) == items
    writer.write_batch(batch, torch.zeros(2, 1, 8, 8))
    assert writer.pending(items) == []
    data = CAMUS(tmp_path, views=("2CH",), phases=("ED",))
    assert len(data) == 2 and data[0]["patient"] == "patient0000c00"
    assert torch.equal(data[1]["label"][0].long(), (indices[1] - 1).clamp(min=0))
    (tmp_path / "database_nifti" / "patient0001c01" / "patient0001c01_2CH_ED.nii.gz").unlink()
    assert writer.pending(items) == [items[1]]


def test_writer_as_engine_handler(tmp_path):
    batch, _ = _batch(1)
    engine = Engine(lambda e, b: {"pred": torch.zeros(1, 1, 8, 8)})
    SyntheticSampleWriter(tmp_path).attach(engine)
    engine.run([batch], max_epochs=1)
    assert (tmp_path / "images" / "patient0000_2CH_ED_c00.png").is_file()
    with pytest.raises(ValueError, match="layout"):
        SyntheticSampleWriter(tmp_path, layout="avi")


def _evaluator(network):
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[{"image": torch.zeros(1, 2)}], network=network
    )


def test_stage_checkpoint_loader_errors(tmp_path):
    net = torch.nn.Linear(2, 2)
    missing = StageCheckpointLoader(str(tmp_path / "model.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(FileNotFoundError, match="run the my_bundle train stage first"):
        missing(_evaluator(net))
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, tmp_path / "other.pt")
    other = StageCheckpointLoader(str(tmp_path / "other.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(ValueError, match="does not fit the network"):
        other(_evaluator(net))
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "good.pt")
    StageCheckpointLoader(str(tmp_path / "good.pt"), {"model": net})(_evaluator(net))


def test_first_batch():
    data = [{"x": torch.tensor([float(i)])} for i in range(5)]
    assert first_batch(data, 3)["x"].shape == (3, 1) and first_batch(data, 9)["x"].shape == (5, 1)
    with pytest.raises(ValueError, match="empty"):
        first_batch([], 2)
    with pytest.raises(ValueError, match="size"):
        first_batch(data, 0)
