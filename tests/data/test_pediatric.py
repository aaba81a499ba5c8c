from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from echo_monai.data import EchoNetPediatric, InvalidItemError, MissingFilesError
from echo_monai.data.video_io import write_video

SIZE, FRAMES = 32, 10


def _circle(cx: float, cy: float, radius: float, n: int = 24) -> list[tuple[float, float]]:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]


def _make_pediatric(root: Path, view: str = "PSAX", folds=(0, 3, 8, 9), es_frame: int = 7) -> Path:
    rng = np.random.default_rng(1)
    folder = root / view
    (folder / "Videos").mkdir(parents=True)
    with open(folder / "FileList.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"])
        for i, fold in enumerate(folds):
            write_video(folder / "Videos" / f"P{i}.avi", rng.integers(0, 255, (FRAMES, SIZE, SIZE), np.uint8), 30)
            writer.writerow([f"P{i}.avi", 60.0 + i, "F", 4.5, "", 105, fold])
    with open(folder / "VolumeTracings.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "X", "Y", "Frame"])
        for i in range(len(folds)):
            for frame, radius in ((1, 9.0), (es_frame, 5.0)):
                for x, y in _circle(16, 16, radius):
                    writer.writerow([f"P{i}.avi", x, y, frame])
    return root


def test_item_keys_and_polygon_masks(tmp_path):
    dataset = EchoNetPediatric(_make_pediatric(tmp_path), view="PSAX", split="TEST")
    assert len(dataset) == 1
    item = dataset[0]
    assert item["video"].shape == (1, FRAMES, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["filename"] == "P3.avi" and item["fold"] == 9 and item["view"] == "PSAX"
    assert item["ejection_fraction"] == 63.0 and item["age"] == 4.5 and np.isnan(item["weight"])
    assert item["fps"] == pytest.approx(30.0)
    assert (item["ed_frame"], item["es_frame"]) == (1, 7)
    assert abs(int(item["ed_mask"].sum()) - np.pi * 81) < 0.15 * np.pi * 81
    assert int(item["es_mask"].sum()) < int(item["ed_mask"].sum())


@pytest.mark.parametrize("split, count", [(0, 1), ([0, 3], 2), ("train", 2), (["VAL", 9], 2), ("ALL", 4)])
def test_split_by_fold_numbers_and_names(tmp_path, split, count):
    assert len(EchoNetPediatric(_make_pediatric(tmp_path), view="PSAX", split=split)) == count


def test_root_may_be_the_view_folder(tmp_path):
    assert len(EchoNetPediatric(_make_pediatric(tmp_path, view="A4C") / "A4C", view="A4C")) == 4


def test_bad_arguments(tmp_path):
    root = _make_pediatric(tmp_path)
    with pytest.raises(ValueError, match="view"):
        EchoNetPediatric(root, view="PLAX")
    with pytest.raises(ValueError, match="split"):
        EchoNetPediatric(root, view="PSAX", split=12)


def test_missing_videos_are_all_listed(tmp_path):
    root = _make_pediatric(tmp_path)
    for name in ("P0.avi", "P2.avi"):
        (root / "PSAX" / "Videos" / name).unlink()
    with pytest.raises(MissingFilesError, match="(?s)P0.avi.*P2.avi"):
        EchoNetPediatric(root, view="PSAX")
    assert len(EchoNetPediatric(root, view="PSAX", on_invalid="skip")) == 2


def test_tracings_beyond_video_length(tmp_path):
    root = _make_pediatric(tmp_path, es_frame=FRAMES + 1)
    dataset = EchoNetPediatric(root, view="PSAX")
    with pytest.raises(ValueError, match=f"frame {FRAMES + 1}.*P0.avi.*has {FRAMES} frames"):
        dataset[0]
    with pytest.raises(InvalidItemError, match="P0.avi"):
        EchoNetPediatric(root, view="PSAX", validate=True)
    skipped = EchoNetPediatric(root, view="PSAX", on_invalid="skip")
    assert len(skipped) == 0 and len(skipped.invalid) == 4


def test_non_numeric_filelist_row(tmp_path):
    root = _make_pediatric(tmp_path)
    text = (root / "PSAX" / "FileList.csv").read_text().replace("P1.avi,61.0", "P1.avi,abc", 1)
    (root / "PSAX" / "FileList.csv").write_text(text)
    with pytest.raises(InvalidItemError, match="P1.avi.*non-numeric"):
        EchoNetPediatric(root, view="PSAX")
