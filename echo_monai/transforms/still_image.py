"""Still ultrasound images for image-to-video models: load any grey image, crop to the lesion, letterbox, and fold the
seed image onto a latent grid.

LDDM (Chen et al., MICCAI 2024) animates a BUSI image: its data scripts crop each frame around the lesion box and
letterbox the crop to a square (224 x 224) so that the aspect ratio is kept. The same chain runs on training clips
``(C, T, H, W)`` and on the image to animate ``(C, H, W)``, so an image is prepared exactly as the model was trained:

    LoadGreyImaged -> LesionCropd (optional) -> LetterboxResized -> ScaleIntensityRanged -> SpaceToDepthd
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.networks.utils import pixelunshuffle
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

__all__ = ["LesionCropd", "LetterboxResized", "LoadGreyImaged", "SpaceToDepthd", "read_grey_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _to_grey(array: np.ndarray, path: Path, channel_axis: int = -1) -> np.ndarray:
    """``(H, W)`` stays; 3 (RGB/BGR) or 4 (with alpha) channels become luminance; anything else is refused."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[channel_axis] in (3, 4):
        colour = np.moveaxis(array, channel_axis, -1)[..., :3].astype(np.float32)
        return colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma (channels as RGB)
    if array.ndim == 3 and array.shape[channel_axis] == 1:
        return np.take(array, 0, axis=channel_axis)
    raise ValueError(
        f"image file {str(path)!r} has shape {array.shape}; expected one 2D image, grey (H, W) or with 1, 3 (RGB) or "
        "4 (RGBA) channels."
    )


def read_grey_image(path: str | os.PathLike) -> np.ndarray:
    """Read one 2D ultrasound image as ``(H, W)`` float32 grey levels in [0, 255].

    PNG / JPEG / BMP / TIFF (OpenCV), DICOM (pydicom: a single frame; 16-bit data scaled from ``BitsStored`` to
    0-255) and NIfTI (nibabel: a 2D image or ``(H, W, 1)``, values used as grey levels) are read. Colour images (3 or
    4 channels, as BUSI's PNGs are stored) become their luminance.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, when it cannot be decoded, is not one 2D image (a cine, a volume) or has
            another number of channels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist.")
    suffix = _suffix(path)
    if suffix in DICOM_SUFFIXES:
        import pydicom

        try:
            ds = pydicom.dcmread(str(path))
            array = ds.pixel_array
        except Exception as error:  # noqa: BLE001 - any pydicom failure is a file the user must fix
            raise ValueError(f"image file {str(path)!r} could not be read as DICOM: {error}") from error
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ValueError(
                f"image file {str(path)!r} is a DICOM cine of {frames} frames; expected one 2D image (export the "
                "frame to animate)."
            )
        grey = _to_grey(np.asarray(array), path, channel_axis=-1).astype(np.float32)
        bits = int(getattr(ds, "BitsStored", 8) or 8)
        return grey * (255.0 / (2**bits - 1)) if bits > 8 else grey
    if suffix in NIFTI_SUFFIXES:
        import nibabel as nib

        try:
            array = np.asarray(nib.load(str(path)).dataobj)
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"image file {str(path)!r} could not be read as NIfTI: {error}") from error
        array = (
            array.squeeze(axis=tuple(range(2, array.ndim)))
            if array.ndim > 2 and all(s == 1 for s in array.shape[2:])
            else array
        )
        if array.ndim != 2:
            raise ValueError(
                f"image file {str(path)!r} has NIfTI shape {array.shape}; expected one 2D image (H, W) or (H, W, 1)."
            )
        return np.ascontiguousarray(array.T).astype(np.float32)  # NIfTI (x, y) -> (row, column)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"image file {str(path)!r} has an unknown type; expected one of "
            f"{list(IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES)}."
        )
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"image file {str(path)!r} could not be decoded; expected a {suffix[1:].upper()} image.")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., [2, 1, 0, *([3] if array.shape[2] == 4 else [])]]  # OpenCV's BGR(A) -> RGB(A)
    grey = _to_grey(array, path).astype(np.float32)
    return grey * (255.0 / 65535.0) if array.dtype == np.uint16 else grey


class LoadGreyImaged(MapTransform):
    """Load one grey image per key into ``(1, H, W)`` float32 (see :func:`read_grey_image`).

    A value may be a path, an ``(H, W)`` / ``(1, H, W)`` array, or (``binary=True``) a list of paths whose masks are
    merged by union (BUSI's ``_mask``, ``_mask_1``...). Binary masks are ``> 127`` (``> 0.5`` for float arrays in
    [0, 1]) and come out in {0, 1}. A key whose value is None stays None (an image without a mask).

    Args:
        keys: image or mask keys.
        binary: threshold to a {0, 1} mask.
        allow_missing_keys: do not raise for absent keys.

    Example:
        >>> load = LoadGreyImaged(["image"]) ; load({"image": "benign (1).png"})["image"].shape   # (1, H, W)
    """

    def __init__(self, keys: KeysCollection, binary: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binary = bool(binary)

    def _one(self, value: Any) -> np.ndarray:
        if isinstance(value, (str, os.PathLike)):
            array = read_grey_image(value)
            return (array > 127).astype(np.float32) if self.binary else array
        array = np.asarray(torch.as_tensor(value).as_subclass(torch.Tensor).float())
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ValueError(f"LoadGreyImaged: expected an image (H, W) or (1, H, W), got shape {array.shape}.")
        if self.binary:
            array = (array > (0.5 if array.max(initial=0) <= 1 else 127)).astype(np.float32)
        return array.astype(np.float32)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if value is None:
                continue
            if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
                if not value:
                    d[key] = None
                    continue
                arrays = [self._one(v) for v in value]
                shapes = {a.shape for a in arrays}
                if len(shapes) > 1:
                    raise ValueError(f"LoadGreyImaged: '{key}' files {list(map(str, value))} differ in size {shapes}.")
                d[key] = torch.from_numpy(np.maximum.reduce(arrays)[None].copy())
            else:
                d[key] = torch.from_numpy(self._one(value)[None].copy())
        return d


def _spatial(value: torch.Tensor, key: Hashable, owner: str) -> tuple[int, int]:
    if value.ndim not in (3, 4):
        raise ValueError(
            f"{owner}: '{key}' must be an image (C, H, W) or a video (C, T, H, W), got {tuple(value.shape)}."
        )
    return int(value.shape[-2]), int(value.shape[-1])


class LesionCropd(MapTransform):
    """Crop images and videos to a square around the lesion, as LDDM's data scripts do before letterboxing.

    The lesion box is the union of the finite rows of ``box_key`` (``(T, 4)`` or ``(4,)``, ``[x1, y1, x2, y2]``
    pixels, NaN rows for frames without a box: the BUSV reader's ``boxes``) or the bounding box of ``mask_key``
    (``(1, H, W)``, BUSI's lesion mask). The crop is that box grown by ``margin`` times its larger side on every side,
    made square and moved inside the frame (smaller than the box only when the frame is). Without a box (a normal
    image, a video without annotations) the item is left uncropped, or refused when ``require``.

    Args:
        keys: images ``(C, H, W)`` / videos ``(C, T, H, W)`` cropped alike (masks included).
        box_key: item key of the boxes; or
        mask_key: item key of the lesion mask (one of the two).
        margin: context around the box, as a fraction of its larger side.
        require: raise when the item has no box.
        allow_missing_keys: do not raise for absent keys; None values stay None.

    Example:
        >>> crop = LesionCropd(["video"], box_key="boxes", margin=0.5)
    """

    def __init__(
        self,
        keys: KeysCollection,
        box_key: str | None = None,
        mask_key: str | None = None,
        margin: float = 0.5,
        require: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if (box_key is None) == (mask_key is None):
            raise ValueError("LesionCropd: give exactly one of box_key and mask_key.")
        if margin < 0:
            raise ValueError(f"LesionCropd: margin must be >= 0, got {margin}.")
        self.box_key, self.mask_key, self.margin, self.require = box_key, mask_key, float(margin), bool(require)

    def lesion_box(self, d: Mapping[Hashable, Any]) -> np.ndarray | None:
        """``[x1, y1, x2, y2]`` of the lesion in pixels, or None."""
        if self.box_key is not None:
            boxes = np.asarray(torch.as_tensor(d[self.box_key]).as_subclass(torch.Tensor).float()).reshape(-1, 4)
            boxes = boxes[np.all(np.isfinite(boxes), axis=1)]
            if not len(boxes):
                return None
            return np.array([*boxes[:, :2].min(0), *boxes[:, 2:].max(0)], dtype=np.float64)
        mask = d.get(self.mask_key)
        if mask is None:
            return None
        rows, cols = np.nonzero(np.asarray(torch.as_tensor(mask).as_subclass(torch.Tensor)).reshape(mask.shape[-2:]))
        if not len(rows):
            return None
        return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = [k for k in self.key_iterator(d) if d[k] is not None]
        box = self.lesion_box(d)
        if box is None:
            if self.require:
                what = next((d[k] for k in ("video_name", "filename", "name") if isinstance(d.get(k), str)), "item")
                raise ValueError(f"LesionCropd: {what!r} has no lesion box ('{self.box_key or self.mask_key}').")
            return d
        if not keys:
            return d
        height, width = _spatial(torch.as_tensor(d[keys[0]]), keys[0], "LesionCropd")
        side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * self.margin)
        side = int(round(min(max(side, 1.0), height, width)))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0 = int(np.clip(round(cx - side / 2), 0, width - side))
        y0 = int(np.clip(round(cy - side / 2), 0, height - side))
        for key in keys:
            value = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
            if _spatial(value, key, "LesionCropd") != (height, width):
                raise ValueError(
                    f"LesionCropd: '{key}' is {tuple(value.shape)}; expected frames of {height} x {width}."
                )
            d[key] = value[..., y0 : y0 + side, x0 : x0 + side].contiguous()
        d[f"{self.box_key or self.mask_key}_crop"] = torch.tensor([x0, y0, x0 + side, y0 + side], dtype=torch.float32)
        return d


class LetterboxResized(MapTransform):
    """Pad images / videos to a square (centred, ``pad_value``) and resize them to ``spatial_size``: the aspect ratio
    is kept, as in LDDM's letterboxed 224 x 224 crops.

    Args:
        keys: images ``(C, H, W)`` or videos ``(C, T, H, W)``; None values stay None.
        spatial_size: output ``(H, W)`` (an int for a square).
        mode: interpolation per key (``"area"`` for images, ``"nearest-exact"`` for masks).
        pad_value: fill of the padding (0 = black, the grey level outside an ultrasound image).
        allow_missing_keys: do not raise for absent keys.

    Example:
        >>> LetterboxResized("image", 112)({"image": torch.ones(1, 100, 150)})["image"].shape   # (1, 112, 112)
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        mode: Sequence[str] | str = "area",
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        size = ensure_tuple_rep(spatial_size, 2)
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise ValueError(f"LetterboxResized: spatial_size must be two positive ints (H, W), got {spatial_size!r}.")
        self.spatial_size = tuple(int(s) for s in size)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.pad_value = float(pad_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            if d[key] is None:
                continue
            value = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
            height, width = _spatial(value, key, "LetterboxResized")
            target_h, target_w = self.spatial_size
            scale = min(target_h / height, target_w / width)  # the padded frame has the target's aspect ratio
            pad_h, pad_w = round(target_h / scale) - height, round(target_w / scale) - width
            frames = value.float().reshape(-1, 1, height, width)
            frames = F.pad(
                frames, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=self.pad_value
            )
            resized = F.interpolate(frames, size=self.spatial_size, mode=mode)
            d[key] = resized.reshape(*value.shape[:-2], *self.spatial_size).to(
                value.dtype if value.dtype.is_floating_point else torch.float32
            )
        return d


class SpaceToDepthd(MapTransform):
    """Fold an image ``(C, H, W)`` into ``(C * f**2, H / f, W / f)`` (pixel unshuffle): the seed image on the latent
    grid, without losing a pixel, to concatenate to a latent video of downsampling factor ``f``.

    Args:
        keys: image keys.
        factor: ``f``; H and W must divide by it.
        names: output keys (default: in place).

    Example:
        >>> SpaceToDepthd("first_frame", 4, names="reference")({"first_frame": torch.zeros(1, 112, 112)})["reference"]
        ... # (16, 28, 28)
    """

    def __init__(self, keys: KeysCollection, factor: int, names: KeysCollection | None = None) -> None:
        super().__init__(keys)
        if int(factor) < 1:
            raise ValueError(f"SpaceToDepthd: factor must be >= 1, got {factor}.")
        self.factor = int(factor)
        self.names = ensure_tuple_rep(names, len(self.keys)) if names is not None else self.keys

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, name in zip(self.keys, self.names, strict=True):
            value = torch.as_tensor(d[key]).as_subclass(torch.Tensor)
            if value.ndim != 3 or value.shape[1] % self.factor or value.shape[2] % self.factor:
                raise ValueError(
                    f"SpaceToDepthd: '{key}' must be an image (C, H, W) with H and W divisible by {self.factor}, got "
                    f"{tuple(value.shape)}."
                )
            d[name] = pixelunshuffle(value[None].float(), spatial_dims=2, scale_factor=self.factor)[0]
        return d
