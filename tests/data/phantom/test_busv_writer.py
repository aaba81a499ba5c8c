from __future__ import annotations

import json

import numpy as np
import pytest

from echo_monai.data.phantom.breast import BreastParameters, BreastPhantom
from echo_monai.data.phantom.busv_writer import BUSVWriter


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("busv")
    videos = {}
    with BUSVWriter(root) as writer:
        for index, (label, split) in enumerate((("benign", "train"), ("malignant", "val"))):
            params = BreastParameters.sample(np.random.default_rng(index), label, motion="sweep", motion_amplitude=6.0)
            videos[f"video{index}"] = BreastPhantom(params, (40, 48), seed=index).simulate(4)
            writer.add(videos[f"video{index}"], f"video{index}", split=split)
    return root, videos


def test_layout_and_coco_fields(written):
    root, videos = written
    assert sorted(p.name for p in (root / "rawframes" / "video0").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert sorted(p.name for p in root.glob("*.json")) == ["imagenet_vid_train.json", "imagenet_vid_val.json"]
    coco = json.loads((root / "imagenet_vid_train.json").read_text())
    assert set(coco) == {"videos", "images", "annotations", "categories"}
    assert coco["categories"] == [{"id": 1, "name": "benign"}, {"id": 2, "name": "malignant"}]
    assert [im["file_name"] for im in coco["images"]] == [f"video0/{i:06d}.png" for i in range(4)]
    boxes = [a["bbox"] for a in coco["annotations"]]
    np.testing.assert_allclose(boxes, videos["video0"].boxes[videos["video0"].boxes[:, 2] > 0])
    assert all(a["category_id"] == 1 for a in coco["annotations"])


def test_round_trip_through_the_busv_reader(written):
    from echo_monai.data.busv import BUSV

    root, videos = written
    dataset = BUSV(root, box_format="xywh")
    items = {item["video_name"]: item for item in (dataset[i] for i in range(len(dataset)))}
    assert set(items) == {"video0", "video1"}
    for name, video in videos.items():
        np.testing.assert_array_equal(items[name]["video"].numpy()[0], video.frames)
        visible = video.boxes[:, 2] > 0
        np.testing.assert_allclose(items[name]["boxes"].numpy()[visible], video.boxes[visible])
        assert items[name]["label"] == video.label


def test_bad_arguments_raise(tmp_path, written):
    _, videos = written
    writer = BUSVWriter(tmp_path)
    with pytest.raises(ValueError, match="split"):
        writer.add(videos["video0"], "v", split="test")
    normal = BreastPhantom(BreastParameters.sample(np.random.default_rng(0), "normal"), (32, 32)).simulate(2)
    with pytest.raises(ValueError, match="label"):
        writer.add(normal, "v")
