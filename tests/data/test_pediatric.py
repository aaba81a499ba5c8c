from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from csv_rows import edit_row

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


# --- range and consistency checks, on a simulated dataset --------------------------------------------------------


def _simulated(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two simulated children (folds 0 and 1), A4C and PSAX, 32 x 32; returns the A4C folder and file names."""
    from echo_monai.apps.simulate import simulate

    root = simulate("pediatric", tmp_path / "pediatric", n=2, seed=0, image_size=(32, 32), n_frames=8) / "A4C"
    with open(root / "FileList.csv", newline="") as handle:
        names = [row["FileName"] for row in csv.DictReader(handle)]
    return root, names


def _edit_filelist(root: Path, index: int, **values: str) -> None:
    edit_row(root / "FileList.csv", index, **values)


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("EF", "150", r"EF '150' is out of range; expected a finite number in \[0, 100\] %"),
        ("EF", "-20", r"EF '-20' is out of range; expected a finite number in \[0, 100\] %"),
        ("EF", "nan", r"EF 'nan' is out of range; expected a finite number in \[0, 100\] %"),
        ("Split", "12", r"Split '12' is out of range; expected an integer in \[0, 9\]"),
        ("Split", "1.5", r"Split '1.5' is out of range; expected an integer in \[0, 9\]"),
        ("Split", "TRAIN", r"non-numeric Split 'TRAIN'; expected an integer in \[0, 9\]"),
        ("Sex", "X", r"unknown Sex 'X'; expected one of \['M', 'F'\]"),
        ("Age", "-1", r"Age '-1' is out of range; expected a finite number >= 0 years"),
        ("Weight", "0", r"Weight '0' is out of range; expected a finite number > 0 kg"),
        ("Height", "inf", r"Height 'inf' is out of range; expected a finite number > 0 cm"),
    ],
)
def test_filelist_values_out_of_range(tmp_path, column, value, expected):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 1, **{column: value})
    where = re.escape(f"{names[1]}: {str(root / 'FileList.csv')!r} line 3: ")
    with pytest.raises(InvalidItemError, match=where + expected):
        EchoNetPediatric(root, view="A4C")
    dataset = EchoNetPediatric(root, view="A4C", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[1]]


def test_absent_optional_fields_and_unknown_fold_whatever_split_is_read(tmp_path):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, Sex="", Age="", Weight="", Height="")
    item = EchoNetPediatric(root, view="A4C", split=0, validate=True)[0]
    assert item["sex"] == "" and np.isnan(item["age"]) and np.isnan(item["weight"]) and item["fps"] > 0
    _edit_filelist(root, 1, Split="10")
    dataset = EchoNetPediatric(root, view="A4C", split=0, on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[1]]


def test_truncated_video_is_reported_when_validating(tmp_path):
    root, names = _simulated(tmp_path)
    path = root / "Videos" / names[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidItemError, match=rf"{re.escape(names[0])}.*header announces \d+; .*truncated"):
        EchoNetPediatric(root, view="A4C", validate=True)
    dataset = EchoNetPediatric(root, view="A4C", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[0]]


def test_avi_header_frame_rate_must_be_positive(tmp_path, monkeypatch):
    from echo_monai.data import echonet as echonet_module
    from echo_monai.data.video_io import VideoInfo

    root, names = _simulated(tmp_path)
    monkeypatch.setattr(echonet_module, "probe_video", lambda path: VideoInfo(13, 32, 32, float("nan")))
    with pytest.raises(ValueError, match=rf"AVI header of .*{re.escape(names[0])}' gives nan frames/s"):
        EchoNetPediatric(root, view="A4C")[0]
    dataset = EchoNetPediatric(root, view="A4C", on_invalid="skip")
    assert len(dataset) == 0 and len(dataset.invalid) == 2
