from __future__ import annotations

import cv2
import numpy as np
import pytest

from echo_monai.data import label_map_datalist
from echo_monai.data.camus import save_camus_nifti


@pytest.fixture
def camus(tmp_path):
    for patient in ("patient0001", "patient0002"):
        folder = tmp_path / "database_nifti" / patient
        folder.mkdir(parents=True)
        for phase in ("ED", "ES"):
            save_camus_nifti(folder / f"{patient}_4CH_{phase}_gt.nii.gz", np.zeros((4, 4), np.uint8))
        save_camus_nifti(folder / f"{patient}_4CH_ED.nii.gz", np.zeros((4, 4), np.uint8))
        save_camus_nifti(folder / f"{patient}_4CH_half_sequence_gt.nii.gz", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "database_split").mkdir()
    (tmp_path / "database_split" / "subgroup_training.txt").write_text("patient0002\n")
    return tmp_path


def test_camus_label_maps_with_copies_and_images(camus):
    items = label_map_datalist(camus, copies=2)
    assert len(items) == 8  # 2 patients x ED/ES x 2 copies; half sequences skipped
    first = items[0]
    assert first["name"] == "patient0001_4CH_ED" and first["view"] == "4CH" and first["copy"] == 0
    assert first["image"].endswith("patient0001_4CH_ED.nii.gz")
    assert "image" not in items[2]  # no ES image written


def test_split_and_patient_lists(camus):
    assert {i["patient"] for i in label_map_datalist(camus, split="training")} == {"patient0002"}
    assert {i["patient"] for i in label_map_datalist(camus, split=["patient0001"])} == {"patient0001"}
    with pytest.raises(FileNotFoundError, match="subgroup_testing.txt"):
        label_map_datalist(camus, split="testing")
    with pytest.raises(FileNotFoundError, match="no CAMUS label map of the split"):
        label_map_datalist(camus, split=["patient0009"])


def test_png_folder_and_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "heart.png"), np.zeros((4, 4), np.uint8))
    items = label_map_datalist(tmp_path, limit=1)
    assert items == [
        {
            "label": str(tmp_path / "heart.png"),
            "name": "heart_4CH_ED",
            "copy": 0,
            "patient": "heart",
            "view": "4CH",
            "phase": "ED",
        }
    ]
    with pytest.raises(ValueError, match="copies"):
        label_map_datalist(tmp_path, copies=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        label_map_datalist(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no label map"):
        label_map_datalist(empty)
