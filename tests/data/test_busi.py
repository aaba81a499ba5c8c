from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from echo_monai.data import BUSI, InvalidItemError, MissingFilesError

H, W = 20, 28


def _png(path: Path, array: np.ndarray, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_GRAY2BGR) if rgb else array)


def _make_busi(root: Path) -> Path:
    base = root / "Dataset_BUSI_with_GT"
    rng = np.random.default_rng(0)
    for label in BUSI.CLASSES:
        for k in (1, 2):
            _png(base / label / f"{label} ({k}).png", rng.integers(0, 255, (H, W), np.uint8), rgb=True)
            mask = np.zeros((H, W), np.uint8)
            if label != "normal":
                mask[2:8, 3:9] = 255
            _png(base / label / f"{label} ({k})_mask.png", mask)
    second = np.zeros((H, W), np.uint8)
    second[12:18, 15:25] = 255
    _png(base / "malignant" / "malignant (2)_mask_1.png", second)
    return root


def test_items_and_merged_masks(tmp_path):
    dataset = BUSI(_make_busi(tmp_path))
    assert len(dataset) == 6
    item = dataset[3]
    assert item["filename"] == "malignant/malignant (2).png" and item["label"] == "malignant"
    assert item["label_index"] == 1
    assert item["image"].shape == (1, H, W) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, H, W) and item["mask"].dtype == torch.uint8
    assert int(item["mask"].sum()) == 36 + 60  # union of _mask and _mask_1
    assert int(dataset[4]["mask"].sum()) == 0 and dataset[4]["label"] == "normal"


def test_class_subset_and_root_variants(tmp_path):
    root = _make_busi(tmp_path)
    assert len(BUSI(root / "Dataset_BUSI_with_GT", classes="benign")) == 2
    with pytest.raises(ValueError, match="classes"):
        BUSI(root, classes=("cyst",))


def test_missing_masks_all_listed(tmp_path):
    root = _make_busi(tmp_path)
    (root / "Dataset_BUSI_with_GT" / "benign" / "benign (1)_mask.png").unlink()
    (root / "Dataset_BUSI_with_GT" / "normal" / "normal (2)_mask.png").unlink()
    with pytest.raises(MissingFilesError, match=r"(?s)benign \(1\)_mask.png.*normal \(2\)_mask.png"):
        BUSI(root)
    dataset = BUSI(root, on_invalid="skip")
    assert len(dataset) == 4 and len(dataset.invalid) == 2


def test_mask_size_mismatch(tmp_path):
    root = _make_busi(tmp_path)
    _png(root / "Dataset_BUSI_with_GT" / "benign" / "benign (2)_mask.png", np.zeros((H, W + 3), np.uint8))
    with pytest.raises(ValueError, match=r"benign \(2\)_mask.png.*expected equal sizes"):
        BUSI(root, classes="benign")[1]
    with pytest.raises(InvalidItemError):
        BUSI(root, validate=True)
    assert len(BUSI(root, on_invalid="skip")) == 5


def test_mask_without_image_and_missing_class_folder(tmp_path):
    root = _make_busi(tmp_path)
    (root / "Dataset_BUSI_with_GT" / "normal" / "normal (1).png").unlink()
    with pytest.raises(MissingFilesError, match=r"mask without image .*normal \(1\).png"):
        BUSI(root)
    (root / "Dataset_BUSI_with_GT" / "benign").rename(root / "Dataset_BUSI_with_GT" / "benign_old")
    with pytest.raises(FileNotFoundError, match="class folder"):
        BUSI(root, classes="benign")


def test_undecodable_image(tmp_path):
    root = _make_busi(tmp_path)
    (root / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"benign \(1\).png.*could not be decoded"):
        BUSI(root)[0]


# --- class checks, on a simulated dataset ------------------------------------------------------------------------


def _simulated(tmp_path: Path) -> Path:
    """One simulated image per class (32 x 40): ``benign (1)``, ``malignant (1)``, ``normal (1)``."""
    from echo_monai.apps.simulate import simulate

    return simulate("busi", tmp_path / "busi", n=3, seed=0, image_size=(32, 40)) / "Dataset_BUSI_with_GT"


def test_folder_of_unknown_class(tmp_path):
    base = _simulated(tmp_path)
    (base / "cyst").mkdir()
    for suffix in ("", "_mask"):
        source = base / "benign" / f"benign (1){suffix}.png"
        (base / "cyst" / f"cyst (1){suffix}.png").write_bytes(source.read_bytes())
    expected = re.escape(
        f"cyst/: folder {str(base / 'cyst')!r} holds 2 image(s) but 'cyst' is not a BUSI class; "
        "expected class folders ['benign', 'malignant', 'normal']"
    )
    with pytest.raises(InvalidItemError, match=expected):
        BUSI(base)
    dataset = BUSI(base, on_invalid="skip")
    assert len(dataset) == 3 and [name for name, _ in dataset.invalid] == ["cyst/"]


def test_image_named_after_another_class(tmp_path):
    base = _simulated(tmp_path)
    for suffix in ("", "_mask"):
        (base / "benign" / f"benign (1){suffix}.png").rename(base / "malignant" / f"benign (1){suffix}.png")
    expected = re.escape(
        f"malignant/benign (1).png: image {str(base / 'malignant' / 'benign (1).png')!r} is named as "
        "class 'benign' but lies in folder 'malignant'"
    )
    with pytest.raises(InvalidItemError, match=expected):
        BUSI(base)
    dataset = BUSI(base, on_invalid="skip")
    assert len(dataset) == 2 and [name for name, _ in dataset.invalid] == ["malignant/benign (1).png"]
