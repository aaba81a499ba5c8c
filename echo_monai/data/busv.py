"""BUSV reader: breast ultrasound videos stored as PNG frames, with per-frame lesion boxes (COCO-VID JSON).

Lin et al., "A New Dataset and a Baseline Model for Breast Lesion Detection in Ultrasound Videos", MICCAI 2022.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from echo_monai.data.busi import read_grey_png
from echo_monai.data.reader_base import OnInvalid, ReaderDataset

__all__ = ["BUSV"]


def _is_coco(path: Path) -> bool:
    """Whether a JSON file found in the dataset folder looks like COCO (a dict with ``images``); reports, settings
    and fingerprints beside a generated dataset are not annotations."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # a broken annotation file is reported, naming it, when it is read
    return isinstance(content, dict) and "images" in content


class BUSV(ReaderDataset):
    """BUSV: ``rawframes/<video>/000000.png ...`` plus COCO-style JSON annotations.

    The JSON files hold ``images`` (``id``, ``file_name`` relative to ``rawframes/``, optional ``video_id`` and
    ``frame_id``), ``annotations`` (``image_id``, ``bbox`` ``[x, y, w, h]`` in pixels, ``category_id``),
    ``categories`` (``benign``/``malignant``) and optionally ``videos`` (``id``, ``name``). Frames are grouped by
    ``video_id`` (else by folder) and ordered by ``frame_id`` (else by file name). The video's class is the most
    frequent category among its boxes, or the ``benign``/``malignant`` folder in its path when it has none.

    At construction a video is reported when one of its boxes has a ``category_id`` missing from ``categories`` or
    naming another class than :attr:`CLASSES`, or a ``bbox`` that is not four finite numbers with ``x, y >= 0``
    and ``w, h > 0``; on access, when a box leaves its frame by more than one pixel or a frame's size differs from
    the ``height``/``width`` its JSON entry gives.

    Each item is a dict:

    * ``video``: ``(1, T, H, W)`` float32 torch tensor, grey levels in [0, 255].
    * ``boxes``: ``(T, 4)`` float32 torch tensor, one lesion box per frame in pixels, ``[x1, y1, x2, y2]``
      (``box_format="xyxy"``, MONAI's default) or ``[x, y, w, h]`` (``"xywh"``, as in the JSON); the largest
      box when a frame has several, NaN for frames without a box.
    * ``label``: str, ``"benign"`` or ``"malignant"``; ``label_index``: int, 0 or 1.
    * ``video_name``: str, the video's folder relative to ``rawframes/``.

    Args:
        root: folder holding ``rawframes/`` and the JSON file(s).
        annotation_files: JSON files to read; ``None`` reads every COCO ``*.json`` (a dict with ``images``) in
            ``root`` and ``root/annotations``.
        box_format: ``"xyxy"`` or ``"xywh"``.
        transform: MONAI transform applied to each item dict.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad items (``self.invalid``).
        validate: load every video at construction to check its frames decode with one size (default: when skipping).

    Example:
        >>> dataset = BUSV("BUV_dataset", annotation_files=["BUV_dataset/imagenet_vid_val.json"])
        >>> item = dataset[0]
        >>> item["video"].shape, item["boxes"].shape, item["label"]   # (1, T, H, W), (T, 4), "malignant"
    """

    CLASSES = ("benign", "malignant")
    BOX_FORMATS = ("xyxy", "xywh")

    def __init__(
        self,
        root: str | os.PathLike,
        annotation_files: Sequence[str | os.PathLike] | None = None,
        box_format: str = "xyxy",
        transform: Sequence[Callable] | Callable | None = None,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        if box_format not in self.BOX_FORMATS:
            raise ValueError(f"BUSV: box_format must be one of {self.BOX_FORMATS}, got {box_format!r}.")
        super().__init__(transform=transform, on_invalid=on_invalid, validate=validate)
        self.root, self.box_format = Path(root), box_format
        if annotation_files is None:
            candidates = sorted(self.root.glob("*.json")) + sorted(self.root.glob("annotations/*.json"))
            annotation_files = [p for p in candidates if _is_coco(p)]  # not the generation pipeline's own JSON files
            if not annotation_files:
                raise FileNotFoundError(
                    f"BUSV: no COCO JSON annotation file in {str(self.root)!r} or its annotations/ folder."
                )
        self.annotation_files = [Path(p) for p in annotation_files]
        missing = [str(p) for p in self.annotation_files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"BUSV: annotation file(s) {missing} do not exist.")
        frames_root = self.root / "rawframes" if (self.root / "rawframes").is_dir() else self.root
        records: dict[str, dict[str, Any]] = {}
        for path in self.annotation_files:
            for record in self._index_json(path, frames_root):
                records.setdefault(record["video_name"], record)
        self._finalize(list(records.values()), key="video_name")

    def _index_json(self, path: Path, frames_root: Path) -> list[dict[str, Any]]:
        try:
            coco = json.loads(path.read_text())
            categories = {c["id"]: c["name"].lower() for c in coco.get("categories", [])}
            images = coco["images"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"BUSV: {str(path)!r} is not COCO JSON with 'images' and 'categories': {error}") from error
        names = {v["id"]: v.get("name", str(v["id"])) for v in coco.get("videos", [])}
        boxes_of: dict[Any, list[tuple[list[float], str]]] = {}
        box_problems: dict[Any, list[str]] = {}
        for annotation in coco.get("annotations", []):
            image_id = annotation.get("image_id")
            problem = self._box_problem(annotation, categories)
            if problem:
                box_problems.setdefault(image_id, []).append(problem)
                continue
            boxes_of.setdefault(image_id, []).append(
                ([float(v) for v in annotation["bbox"]], categories[annotation["category_id"]])
            )
        videos: dict[str, list[dict[str, Any]]] = {}
        for image in images:
            folder = str(PurePosixPath(image["file_name"]).parent)
            name = names.get(image["video_id"], folder) if "video_id" in image else folder
            videos.setdefault(name, []).append(image)
        records = []
        for name, frames in videos.items():
            frames.sort(key=lambda im: (im.get("frame_id", 0), im["file_name"]))
            paths = [frames_root / im["file_name"] for im in frames]
            absent = [str(p) for p in paths if not p.is_file()]
            if absent:
                shown = absent[:5] + ([f"... {len(absent) - 5} more"] if len(absent) > 5 else [])
                self.reject(name, f"{len(absent)} frame file(s) listed in {path.name} are missing: {shown}", True)
                continue
            problems = [problem for im in frames for problem in box_problems.get(im["id"], [])]
            if problems:
                shown = problems[:3] + ([f"... {len(problems) - 3} more"] if len(problems) > 3 else [])
                self.reject(name, f"{str(path)!r}: {len(problems)} invalid annotation(s): {'; '.join(shown)}")
                continue
            votes = Counter(cat for im in frames for _, cat in boxes_of.get(im["id"], []))
            parts = set(PurePosixPath(frames[0]["file_name"]).parts)
            label = votes.most_common(1)[0][0] if votes else next((c for c in self.CLASSES if c in parts), None)
            if label is None:
                self.reject(name, f"{path.name}: no benign/malignant category in its boxes or its path.")
                continue
            boxes = np.full((len(frames), 4), np.nan, dtype=np.float32)
            for t, im in enumerate(frames):
                candidates = [box for box, _ in boxes_of.get(im["id"], [])]
                if candidates:
                    boxes[t] = max(candidates, key=lambda b: b[2] * b[3])
            if self.box_format == "xyxy":
                boxes[:, 2:] += boxes[:, :2]
            sizes = [(im.get("height"), im.get("width")) for im in frames]
            records.append(
                {
                    "video_name": name,
                    "frame_paths": [str(p) for p in paths],
                    "boxes": boxes,
                    "label": label,
                    "frame_sizes": sizes,
                    "annotation_file": str(path),
                }
            )
        return records

    def _box_problem(self, annotation: Mapping[str, Any], categories: Mapping[Any, str]) -> str | None:
        """What is wrong with one COCO annotation (its category and box), ``None`` when it is valid."""
        where = f"annotation {annotation.get('id', '?')} of image {annotation.get('image_id')!r}"
        category = annotation.get("category_id")
        if category not in categories:
            return f"{where}: category_id {category!r} is not in 'categories' (ids {sorted(categories, key=str)})"
        if categories[category] not in self.CLASSES:
            return f"{where}: unknown category {categories[category]!r}; expected one of {list(self.CLASSES)}"
        box = annotation.get("bbox")
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            return f"{where}: bbox {box!r}; expected four finite numbers [x, y, w, h]"
        if values[0] < 0 or values[1] < 0 or values[2] <= 0 or values[3] <= 0:
            return f"{where}: bbox {box!r}; expected x, y >= 0 and w, h > 0 pixels"
        return None

    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        frames = [read_grey_png(p) for p in record["frame_paths"]]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(
                f"BUSV: frames of video {record['video_name']!r} have sizes {sorted(shapes)}; expected one size "
                f"(first frame {record['frame_paths'][0]!r})."
            )
        height, width = frames[0].shape
        for path, size in zip(record["frame_paths"], record.get("frame_sizes") or [], strict=False):
            if all(v is not None for v in size) and tuple(str(v).strip() for v in size) != (str(height), str(width)):
                raise ValueError(
                    f"BUSV: frame {path!r} is {height} x {width} but {record['annotation_file']!r} gives height x "
                    f"width {size[0]} x {size[1]}; expected equal sizes."
                )
        boxes = record["boxes"]
        ends = boxes[:, 2:] if self.box_format == "xyxy" else boxes[:, :2] + boxes[:, 2:]
        outside = np.flatnonzero(np.any(ends > np.array([width, height]) + 1.0, axis=1))  # NaN rows compare False
        if outside.size:
            t = int(outside[0])
            raise ValueError(
                f"BUSV: video {record['video_name']!r} frame {t} ({record['frame_paths'][t]!r}) has box "
                f"{boxes[t].tolist()} ({self.box_format}) reaching {ends[t].tolist()}, beyond its {width} x {height} "
                "frame; expected boxes inside the frame (1 pixel tolerance)."
            )
        video = np.stack(frames).astype(np.float32)[None]
        return {
            "video": torch.from_numpy(video),
            "boxes": torch.from_numpy(record["boxes"].copy()),
            "label": record["label"],
            "label_index": self.CLASSES.index(record["label"]),
            "video_name": record["video_name"],
        }
