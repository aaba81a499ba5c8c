"""Write simulated breast probe-motion videos in the BUSV layout (Lin et al., MICCAI 2022)::

    root/rawframes/<video>/000000.png, 000001.png, ...
    root/imagenet_vid_{train,val}.json     COCO-VID: videos, images, annotations (bbox [x, y, w, h]), categories

Category ids: 1 benign, 2 malignant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echo_monai.data.atomic import write_json, write_png
from echo_monai.data.phantom.breast import BreastSequence

__all__ = ["BUSV_CATEGORIES", "BUSVWriter"]

BUSV_CATEGORIES = ({"id": 1, "name": "benign"}, {"id": 2, "name": "malignant"})
_SPLITS = ("train", "val")


class BUSVWriter:
    """Write breast videos as PNG frames plus one COCO-VID JSON per split.

    Args:
        root: dataset folder (created).

    Example:
        >>> with BUSVWriter("busv") as writer:
        ...     writer.add(video, "2cda21c3aab26332", split="train")
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        (self.root / "rawframes").mkdir(parents=True, exist_ok=True)
        self._coco = {split: {"videos": [], "images": [], "annotations": []} for split in _SPLITS}
        self._next_id = {"video": 1, "image": 1, "annotation": 1}

    def add(self, sequence: BreastSequence, video: str, split: str = "train") -> Path:
        """Write one video's frames and queue its annotations (one box per frame where the lesion is visible).

        Args:
            sequence: a benign or malignant breast video.
            video: folder name under ``rawframes/``.
            split: ``"train"`` or ``"val"``.

        Returns:
            The video's frame folder.
        """
        if split not in _SPLITS:
            raise ValueError(f"BUSVWriter.add: split must be one of {_SPLITS}, got {split!r}.")
        names = {c["name"]: c["id"] for c in BUSV_CATEGORIES}
        if sequence.label not in names:
            raise ValueError(f"BUSVWriter.add: label must be one of {sorted(names)}, got {sequence.label!r}.")
        coco = self._coco[split]
        video_id = self._next_id["video"]
        self._next_id["video"] += 1
        coco["videos"].append({"id": video_id, "name": video})
        folder = self.root / "rawframes" / video
        height, width = sequence.frames.shape[1:]
        for index, (frame, box) in enumerate(zip(sequence.frames, sequence.boxes, strict=False)):
            file_name = f"{video}/{index:06d}.png"
            write_png(self.root / "rawframes" / file_name, np.repeat(frame[:, :, None], 3, axis=2))
            image_id = self._next_id["image"]
            self._next_id["image"] += 1
            coco["images"].append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": int(width),
                    "height": int(height),
                    "video_id": video_id,
                    "frame_id": index,
                }
            )
            if box[2] > 0 and box[3] > 0:
                coco["annotations"].append(
                    {
                        "id": self._next_id["annotation"],
                        "image_id": image_id,
                        "video_id": video_id,
                        "category_id": names[sequence.label],
                        "instance_id": video_id,
                        "bbox": [float(v) for v in box],
                        "area": float(box[2] * box[3]),
                        "iscrowd": 0,
                    }
                )
                self._next_id["annotation"] += 1
        return folder

    def close(self) -> Path:
        """Write ``imagenet_vid_{train,val}.json`` for the splits that have videos; returns the dataset root."""
        for split, coco in self._coco.items():
            if coco["videos"]:
                write_json(self.root / f"imagenet_vid_{split}.json", {**coco, "categories": list(BUSV_CATEGORIES)})
        return self.root

    def __enter__(self) -> BUSVWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
