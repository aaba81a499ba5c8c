"""BUSI reader: breast ultrasound images, benign / malignant / normal, with lesion masks.

Al-Dhabyani et al., "Dataset of breast ultrasound images", Data in Brief 28, 2020.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from echo_monai.data.reader_base import OnInvalid, ReaderDataset

__all__ = ["BUSI", "read_grey_png"]

_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<index>\d+))?$")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_grey_png(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W)`` ``uint8`` grey levels, naming the file when it cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist.")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"image file {str(path)!r} could not be decoded; expected a PNG/JPEG image.")
    return image


class BUSI(ReaderDataset):
    """BUSI: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/NAME (k).png`` with ``NAME (k)_mask.png``.

    Some images have several lesion masks (``_mask``, ``_mask_1``, ``_mask_2``); they are merged by union.
    Normal images come with an all-zero mask. Every image must have at least one mask and every mask the size
    of its image. The class is the folder: a folder of images beside the class folders whose name is not one of
    :attr:`CLASSES` is reported (with the allowed names), and so is an image named after another class than its
    folder's (``malignant (3).png`` in ``benign/``).

    Each item is a dict:

    * ``image``: ``(1, H, W)`` float32 torch tensor, grey levels in [0, 255] (sizes vary, about 500 x 600).
    * ``mask``: ``(1, H, W)`` uint8 torch tensor in {0, 1}, union of the lesion masks (mask pixels >= 128).
    * ``label``: str, ``"benign"``, ``"malignant"`` or ``"normal"``.
    * ``label_index``: int, position of ``label`` in :attr:`CLASSES` (0, 1, 2).
    * ``filename``: str, image path relative to the class folders' parent, e.g. ``"benign/benign (1).png"``.

    Args:
        root: ``Dataset_BUSI_with_GT`` or its parent folder.
        classes: subset of :attr:`CLASSES` to read.
        transform: MONAI transform applied to each item dict.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad items (``self.invalid``).
        validate: load every item at construction to check image/mask sizes (default: when skipping).

    Example:
        >>> dataset = BUSI("Dataset_BUSI_with_GT", classes=("benign", "malignant"))
        >>> item = dataset[0]
        >>> item["image"].shape, item["mask"].max(), item["label"]
    """

    CLASSES = ("benign", "malignant", "normal")

    def __init__(
        self,
        root: str | os.PathLike,
        classes: Sequence[str] = CLASSES,
        transform: Sequence[Callable] | Callable | None = None,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        classes = [classes] if isinstance(classes, str) else list(classes)
        if not classes or any(c not in self.CLASSES for c in classes):
            raise ValueError(f"BUSI: classes must be a non-empty subset of {self.CLASSES}, got {classes!r}.")
        super().__init__(transform=transform, on_invalid=on_invalid, validate=validate)
        root = Path(root)
        self.root = root / "Dataset_BUSI_with_GT" if (root / "Dataset_BUSI_with_GT").is_dir() else root
        missing_folders = [str(self.root / c) for c in classes if not (self.root / c).is_dir()]
        if missing_folders:
            raise FileNotFoundError(f"BUSI: class folder(s) {missing_folders} do not exist; expected {classes}.")
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            count = sum(1 for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if folder.name not in self.CLASSES and count:
                self.reject(
                    f"{folder.name}/",
                    f"folder {str(folder)!r} holds {count} image(s) but {folder.name!r} is not a BUSI class; "
                    f"expected class folders {list(self.CLASSES)}.",
                )
        records = []
        for label in classes:
            images: dict[str, Path] = {}
            masks: dict[str, list[Path]] = {}
            for path in sorted((self.root / label).iterdir()):
                if path.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                match = _MASK.match(path.stem)
                if match:
                    masks.setdefault(match["stem"], []).append(path)
                else:
                    images[path.stem] = path
            for stem, path in images.items():
                name = f"{label}/{path.name}"
                named = next((c for c in self.CLASSES if stem.lower().startswith(f"{c} (")), label)
                if named != label:
                    masks.pop(stem, None)
                    self.reject(
                        name,
                        f"image {str(path)!r} is named as class {named!r} but lies in folder {label!r}; expected "
                        f"'{label} (k)' names in {label}/.",
                    )
                    continue
                if stem not in masks:
                    self.reject(name, f"mask {str(path.with_name(stem + '_mask.png'))!r} is missing.", missing=True)
                    continue
                records.append(
                    {
                        "filename": name,
                        "image_path": str(path),
                        "label": label,
                        "mask_paths": [str(p) for p in sorted(masks.pop(stem))],
                    }
                )
            for stem, paths in masks.items():
                image_path = str(paths[0].with_name(stem + ".png"))
                self.reject(f"{label}/{paths[0].name}", f"mask without image {image_path!r}.", missing=True)
        self._finalize(records, key="filename")

    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        image = read_grey_png(record["image_path"])
        mask = np.zeros(image.shape, dtype=np.uint8)
        for path in record["mask_paths"]:
            part = read_grey_png(path)
            if part.shape != image.shape:
                raise ValueError(
                    f"BUSI: mask {path!r} has size {part.shape} but image {record['image_path']!r} has {image.shape}; "
                    "expected equal sizes."
                )
            mask |= (part >= 128).astype(np.uint8)
        return {
            "image": torch.from_numpy(image.astype(np.float32)[None]),
            "mask": torch.from_numpy(mask[None]),
            "label": record["label"],
            "label_index": self.CLASSES.index(record["label"]),
            "filename": record["filename"],
        }
