from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from echo_monai.data import CAMUS, InvalidItemError, MissingFilesError
from echo_monai.data.camus import read_metaimage

H, W, T = 24, 20, 5
SPACING = (0.3, 0.25)  # (dy, dx) mm


def _label() -> np.ndarray:
    label = np.zeros((H, W), np.uint8)
    label[4:20, 4:16], label[8:16, 7:13], label[18:22, 6:14] = 2, 1, 3
    return label


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W)).astype(np.uint8)


def _save_nifti(path: Path, array: np.ndarray) -> None:
    # ITK order on disk: nibabel sees (W, H[, T])
    nib.save(nib.Nifti1Image(array.T, np.diag([SPACING[1], SPACING[0], 1.0, 1.0])), str(path))


def _save_mhd(path: Path, array: np.ndarray) -> None:
    dims = " ".join(str(d) for d in array.shape[::-1])
    spacing = " ".join(str(s) for s in ((SPACING[1], SPACING[0], 1.0)[: array.ndim]))
    path.write_text(
        f"ObjectType = Image\nNDims = {array.ndim}\nDimSize = {dims}\nElementType = MET_UCHAR\n"
        f"ElementSpacing = {spacing}\nElementDataFile = {path.stem}.raw\n"
    )
    array.astype(np.uint8).tofile(path.with_suffix(".raw"))


def _write_patient(folder: Path, patient: str, fmt: str = "nifti", seed: int = 0) -> None:
    save, ext = (_save_nifti, ".nii.gz") if fmt == "nifti" else (_save_mhd, ".mhd")
    sequence = "half_sequence" if fmt == "nifti" else "sequence"
    # the two releases word the cfg differently
    info = "EF: 55.8\nFrameRate: 50.0\n" if fmt == "nifti" else "LVedv: 90.5\nLVesv: 40.0\nLVef: 55.8\n"
    folder.mkdir(parents=True, exist_ok=True)
    for view in ("2CH", "4CH"):
        (folder / f"Info_{view}.cfg").write_text(
            f"ED: 1\nES: {T}\nNbFrame: {T}\nSex: F\nAge: 61\nImageQuality: Good\n{info}"
        )
        for phase in ("ED", "ES"):
            save(folder / f"{patient}_{view}_{phase}{ext}", _image(seed))
            save(folder / f"{patient}_{view}_{phase}_gt{ext}", _label())
        save(folder / f"{patient}_{view}_{sequence}{ext}", np.stack([_image(seed + t) for t in range(T)]))
        save(folder / f"{patient}_{view}_{sequence}_gt{ext}", np.stack([_label()] * T))


def _make_nifti_release(root: Path) -> Path:
    for i, group in zip(range(1, 4), ("training", "validation", "testing"), strict=True):
        _write_patient(root / "database_nifti" / f"patient{i:04d}", f"patient{i:04d}", seed=i)
        (root / "database_split").mkdir(parents=True, exist_ok=True)
        (root / "database_split" / f"subgroup_{group}.txt").write_text(f"patient{i:04d}\n")
    return root


def test_nifti_items_keys_orientation_and_info(tmp_path):
    dataset = CAMUS(_make_nifti_release(tmp_path), views=("4CH",), phases=("ED", "ES"), split="training")
    assert len(dataset) == 2
    item = dataset[0]
    assert item["image"].shape == (1, H, W) and item["image"].dtype == torch.float32
    assert torch.equal(item["image"][0], torch.from_numpy(_image(1).astype(np.float32)))
    assert item["label"].dtype == torch.uint8 and torch.equal(item["label"][0], torch.from_numpy(_label()))
    assert (item["patient"], item["view"], item["phase"]) == ("patient0001", "4CH", "ED")
    assert item["ejection_fraction"] == 55.8 and item["image_quality"] == "Good" and item["fps"] == 50.0
    assert (item["ed_frame"], item["es_frame"]) == (0, T - 1)
    assert item["spacing"] == pytest.approx(SPACING)


def test_item_keys_match_the_items_without_reading_them(tmp_path):
    dataset = CAMUS(_make_nifti_release(tmp_path), views=("2CH", "4CH"), phases=("ED", "ES"))
    assert dataset.item_keys() == [(item["patient"], item["view"], item["phase"]) for item in dataset]
    assert dataset.item_keys()[:2] == [("patient0001", "2CH", "ED"), ("patient0001", "2CH", "ES")]


def test_half_sequence_as_video(tmp_path):
    dataset = CAMUS(_make_nifti_release(tmp_path), views="2CH", phases="half_sequence")
    assert len(dataset) == 3
    item = dataset[2]
    assert item["video"].shape == (1, T, H, W) and item["label"].shape == (1, T, H, W) and "image" not in item
    assert torch.equal(item["video"][0, 1], torch.from_numpy(_image(4).astype(np.float32)))


def test_splits_and_patient_lists(tmp_path):
    root = _make_nifti_release(tmp_path)
    assert {item["patient"] for item in CAMUS(root, split="val")} == {"patient0002"}
    assert len(CAMUS(root)) == 3 * 2 * 2
    assert len(CAMUS(root, split=["patient0001", "patient0003"], views=("2CH",))) == 4


def test_metaimage_release(tmp_path):
    _write_patient(tmp_path / "training" / "patient0001", "patient0001", fmt="mhd", seed=7)
    dataset = CAMUS(tmp_path, views=("4CH",), phases=("ES", "half_sequence"), split="training")
    image, sequence = dataset[0], dataset[1]
    assert torch.equal(image["image"][0], torch.from_numpy(_image(7).astype(np.float32)))
    assert torch.equal(image["label"][0], torch.from_numpy(_label())) and image["spacing"] == pytest.approx(SPACING)
    assert sequence["video"].shape == (1, T, H, W) and sequence["phase"] == "half_sequence"
    assert (image["ejection_fraction"], image["edv"], image["esv"]) == (55.8, 90.5, 40.0)


def test_metaimage_size_mismatch_names_file(tmp_path):
    path = tmp_path / "x.mhd"
    _save_mhd(path, _image(0))
    path.with_suffix(".raw").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="x.raw.*expected"):
        read_metaimage(path)


def test_bad_arguments(tmp_path):
    root = _make_nifti_release(tmp_path)
    with pytest.raises(ValueError, match="views"):
        CAMUS(root, views=("3CH",))
    with pytest.raises(ValueError, match="phases"):
        CAMUS(root, phases=("MID",))
    with pytest.raises(ValueError, match="split"):
        CAMUS(root, split="holdout")


def test_missing_files_all_listed(tmp_path):
    root = _make_nifti_release(tmp_path)
    (root / "database_nifti" / "patient0001" / "patient0001_2CH_ED_gt.nii.gz").unlink()
    (root / "database_nifti" / "patient0002" / "patient0002_4CH_ES.nii.gz").unlink()
    with pytest.raises(MissingFilesError, match="(?s)patient0001_2CH_ED_gt.nii.gz.*patient0002_4CH_ES.nii.gz"):
        CAMUS(root)
    dataset = CAMUS(root, on_invalid="skip")
    assert len(dataset) == 10 and len(dataset.invalid) == 2
    assert "label" not in CAMUS(root, require_label=False, views="2CH", split=["patient0001"])[0]


def test_label_values_outside_range(tmp_path):
    root = _make_nifti_release(tmp_path)
    bad = _label()
    bad[0, 0] = 5
    _save_nifti(root / "database_nifti" / "patient0003" / "patient0003_4CH_ES_gt.nii.gz", bad)
    with pytest.raises(ValueError, match=r"patient0003_4CH_ES_gt.nii.gz.*\[0, 1, 2, 3, 5\]"):
        CAMUS(root, split="testing", views="4CH", phases="ES")[0]
    with pytest.raises(InvalidItemError, match="patient0003_4CH_ES_gt"):
        CAMUS(root, validate=True)
    assert [name for name, _ in CAMUS(root, on_invalid="skip").invalid] == ["patient0003_4CH_ES"]


def test_image_label_size_mismatch(tmp_path):
    root = _make_nifti_release(tmp_path)
    _save_nifti(root / "database_nifti" / "patient0002" / "patient0002_2CH_ED_gt.nii.gz", _label()[:, :-2])
    with pytest.raises(ValueError, match="patient0002_2CH_ED_gt.nii.gz.*expected equal sizes"):
        CAMUS(root, split="validation", views="2CH", phases="ED")[0]
    assert len(CAMUS(root, on_invalid="skip")) == 11


def test_missing_cfg_split_file_and_patient(tmp_path):
    root = _make_nifti_release(tmp_path)
    (root / "database_nifti" / "patient0002" / "Info_4CH.cfg").unlink()
    with pytest.raises(MissingFilesError, match="Info_4CH.cfg"):
        CAMUS(root)
    with pytest.raises(MissingFilesError, match="patient0099"):
        CAMUS(root, split=["patient0001", "patient0099"], views="2CH")
    (root / "database_split" / "subgroup_testing.txt").unlink()
    with pytest.raises(FileNotFoundError, match="subgroup_testing.txt"):
        CAMUS(root, split="testing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CAMUS(tmp_path / "nowhere")


def test_unreadable_or_wrongly_shaped_image(tmp_path):
    root = _make_nifti_release(tmp_path)
    folder = root / "database_nifti" / "patient0001"
    (folder / "patient0001_2CH_ED.nii.gz").write_bytes(b"broken")
    with pytest.raises(ValueError, match="patient0001_2CH_ED.nii.gz.*not a readable NIfTI"):
        CAMUS(root, split=["patient0001"], views="2CH", phases="ED")[0]
    _save_nifti(folder / "patient0001_4CH_ES.nii.gz", np.stack([_image(0)] * 3))
    with pytest.raises(ValueError, match=r"patient0001_4CH_ES.nii.gz.*expected a 2-D"):
        CAMUS(root, split=["patient0001"], views="4CH", phases="ES")[0]


# --- Info_*.cfg range and consistency checks, on a simulated patient ---------------------------------------------


def _simulated(tmp_path: Path) -> Path:
    """One simulated training patient (32 x 32), both views."""
    from echo_monai.apps.simulate import simulate

    return simulate("camus", tmp_path / "camus", n=1, seed=0, image_size=(32, 32))


def _edit_cfg(root: Path, view: str = "2CH", **values: str | None) -> Path:
    """Set (``None``: delete) keys of patient0001's ``Info_{view}.cfg``; returns its path."""
    path = root / "database_nifti" / "patient0001" / f"Info_{view}.cfg"
    info = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    for key, value in values.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    path.write_text("".join(f"{key}: {value}\n" for key, value in info.items()))
    return path


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("EF", "147.6", r"EF '147.6' is out of range; expected a finite number in \[0, 100\] %"),
        ("EF", "nan", r"EF 'nan' is out of range; expected a finite number in \[0, 100\] %"),
        ("LVef", "n/a", r"non-numeric LVef 'n/a'; expected a finite number in \[0, 100\] %"),
        ("ED", "first", r"non-numeric ED 'first'; expected an integer >= 1"),
        ("ES", "0", r"ES '0' is out of range; expected an integer >= 1"),
        ("ES", "99", r"ES 99 > NbFrame \d+; expected ES <= NbFrame"),
        ("NbFrame", "2.5", r"NbFrame '2.5' is out of range; expected an integer >= 1"),
        ("LVedv", "-3", r"LVedv '-3' is out of range; expected a finite number >= 0 mL"),
        ("LVesv", "1e9", r"LVedv \S+ < LVesv 1e\+09; expected LVedv >= LVesv"),
        ("Sex", "U", r"unknown Sex 'U'; expected one of \['M', 'F'\]"),
        ("Age", "old", r"non-numeric Age 'old'; expected a finite number >= 0 years"),
        ("Age", "-4", r"Age '-4' is out of range; expected a finite number >= 0 years"),
        ("ImageQuality", "Fine", r"unknown ImageQuality 'Fine'; expected one of \['Good', 'Medium', 'Poor'\]"),
        ("FrameRate", "0", r"FrameRate '0' is out of range; expected a finite number > 0 frames/s"),
    ],
)
def test_cfg_values_out_of_range_or_unparsable(tmp_path, key, value, expected):
    root = _simulated(tmp_path)
    cfg = _edit_cfg(root, **{key: value})
    with pytest.raises(InvalidItemError, match=re.escape(f"patient0001_2CH: {str(cfg)!r}: ") + f".*{expected}"):
        CAMUS(root)
    dataset = CAMUS(root, on_invalid="skip")
    assert len(dataset) == 2 and [name for name, _ in dataset.invalid] == ["patient0001_2CH"]
    assert {item["view"] for item in dataset} == {"4CH"}


@pytest.mark.parametrize("key", ["ED", "ES", "NbFrame"])
def test_required_cfg_fields(tmp_path, key):
    root = _simulated(tmp_path)
    cfg = _edit_cfg(root, **{key: None})
    with pytest.raises(InvalidItemError, match=re.escape(f"{str(cfg)!r}: no {key}; expected an integer >= 1")):
        CAMUS(root)


def test_optional_cfg_fields_may_be_absent(tmp_path):
    root = _simulated(tmp_path)
    _edit_cfg(root, EF=None, LVef=None, LVedv=None, LVesv=None, Sex=None, Age=None, ImageQuality=None, FrameRate=None)
    item = CAMUS(root, views="2CH", validate=True)[0]
    assert all(np.isnan(item[key]) for key in ("ejection_fraction", "edv", "esv", "age", "fps"))
    assert item["sex"] == "" and item["image_quality"] == "" and item["ed_frame"] == 0


def test_metaimage_lvef_used_when_ef_absent(tmp_path):
    root = _simulated(tmp_path)
    _edit_cfg(root, EF=None, LVef="61.5")
    assert CAMUS(root, views="2CH")[0]["ejection_fraction"] == 61.5


def test_half_sequence_length_differs_from_nbframe(tmp_path):
    root = _simulated(tmp_path)
    cfg = root / "database_nifti" / "patient0001" / "Info_4CH.cfg"
    frames = int(dict(line.split(": ", 1) for line in cfg.read_text().splitlines())["NbFrame"])
    _edit_cfg(root, "4CH", NbFrame=str(frames + 2))
    message = rf"4CH_half_sequence.nii.gz' has {frames} frames but .*Info_4CH.cfg' gives NbFrame {frames + 2};"
    with pytest.raises(ValueError, match=message):
        CAMUS(root, views="4CH", phases="half_sequence")[0]
    with pytest.raises(InvalidItemError, match=message):
        CAMUS(root, phases=("ED", "half_sequence"), validate=True)
    dataset = CAMUS(root, phases=("ED", "half_sequence"), on_invalid="skip")
    assert len(dataset) == 3 and [name for name, _ in dataset.invalid] == ["patient0001_4CH_half_sequence"]
