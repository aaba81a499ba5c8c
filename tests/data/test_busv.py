from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from echo_monai.data import BUSV, InvalidItemError, MissingFilesError

H, W, T = 24, 32, 4


def _make_busv(root: Path) -> Path:
    rng = np.random.default_rng(0)
    images, annotations, videos = [], [], []
    for v, (name, category) in enumerate((("benign/v0", 1), ("malignant/v1", 2)), start=1):
        videos.append({"id": v, "name": name})
        for t in reversed(range(T)):  # listed out of order on purpose
            file_name = f"{name}/{t:06d}.png"
            (root / "rawframes" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "rawframes" / file_name), rng.integers(0, 255, (H, W), np.uint8))
            image_id = v * 100 + t
            images.append(
                {"id": image_id, "file_name": file_name, "video_id": v, "frame_id": t, "height": H, "width": W}
            )
            if t != 2:  # frame 2 has no box
                annotations.append(
                    {
                        "id": image_id,
                        "image_id": image_id,
                        "category_id": category,
                        "bbox": [2.0 + t, 3.0, 10.0, 6.0],
                        "area": 60.0,
                    }
                )
    categories = [{"id": 1, "name": "benign"}, {"id": 2, "name": "malignant"}]
    (root / "val.json").write_text(
        json.dumps({"videos": videos, "images": images, "annotations": annotations, "categories": categories})
    )
    return root


def test_items_boxes_and_order(tmp_path):
    dataset = BUSV(_make_busv(tmp_path))
    assert len(dataset) == 2
    item = dataset[1]
    assert item["video_name"] == "malignant/v1" and item["label"] == "malignant" and item["label_index"] == 1
    assert item["video"].shape == (1, T, H, W) and item["video"].dtype == torch.float32
    first = cv2.imread(str(tmp_path / "rawframes" / "malignant/v1/000000.png"), cv2.IMREAD_GRAYSCALE)
    assert torch.equal(item["video"][0, 0], torch.from_numpy(first.astype(np.float32)))
    assert item["boxes"].shape == (T, 4) and item["boxes"].dtype == torch.float32
    assert item["boxes"][1].tolist() == [3.0, 3.0, 13.0, 9.0]  # xyxy
    assert torch.isnan(item["boxes"][2]).all()


def test_xywh_and_bad_format(tmp_path):
    root = _make_busv(tmp_path)
    assert BUSV(root, box_format="xywh")[0]["boxes"][0].tolist() == [2.0, 3.0, 10.0, 6.0]
    with pytest.raises(ValueError, match="box_format"):
        BUSV(root, box_format="cxcywh")


def test_missing_frames_and_annotations(tmp_path):
    root = _make_busv(tmp_path)
    (root / "rawframes" / "benign/v0/000001.png").unlink()
    with pytest.raises(MissingFilesError, match="benign/v0.*000001.png"):
        BUSV(root)
    assert [name for name, _ in BUSV(root, on_invalid="skip").invalid] == ["benign/v0"]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BUSV(root, annotation_files=[root / "nope.json"])


def test_frames_of_different_sizes(tmp_path):
    root = _make_busv(tmp_path)
    cv2.imwrite(str(root / "rawframes" / "malignant/v1/000003.png"), np.zeros((H + 2, W), np.uint8))
    with pytest.raises(ValueError, match="malignant/v1.*expected one size"):
        BUSV(root)[1]
    with pytest.raises(InvalidItemError):
        BUSV(root, validate=True)


def test_video_without_category_and_bad_json(tmp_path):
    root = _make_busv(tmp_path)
    coco = json.loads((root / "val.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] // 100 != 1]
    for image in coco["images"]:
        image["file_name"] = image["file_name"].replace("benign/", "")
    for t in range(T):
        (root / "rawframes" / "v0").mkdir(exist_ok=True)
        (root / "rawframes" / "benign" / "v0" / f"{t:06d}.png").rename(root / "rawframes" / "v0" / f"{t:06d}.png")
    (root / "val.json").write_text(json.dumps(coco))
    with pytest.raises(InvalidItemError, match="no benign/malignant category"):
        BUSV(root)
    (root / "val.json").write_text("{not json")
    with pytest.raises(ValueError, match="val.json.*not COCO JSON"):
        BUSV(root)
    (root / "val.json").unlink()
    with pytest.raises(FileNotFoundError, match="no COCO JSON"):
        BUSV(root)


# --- category and box checks, on a simulated dataset -------------------------------------------------------------


def _simulated(tmp_path: Path) -> tuple[Path, dict]:
    """Two simulated training videos (3 frames of 32 x 40, benign then malignant; a third is the val split) and their
    COCO JSON."""
    from echo_monai.apps.simulate import simulate

    root = simulate("busv", tmp_path / "busv", n=3, seed=0, image_size=(32, 40), n_frames=3)
    return root, json.loads((root / "imagenet_vid_train.json").read_text())


def _malignant(coco: dict) -> tuple[str, dict]:
    """The malignant video's name and its first annotation."""
    video = next(v for v in coco["videos"] if v["id"] == 2)
    return video["name"], next(a for a in coco["annotations"] if a["video_id"] == 2)


def _save(root: Path, coco: dict) -> None:
    (root / "imagenet_vid_train.json").write_text(json.dumps(coco))


def test_unknown_category_name(tmp_path):
    root, coco = _simulated(tmp_path)
    name, _ = _malignant(coco)
    coco["categories"][1]["name"] = "cyst"
    _save(root, coco)
    expected = re.escape(f"{name}: {str(root / 'imagenet_vid_train.json')!r}: 3 invalid annotation(s): annotation ")
    with pytest.raises(InvalidItemError, match=expected + r".*unknown category 'cyst'; expected one of \['benign', "):
        BUSV(root)
    dataset = BUSV(root, on_invalid="skip")
    assert len(dataset) == 2 and [video for video, _ in dataset.invalid] == [name]  # the benign and the val video


def test_category_id_not_in_categories(tmp_path):
    root, coco = _simulated(tmp_path)
    name, annotation = _malignant(coco)
    annotation["category_id"] = 7
    _save(root, coco)
    with pytest.raises(InvalidItemError, match=rf"{name}: .*category_id 7 is not in 'categories' \(ids \[1, 2\]\)"):
        BUSV(root)
    assert [video for video, _ in BUSV(root, on_invalid="skip").invalid] == [name]


@pytest.mark.parametrize(
    "bbox, expected",
    [
        ([3.0, 4.0, 0.0, 5.0], r"expected x, y >= 0 and w, h > 0 pixels"),
        ([-3.0, 4.0, 6.0, 5.0], r"expected x, y >= 0 and w, h > 0 pixels"),
        ([3.0, 4.0, 6.0], r"expected four finite numbers \[x, y, w, h\]"),
        ([3.0, "wide", 6.0, 5.0], r"expected four finite numbers \[x, y, w, h\]"),
    ],
)
def test_malformed_box(tmp_path, bbox, expected):
    root, coco = _simulated(tmp_path)
    name, annotation = _malignant(coco)
    annotation["bbox"] = bbox
    _save(root, coco)
    message = rf"{name}: .*annotation {annotation['id']} of image {annotation['image_id']}: bbox .*{expected}"
    with pytest.raises(InvalidItemError, match=message):
        BUSV(root)
    assert [video for video, _ in BUSV(root, on_invalid="skip").invalid] == [name]


def test_box_beyond_its_frame(tmp_path):
    root, coco = _simulated(tmp_path)
    name, annotation = _malignant(coco)
    annotation["bbox"] = [30.0, 4.0, 20.0, 5.0]  # reaches x = 50 in a 40-pixel-wide frame
    _save(root, coco)
    message = rf"video '{name}' frame 0 .* reaching \[50.0, 9.0\], beyond its 40 x 32 frame"
    with pytest.raises(ValueError, match=message):
        BUSV(root)[1]
    with pytest.raises(InvalidItemError, match=message):
        BUSV(root, validate=True)
    dataset = BUSV(root, box_format="xywh", on_invalid="skip")
    assert len(dataset) == 2 and [video for video, _ in dataset.invalid] == [name]  # the benign and the val video


def test_frame_size_differs_from_the_json(tmp_path):
    root, coco = _simulated(tmp_path)
    name, _ = _malignant(coco)
    next(image for image in coco["images"] if image["video_id"] == 2)["height"] = 99
    _save(root, coco)
    with pytest.raises(InvalidItemError, match=rf"{name}/000000.png' is 32 x 40 but .* gives height x width 99 x 40"):
        BUSV(root, validate=True)
    assert [video for video, _ in BUSV(root, on_invalid="skip").invalid] == [name]
