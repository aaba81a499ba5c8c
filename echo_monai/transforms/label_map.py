"""Cardiac label maps for label-guided generation ("Echo from noise", Stojanovski et al., ASMUS 2023).

The paper conditions its DDPM on label maps with five classes: the CAMUS structures plus the ultrasound sector,
so that the model knows where the image is black (outside the cone) and where it shows tissue. Here:

=====  =======================  ==============================
index  class                    from
=====  =======================  ==============================
0      outside the sector       not in the sector mask
1      in-sector background     CAMUS 0 inside the sector
2      LV cavity                CAMUS 1
3      myocardium               CAMUS 2
4      left atrium              CAMUS 3
=====  =======================  ==============================

The sector comes from the image's non-zero cone (its convex hull) when an image is present, else from a default
fan geometry (for label maps given alone, as at generation time).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = [
    "SEG_DDPM_CLASSES",
    "CAMUS_CLASSES",
    "fan_sector_mask",
    "sector_from_image",
    "SectorMaskd",
    "EchoLabelMapd",
    "LoadLabelMapd",
    "check_label_values",
    "control_map_transforms",
    "label_map_condition",
]

CAMUS_CLASSES = ("background", "lv_cavity", "myocardium", "left_atrium")
SEG_DDPM_CLASSES = ("outside_sector", "background", "lv_cavity", "myocardium", "left_atrium")


def _name(data: Mapping[Hashable, Any], key: Hashable) -> str:
    """A file name for error messages: the item's ``filename_or_obj`` meta, its ``name``/``patient``, or the key."""
    value = data.get(key)
    meta = getattr(value, "meta", None) or data.get(f"{key}_meta_dict") or {}
    for candidate in (meta.get("filename_or_obj"), data.get("filename"), data.get("name"), data.get("patient")):
        if candidate:
            return str(candidate)
    return f"key '{key}'"


def check_label_values(label: np.ndarray | torch.Tensor, num_classes: int, name: str = "label map") -> None:
    """Raise ``ValueError`` naming ``name`` and the values of ``label`` outside ``0..num_classes-1``."""
    values = np.unique(np.asarray(label))
    bad = [v for v in values.tolist() if v != int(v) or not 0 <= v < num_classes]
    if bad:
        raise ValueError(
            f"{name}: label values {bad[:10]} are outside the classes 0..{num_classes - 1} "
            f"(found {values.tolist()[:12]})."
        )


def fan_sector_mask(height: int, width: int, opening_deg: float = 75.0, apex_row: float = 0.0) -> np.ndarray:
    """A default apical fan: apex at the top centre, ``opening_deg`` wide, reaching the bottom edge; ``(H, W)`` bool."""
    if not 0 < opening_deg < 180:
        raise ValueError(f"fan_sector_mask: opening_deg must be in (0, 180), got {opening_deg}.")
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = rows - apex_row, cols - (width - 1) / 2.0
    angle = np.degrees(np.arctan2(np.abs(dx), np.maximum(dy, 1e-9)))
    radius = np.hypot(dx, dy)
    return (dy >= 0) & (angle <= opening_deg / 2.0) & (radius <= height - apex_row)


def sector_from_image(image: np.ndarray, threshold: float = 0.0, min_fraction: float = 0.05) -> np.ndarray:
    """The ultrasound cone of an image ``(H, W)``: the convex hull of the pixels above ``threshold``; ``(H, W)`` bool.

    Raises:
        ValueError: when fewer than ``min_fraction`` of the pixels are above ``threshold`` (an empty image).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"sector_from_image: expected an (H, W) image, got shape {image.shape}.")
    points = cv2.findNonZero((image > threshold).astype(np.uint8))
    if points is None or len(points) < min_fraction * image.size:
        raise ValueError(
            f"sector_from_image: only {0 if points is None else len(points)} of {image.size} pixels are above "
            f"{threshold}; cannot find the ultrasound sector."
        )
    mask = np.zeros(image.shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    return mask.astype(bool)


class SectorMaskd(MapTransform):
    """Add the sector mask ``(1, H, W)`` uint8 under ``output_key``: from the image when present, else a default fan.

    Args:
        keys: the image key, ``(1, H, W)`` in its source range (0 outside the cone); may be missing with
            ``allow_missing_keys=True``, then the fan of the label's size is used.
        label_key: gives the size of the default fan when the image is missing.
        output_key: where the mask goes.
        threshold: grey level above which a pixel is in the cone.
        opening_deg: opening of the default fan.
        allow_missing_keys: do not fail when the image is missing.

    Example:
        >>> SectorMaskd("image", label_key="label")({"image": img, "label": lab})["sector"].shape
        (1, 256, 256)
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        label_key: str = "label",
        output_key: str = "sector",
        threshold: float = 0.0,
        opening_deg: float = 75.0,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key, self.output_key = label_key, output_key
        self.threshold, self.opening_deg = float(threshold), float(opening_deg)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = [k for k in self.key_iterator(d)]
        if present:
            image = np.asarray(d[present[0]])[0]
            mask = sector_from_image(image, self.threshold)
        else:
            if self.label_key not in d:
                raise KeyError(
                    f"SectorMaskd: neither the image {list(self.keys)} nor '{self.label_key}' is in the item."
                )
            h, w = np.asarray(d[self.label_key]).shape[-2:]
            mask = fan_sector_mask(h, w, self.opening_deg)
        d[self.output_key] = torch.from_numpy(mask[None].astype(np.uint8))
        return d


class EchoLabelMapd(MapTransform):
    """CAMUS labels + sector → the 5-class label map of Echo from noise, ``(1, H, W)`` int64 indices.

    Resize and augment the indices with nearest-neighbour interpolation, then one-hot them for SPADE with MONAI's
    ``AsDiscreted(keys="label_map", to_onehot=5)``.

    Args:
        keys: the CAMUS label key(s), ``(1, H, W)`` with values in {0, 1, 2, 3}.
        sector_key: the sector mask key ``(1, H, W)`` (see :class:`SectorMaskd`); None when the labels already
            carry the 5 classes (``input_classes=5``).
        output_key: where the label map goes (None replaces the label).
        input_classes: 4 (CAMUS labels) or 5 (already a label map with the sector class).

    Raises:
        ValueError: naming the file when label values fall outside the input classes, or when label and sector
            sizes differ.

    Example:
        >>> EchoLabelMapd("label", sector_key="sector", output_key="label_map")(item)["label_map"].shape
        (1, 256, 256)
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        sector_key: str | None = "sector",
        output_key: str | None = "label_map",
        input_classes: int = 4,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if input_classes not in (4, 5):
            raise ValueError(f"EchoLabelMapd: input_classes must be 4 (CAMUS) or 5 (with sector), got {input_classes}.")
        if input_classes == 4 and sector_key is None:
            raise ValueError("EchoLabelMapd: CAMUS labels (input_classes=4) need a sector_key.")
        self.sector_key, self.output_key, self.input_classes = sector_key, output_key, input_classes

    def label_map(self, label: np.ndarray, sector: np.ndarray | None, name: str) -> np.ndarray:
        """``(H, W)`` CAMUS labels (+ sector) → ``(H, W)`` int64 indices in 0..4."""
        check_label_values(label, self.input_classes, name)
        label = label.astype(np.int64)
        if self.input_classes == 5:
            return label
        if sector is None or sector.shape != label.shape:
            raise ValueError(
                f"{name}: label of size {label.shape} needs a sector mask of the same size, "
                f"got {None if sector is None else sector.shape}."
            )
        return np.where(sector.astype(bool) | (label > 0), label + 1, 0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = np.asarray(d[key])
            if label.ndim != 3 or label.shape[0] != 1:
                raise ValueError(f"{_name(d, key)}: expected a label of shape (1, H, W), got {label.shape}.")
            sector = None
            if self.sector_key is not None and self.input_classes == 4:
                if self.sector_key not in d:
                    raise KeyError(f"EchoLabelMapd: sector key '{self.sector_key}' missing; add SectorMaskd first.")
                sector = np.asarray(d[self.sector_key])[0]
            d[self.output_key or key] = torch.from_numpy(self.label_map(label[0], sector, _name(d, key))[None])
        return d


class LoadLabelMapd(MapTransform):
    """Load label maps from CAMUS ``_gt`` NIfTI/MetaImage, other NIfTI or PNG files into ``(1, H, W)`` int64.

    NIfTI and MetaImage files are read with the CAMUS reader's convention (transposed to ``(H, W)``); PNG files
    are read as grey levels. The path is kept under ``filename``. The matching images (``image_keys``, when the
    item has them) load as ``(1, H, W)`` float32, so that the sector can come from the real cone.

    Args:
        keys: keys holding label map paths.
        expected_size: ``(H, W)`` the files must have, or None to accept any.
        image_keys: keys of optional image paths of the same size.

    Raises:
        FileNotFoundError / ValueError: naming the file (missing, unreadable, not 2D, wrong size).
    """

    def __init__(
        self, keys: KeysCollection = "label", expected_size: Sequence[int] | None = None, image_keys: Sequence[str] = ()
    ) -> None:
        super().__init__(keys)
        self.expected_size = tuple(expected_size) if expected_size is not None else None
        self.image_keys = [image_keys] if isinstance(image_keys, str) else list(image_keys)

    @staticmethod
    def read(path: str | os.PathLike) -> np.ndarray:
        path = str(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"label map {path!r} does not exist.")
        if path.lower().endswith(".png"):
            array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if array is None:
                raise ValueError(f"label map {path!r} is not a readable PNG.")
            array = array[..., 0] if array.ndim == 3 else array
        else:
            from echo_monai.data.camus import read_camus_image

            array, _ = read_camus_image(path)
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(f"label map {path!r} must be a 2D image, got shape {array.shape}.")
        return array

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            array = self.read(path)
            if self.expected_size is not None and array.shape != self.expected_size:
                raise ValueError(f"label map {str(path)!r} has size {array.shape}; expected {self.expected_size}.")
            d.setdefault("filename", str(path))
            d[key] = torch.from_numpy(np.rint(array).astype(np.int64)[None])
            for image_key in self.image_keys:
                if d.get(image_key) is None or isinstance(d[image_key], torch.Tensor):
                    continue
                image = self.read(d[image_key])
                if image.shape != array.shape:
                    raise ValueError(
                        f"image {str(d[image_key])!r} has size {image.shape} but its label map {str(path)!r} "
                        f"has {array.shape}."
                    )
                d[image_key] = torch.from_numpy(image.astype(np.float32)[None])
        return d


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(H, W)``: a side twice, or the first two of a sequence."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def label_map_condition(
    image_size: int | Sequence[int],
    num_classes: int = len(SEG_DDPM_CLASSES),
    control_size: int | Sequence[int] | None = None,
    resize: bool = False,
    image_keys: Sequence[str] = ("image",),
) -> list:
    """The transforms that turn a request's label map file into the conditions of a label-guided generator.

    ``{"label": path[, "image": path]}`` -> ``label_map`` ``(num_classes, H, W)`` float one-hot at ``image_size``
    (the 5 classes above; the sector from the image when given, else the default fan), and with ``control_size``
    ``control_map``: the same one-hot area-averaged to that grid (a ControlNet's control image on the latent grid).

    Args:
        image_size: ``H`` (square) or ``(H, W)`` of the generated images.
        num_classes: one-hot channels.
        control_size: side or ``(h, w)`` of ``control_map``; None for no ``control_map``.
        resize: resample a label map of another size (nearest) instead of refusing it.
        image_keys: request keys of the label map's image (read for the sector when present).

    Raises:
        ValueError: (when the transforms run) for a label map of another size without ``resize``, or with values
            outside the CAMUS labels, naming the file.

    Example:
        >>> transform = Compose(label_map_condition(64, control_size=16))
        >>> item = transform({"label": "patient0001_2CH_ED_gt.nii.gz"})   # label_map (5, 64, 64), control (5, 16, 16)
    """
    from monai.transforms import AsDiscreted, EnsureTyped

    from echo_monai.transforms.condition_map import ModelSized

    transforms = [
        LoadLabelMapd("label", image_keys=list(image_keys)),
        SectorMaskd("image", label_key="label"),
        EchoLabelMapd("label", sector_key="sector", output_key="label_map"),
        ModelSized("label_map", _pair(image_size), resize=resize),
        AsDiscreted("label_map", to_onehot=num_classes),
    ]
    if control_size is not None:
        return [*transforms, *control_map_transforms(control_size)]
    return [*transforms, EnsureTyped("label_map", dtype=torch.float32, track_meta=False)]


def control_map_transforms(control_size: int | Sequence[int]) -> list:
    """A one-hot ``label_map`` ``(num_classes, H, W)`` -> the same plus ``control_map``: it area-averaged to the
    ``control_size`` grid (a ControlNet's control image on the latent grid); both float32 without metadata. The end of
    :func:`label_map_condition`, for a label map that is already one-hot (a pipeline network's input).

    Example:
        >>> item = Compose(control_map_transforms(16))({"label_map": one_hot})   # control_map (5, 16, 16)
    """
    from monai.transforms import CopyItemsd, EnsureTyped, Resized

    return [
        CopyItemsd("label_map", names="control_map"),
        Resized("control_map", spatial_size=_pair(control_size), mode="area"),
        EnsureTyped(["label_map", "control_map"], dtype=torch.float32, track_meta=False),
    ]
