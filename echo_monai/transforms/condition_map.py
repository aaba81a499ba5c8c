"""A request's map condition (an LV mask, say) as a tensor on the model grid, with a null map when it is absent."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from monai.transforms import MapTransform, Resize

__all__ = ["ConditionMapd", "MaskOutsideSector", "ModelSized"]


class ConditionMapd(MapTransform):
    """Load and resample one map per key to ``(1, h, w)``; a missing or None value becomes the null map.

    The value may be an ``(H, W)`` (or ``(1, H, W)``) array or tensor, a ``.npy`` file, or a binary image file
    (``> 0`` is inside); it is resampled to ``spatial_size`` by area averaging (so a mask at image resolution
    becomes the fraction of each latent cell inside it). A key that is absent or None gives the map filled with
    ``null_value`` — the "no condition" input a model trained with condition dropout has learnt (EchoFlow's LV mask
    is -1 everywhere when absent).

    Args:
        keys: the map keys.
        spatial_size: ``(h, w)`` of the model grid.
        null_value: fill of the null map.

    Raises:
        FileNotFoundError: a path that does not exist (naming the key and the file).
        ValueError: a value that is not one map (naming the key and the shape).

    Example:
        >>> t = ConditionMapd("lv_mask", spatial_size=(8, 8), null_value=-1.0)
        >>> t({"lv_mask": np.ones((32, 32))})["lv_mask"].shape, t({})["lv_mask"].unique()
        (torch.Size([1, 8, 8]), tensor([-1.]))
    """

    def __init__(self, keys: str | Sequence[str], spatial_size: Sequence[int], null_value: float = 0.0) -> None:
        super().__init__(keys, allow_missing_keys=True)
        if len(spatial_size) != 2 or any(int(s) < 1 for s in spatial_size):
            raise ValueError(f"ConditionMapd: spatial_size must be (h, w) of positive ints, got {spatial_size}.")
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.null_value = float(null_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            value = d.get(key)
            d[key] = (
                torch.full((1, *self.spatial_size), self.null_value) if value is None else self._resample(key, value)
            )
        return d

    def _resample(self, key: Hashable, value: Any) -> torch.Tensor:
        if isinstance(value, (str, os.PathLike)):
            path = os.fspath(value)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"'{key}' file {path!r} does not exist.")
            if path.endswith(".npy"):
                value = np.load(path)
            else:
                image = np.asarray(iio.imread(path))
                value = (image[..., 0] if image.ndim == 3 else image) > 0  # a binary mask image, 0 / 255
        tensor = torch.as_tensor(np.asarray(value), dtype=torch.float32)
        if tensor.ndim == 3 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 2:
            raise ValueError(f"'{key}' must be one map (H, W), got shape {tuple(tensor.shape)}.")
        if tuple(tensor.shape) != self.spatial_size:
            tensor = torch.nn.functional.interpolate(tensor[None, None], size=self.spatial_size, mode="area")[0, 0]
        return tensor[None]


class ModelSized(MapTransform):
    """Refuse maps of a spatial size other than the network's, or resample them when asked.

    A label map drawn at another size or aspect ratio would otherwise be stretched to the model grid without a word
    (and the synthetic image would show another heart than the one drawn). With ``resize=True`` the map is resampled
    with MONAI's ``Resize`` (``mode``, nearest for label maps).

    Args:
        keys: map keys ``(C, H, W)``.
        spatial_size: ``(H, W)`` the network takes.
        resize: resample a map of another size instead of refusing it.
        mode: interpolation of the resampling.

    Raises:
        ValueError: a map of another size when ``resize`` is False (naming the key, both sizes and the option).

    Example:
        >>> ModelSized("label_map", (112, 112), resize=True)({"label_map": torch.zeros(1, 96, 96)})["label_map"].shape
        torch.Size([1, 112, 112])
    """

    def __init__(
        self, keys: str | Sequence[str], spatial_size: Sequence[int], resize: bool = False, mode: str = "nearest"
    ) -> None:
        super().__init__(keys)
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.resize = bool(resize)
        self.resizer = Resize(self.spatial_size, mode=mode)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            size = tuple(int(s) for s in d[key].shape[1:])
            if size == self.spatial_size:
                continue
            if not self.resize:
                shown = "x".join(map(str, size))
                expected = "x".join(map(str, self.spatial_size))
                raise ValueError(
                    f"'{key}' is {shown} but the network takes {expected}; give maps of that size, or ask for "
                    "resampling (resize=True; in the bundles: resize_label_maps: true)."
                )
            d[key] = self.resizer(d[key])
        return d


class MaskOutsideSector:
    """After sampling: set the pixels the label map places outside the ultrasound sector to the background value.

    An echo image has no signal outside its cone. A label-guided generator (Echo from noise) is told where the cone
    is by the label map's first class, but a few-step sampler still leaves faint speckle there; this step makes the
    synthetic images agree with the label maps they claim (and with real images, whose corners are black).

    Args:
        label_key: the conditioned item's one-hot label map ``(K, H, W)`` (or index map ``(1, H, W)``).
        outside_class: the label-map class of "outside the sector" (0 for the Echo-from-noise classes).
        fill: the value written there, in model range (-1 = black).

    Example:
        >>> masked = MaskOutsideSector()(samples, items)   # samples (B, 1, H, W), items[i]["label_map"] (5, H, W)
    """

    def __init__(self, label_key: str = "label_map", outside_class: int = 0, fill: float = -1.0) -> None:
        self.label_key, self.outside_class, self.fill = label_key, int(outside_class), float(fill)

    def __call__(self, samples: torch.Tensor, items: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """``samples`` ``(B, C, H, W)`` with the outside of each item's sector set to ``fill``."""
        masks = []
        for item in items:
            if self.label_key not in item:
                raise KeyError(f"MaskOutsideSector: the item has no '{self.label_key}'; it has {sorted(item)}.")
            label = torch.as_tensor(item[self.label_key])
            index = label.argmax(0) if label.shape[0] > 1 else label[0].long()
            masks.append(index == self.outside_class)
        outside = torch.stack(masks)[:, None].to(samples.device)
        if outside.shape[-2:] != samples.shape[-2:]:
            raise ValueError(
                f"MaskOutsideSector: label maps of size {tuple(outside.shape[-2:])} for samples of size "
                f"{tuple(samples.shape[-2:])}."
            )
        return samples.masked_fill(outside, self.fill)
