from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from csv_rows import edit_row

from echo_monai.data import EchoNetDynamic, InvalidItemError, MissingFilesError, VideoReadError
from echo_monai.data import video_cache as video_cache_module
from echo_monai.data.video_io import write_video

SIZE, FRAMES = 32, 12


def _chords(cx: float, cy: float, half_length: float, half_width: float, discs: int = 8) -> list[list[float]]:
    """Long axis then disc chords of an ellipse, as EchoNet's VolumeTracings.csv stores them."""
    rows = [[cx, cy - half_length, cx, cy + half_length]]
    for y in np.linspace(cy - half_length, cy + half_length, discs + 2)[1:-1]:
        w = half_width * np.sqrt(max(0.0, 1 - ((y - cy) / half_length) ** 2))
        rows.append([cx - w, y, cx + w, y])
    return rows


def _make_echonet(root: Path, names=("A", "B", "C"), splits=("TRAIN", "TRAIN", "VAL"), traced=(2, 9)) -> Path:
    rng = np.random.default_rng(0)
    (root / "Videos").mkdir(parents=True)
    with open(root / "FileList.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        for i, (name, split) in enumerate(zip(names, splits, strict=True)):
            write_video(root / "Videos" / f"{name}.avi", rng.integers(0, 255, (FRAMES, SIZE, SIZE), np.uint8), 50)
            writer.writerow([name, 50.0 + i, 20.0, 40.0, SIZE, SIZE, 50, FRAMES, split])
    with open(root / "VolumeTracings.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for name in names:
            # ES first in the file, to show that ED/ES come from the areas and not from the row order
            for frame, width in ((traced[0], 4.0), (traced[1], 8.0)):
                for row in _chords(16, 16, 10, width):
                    writer.writerow([f"{name}.avi", *row, frame])
    return root


def test_item_keys_shapes_and_masks(tmp_path):
    dataset = EchoNetDynamic(_make_echonet(tmp_path), split="TRAIN")
    assert len(dataset) == 2
    item = dataset[1]
    assert item["video"].shape == (1, FRAMES, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert 0 <= item["video"].min() and item["video"].max() <= 255
    assert item["filename"] == "B.avi" and item["ejection_fraction"] == 51.0
    assert (item["edv"], item["esv"], item["fps"]) == (40.0, 20.0, 50.0)
    assert (item["ed_frame"], item["es_frame"]) == (9, 2)
    for key in ("ed_mask", "es_mask"):
        assert item[key].shape == (SIZE, SIZE) and item[key].dtype == torch.uint8
        assert set(item[key].unique().tolist()) == {0, 1} and item[key][16, 16] == 1 and item[key][1, 1] == 0
    ed_area, es_area = int(item["ed_mask"].sum()), int(item["es_mask"].sum())
    assert ed_area > 1.5 * es_area
    assert abs(ed_area - np.pi * 10 * 8) < 0.3 * np.pi * 10 * 8  # close to the ellipse area


def test_split_all_and_val(tmp_path):
    root = _make_echonet(tmp_path)
    assert len(EchoNetDynamic(root, split="all")) == 3
    assert [item["filename"] for item in EchoNetDynamic(root, split="VAL")] == ["C.avi"]


def test_bad_arguments(tmp_path):
    root = _make_echonet(tmp_path)
    with pytest.raises(ValueError, match="split"):
        EchoNetDynamic(root, split="train+val")
    with pytest.raises(ValueError, match="on_invalid"):
        EchoNetDynamic(root, on_invalid="ignore")


def test_missing_videos_are_all_listed(tmp_path):
    root = _make_echonet(tmp_path)
    (root / "Videos" / "A.avi").unlink()
    (root / "Videos" / "C.avi").unlink()
    with pytest.raises(MissingFilesError) as info:
        EchoNetDynamic(root, split="ALL")
    assert "A.avi" in str(info.value) and "C.avi" in str(info.value) and len(info.value.problems) == 2


def test_missing_videos_skipped_with_report(tmp_path, caplog):
    root = _make_echonet(tmp_path)
    (root / "Videos" / "A.avi").unlink()
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 2 and [name for name, _ in dataset.invalid] == ["A.avi"]
    assert "A.avi" in caplog.text


def test_missing_filelist_column(tmp_path):
    root = _make_echonet(tmp_path)
    (root / "FileList.csv").write_text("FileName,EF\nA,50\n")
    with pytest.raises(ValueError, match="FileList.csv.*lacks column"):
        EchoNetDynamic(root)


def test_tracings_beyond_number_of_frames(tmp_path):
    root = _make_echonet(tmp_path, traced=(2, FRAMES + 3))
    with pytest.raises(InvalidItemError, match=f"frame.*{FRAMES + 3}.*{FRAMES} frames"):
        EchoNetDynamic(root)


def test_tracings_beyond_decoded_video(tmp_path):
    root = _make_echonet(tmp_path, traced=(2, FRAMES + 3))
    text = (root / "FileList.csv").read_text().replace(f",50,{FRAMES},", ",50,,")  # NumberOfFrames left blank
    (root / "FileList.csv").write_text(text)
    dataset = EchoNetDynamic(root)
    with pytest.raises(ValueError, match=f"A.avi.*has {FRAMES} frames"):
        dataset[0]
    assert len(EchoNetDynamic(root, on_invalid="skip")) == 0


def test_missing_tracings(tmp_path):
    root = _make_echonet(tmp_path)
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n")
    with pytest.raises(InvalidItemError, match="no rows in VolumeTracings"):
        EchoNetDynamic(root)
    item = EchoNetDynamic(root, require_tracings=False)[0]
    assert item["ed_frame"] == -1 and int(item["ed_mask"].sum()) == 0


def test_corrupt_video(tmp_path):
    root = _make_echonet(tmp_path)
    (root / "Videos" / "B.avi").write_bytes(b"not a video" * 10)
    with pytest.raises(VideoReadError, match="B.avi"):
        EchoNetDynamic(root)[1]
    with pytest.raises(InvalidItemError, match="B.avi"):
        EchoNetDynamic(root, validate=True)
    dataset = EchoNetDynamic(root, on_invalid="skip")
    assert len(dataset) == 1 and dataset.invalid[0][0] == "B.avi"


def test_cache_decodes_once(tmp_path, monkeypatch):
    root = _make_echonet(tmp_path / "data")
    plain = EchoNetDynamic(root)[0]["video"]
    calls = []
    original = video_cache_module.read_video

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(video_cache_module, "read_video", counting)
    dataset = EchoNetDynamic(root, cache_dir=tmp_path / "cache")
    for _ in range(3):
        assert torch.equal(dataset[0]["video"], plain)
    assert len(calls) == 1


def test_dataloader_collates(tmp_path):
    loader = torch.utils.data.DataLoader(EchoNetDynamic(_make_echonet(tmp_path)), batch_size=2)
    batch = next(iter(loader))
    assert batch["video"].shape == (2, 1, FRAMES, SIZE, SIZE) and batch["ed_mask"].shape == (2, SIZE, SIZE)


def test_lazy_video_feeds_a_clip_transform(tmp_path):
    from echo_monai.transforms import CenterClipd

    root = _make_echonet(tmp_path / "data")
    with pytest.raises(ValueError, match="lazy=True needs a cache_dir"):
        EchoNetDynamic(root, lazy=True)
    clip = CenterClipd("video", num_frames=4, period=2, dtype=torch.float32, frame_keys=("ed_frame", "es_frame"))
    dataset = EchoNetDynamic(root, cache_dir=tmp_path / "cache", lazy=True, transform=clip)
    item = dataset[0]
    assert isinstance(item["video"], torch.Tensor) and item["video"].shape == (1, 4, SIZE, SIZE)
    full = EchoNetDynamic(root)[0]["video"]
    assert torch.equal(item["video"], full[:, 2:10:2])  # span 7 of 12 frames: start 2
    assert (item["ed_frame"], item["es_frame"]) == (-1, 0)


def test_single_traced_frame_and_bad_numbers(tmp_path):
    root = _make_echonet(tmp_path, traced=(4, 4))
    with pytest.raises(InvalidItemError, match=r"two frames.*\[4\]"):
        EchoNetDynamic(root)
    text = (root / "FileList.csv").read_text().replace("50.0,20.0,40.0", "n/a,20.0,40.0", 1)
    (root / "FileList.csv").write_text(text)
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 0 and any("non-numeric" in reason for _, reason in dataset.invalid)


# --- range and consistency checks, on a simulated dataset --------------------------------------------------------


def _simulated(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two simulated TRAIN videos (32 x 32, 13 and 15 frames) and their file names."""
    from echo_monai.apps.simulate import simulate

    root = simulate("echonet", tmp_path / "echonet", n=2, seed=0, image_size=(32, 32), n_frames=8)
    with open(root / "FileList.csv", newline="") as handle:
        names = [f"{row['FileName']}.avi" for row in csv.DictReader(handle)]
    return root, names


def _edit_filelist(root: Path, index: int, **values: str) -> None:
    edit_row(root / "FileList.csv", index, **values)


def _line(root: Path, index: int) -> str:
    return re.escape(f"{str(root / 'FileList.csv')!r} line {index + 2}: ")


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("EF", "150", r"EF '150' is out of range; expected a finite number in \[0, 100\]"),
        ("EF", "-20", r"EF '-20' is out of range; expected a finite number in \[0, 100\]"),
        ("EF", "nan", r"EF 'nan' is out of range; expected a finite number in \[0, 100\]"),
        ("EF", "", r"no EF; expected a finite number in \[0, 100\]"),
        ("ESV", "-5", r"ESV '-5' is out of range; expected a finite number >= 0"),
        ("EDV", "inf", r"EDV 'inf' is out of range; expected a finite number >= 0"),
        ("FPS", "0", r"FPS '0' is out of range; expected a finite number > 0"),
        ("FPS", "nan", r"FPS 'nan' is out of range; expected a finite number > 0"),
        ("NumberOfFrames", "12.5", r"NumberOfFrames '12.5' is out of range; expected an integer >= 1"),
        ("FrameHeight", "0", r"FrameHeight '0' is out of range; expected an integer >= 1"),
        ("Split", "TRIAN", r"unknown Split 'TRIAN'; expected one of \['TRAIN', 'VAL', 'TEST'\]"),
    ],
)
def test_filelist_values_out_of_range(tmp_path, column, value, expected):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 1, **{column: value})
    with pytest.raises(InvalidItemError, match=re.escape(names[1]) + ": " + _line(root, 1) + expected):
        EchoNetDynamic(root, split="ALL")
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[1]]


def test_every_problem_of_a_row_in_one_reason(tmp_path):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, EF="150", ESV="-1")
    with pytest.raises(InvalidItemError, match=r"EF '150' is out of range.*; ESV '-1' is out of range") as info:
        EchoNetDynamic(root, split="ALL")
    assert [name for name, _ in info.value.problems] == [names[0]]


def test_edv_below_esv(tmp_path):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, EDV="10", ESV="20")
    with pytest.raises(InvalidItemError, match=_line(root, 0) + "EDV 10 < ESV 20; expected EDV >= ESV"):
        EchoNetDynamic(root, split="ALL")
    assert [name for name, _ in EchoNetDynamic(root, split="ALL", on_invalid="skip").invalid] == [names[0]]


def test_empty_volumes_read_as_nan(tmp_path):
    root, _ = _simulated(tmp_path)
    _edit_filelist(root, 0, EDV="", ESV="")  # as synthetic exports leave them
    item = EchoNetDynamic(root, split="ALL", validate=True)[0]
    assert np.isnan(item["edv"]) and np.isnan(item["esv"]) and 0 <= item["ejection_fraction"] <= 100


def test_unknown_split_reported_whatever_split_is_read(tmp_path):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, Split="HOLDOUT")
    dataset = EchoNetDynamic(root, split="VAL", on_invalid="skip")
    assert len(dataset) == 0 and dataset.invalid[0][0] == names[0] and "HOLDOUT" in dataset.invalid[0][1]


def test_number_of_frames_differs_from_the_video(tmp_path):
    root, names = _simulated(tmp_path)
    decoded = EchoNetDynamic(root, split="ALL")[1]["video"].shape[1]
    _edit_filelist(root, 1, NumberOfFrames=str(decoded + 2))
    message = rf"{re.escape(names[1])}.*decodes to {decoded} frames but .*' gives NumberOfFrames {decoded + 2} for"
    with pytest.raises(ValueError, match=message):
        EchoNetDynamic(root, split="ALL")[1]
    with pytest.raises(InvalidItemError, match=message):
        EchoNetDynamic(root, split="ALL", validate=True)
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[1]]


def test_frame_size_differs_from_the_video(tmp_path):
    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, FrameHeight="40")
    with pytest.raises(InvalidItemError, match=rf"{re.escape(names[0])}.*32 x 32 frames but .* 40 x 32"):
        EchoNetDynamic(root, split="ALL", validate=True)


@pytest.mark.parametrize("number_of_frames", ["keep", ""])
def test_truncated_video_is_reported_when_validating(tmp_path, number_of_frames):
    root, names = _simulated(tmp_path)
    if not number_of_frames:
        _edit_filelist(root, 0, NumberOfFrames="")  # the AVI header count still catches it
    path = root / "Videos" / names[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = rf"{re.escape(names[0])}.*decodes to \d+ frames but its header announces \d+; .*truncated"
    with pytest.raises(InvalidItemError, match=message):
        EchoNetDynamic(root, split="ALL", validate=True)
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[0]]


def test_avi_header_frame_rate_must_be_positive(tmp_path, monkeypatch):
    from echo_monai.data import echonet as echonet_module
    from echo_monai.data.video_io import VideoInfo

    root, names = _simulated(tmp_path)
    _edit_filelist(root, 0, FPS="")  # the frame rate then comes from the AVI header
    monkeypatch.setattr(echonet_module, "probe_video", lambda path: VideoInfo(13, 32, 32, 0.0))
    with pytest.raises(ValueError, match=rf"AVI header of .*{re.escape(names[0])}' gives 0 frames/s.*expected .* > 0"):
        EchoNetDynamic(root, split="ALL")[0]
    dataset = EchoNetDynamic(root, split="ALL", on_invalid="skip")
    assert len(dataset) == 1 and [name for name, _ in dataset.invalid] == [names[0]]
