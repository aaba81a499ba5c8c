from __future__ import annotations

import cv2
import numpy as np
import pytest

from echo_monai.data.phantom.breast import BreastParameters, BreastPhantom
from echo_monai.data.phantom.busi_writer import BUSIWriter


def _still(label: str, seed: int, **overrides):
    params = BreastParameters.sample(np.random.default_rng(seed), label, motion="none", **overrides)
    return BreastPhantom(params, (48, 64), seed=seed).simulate(1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("busi")
    stills = [
        _still("benign", 0),
        _still(
            "benign",
            1,
            n_lesions=2,
            lesions=((-6.0, 14.0, 4.0, 3.0), (8.0, 16.0, 3.0, 2.0)),
            harmonics=((), ()),
            spicules=((), ()),
        ),
        _still("malignant", 2),
        _still("normal", 3),
    ]
    writer = BUSIWriter(root)
    for still in stills:
        writer.add(still)
    return root, stills


def test_layout_file_names(written):
    root, _ = written
    dataset = root / "Dataset_BUSI_with_GT"
    assert sorted(p.name for p in (dataset / "benign").iterdir()) == [
        "benign (1).png",
        "benign (1)_mask.png",
        "benign (2).png",
        "benign (2)_mask.png",
        "benign (2)_mask_1.png",
    ]
    assert sorted(p.name for p in (dataset / "malignant").iterdir()) == ["malignant (1).png", "malignant (1)_mask.png"]
    assert sorted(p.name for p in (dataset / "normal").iterdir()) == ["normal (1).png", "normal (1)_mask.png"]
    image = cv2.imread(str(dataset / "benign" / "benign (1).png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (48, 64, 3)  # 3-channel grey, as the release
    mask = cv2.imread(str(dataset / "benign" / "benign (1)_mask.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask)) == {0, 255}
    assert not cv2.imread(str(dataset / "normal" / "normal (1)_mask.png"), cv2.IMREAD_UNCHANGED).any()


def test_round_trip_through_the_busi_reader(written):
    from echo_monai.data.busi import BUSI

    root, stills = written
    items = {item["filename"]: item for item in (BUSI(root)[i] for i in range(4))}
    for name, still in zip(
        ["benign/benign (1).png", "benign/benign (2).png", "malignant/malignant (1).png", "normal/normal (1).png"],
        stills,
        strict=False,
    ):
        item = items[name]
        np.testing.assert_array_equal(item["image"].numpy()[0], still.frames[0])
        np.testing.assert_array_equal(item["mask"].numpy()[0], (still.masks[0] > 0).astype(np.uint8))
        assert item["label"] == still.label


def test_bad_frame_raises(tmp_path, written):
    with pytest.raises(ValueError, match="frame"):
        BUSIWriter(tmp_path).add(written[1][0], frame=3)
