"""Transforms for latent image models trained on cached latent videos: one frame with its (optional) LV mask, and
class names (echo views) to indices."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import MapTransform, Randomizable

__all__ = ["ClassIndexd", "RandTracedFramed"]


class RandTracedFramed(Randomizable, MapTransform):
    """Pick one frame of a latent video and, when it is a traced frame, its mask as a condition (else a null mask).

    EchoNet-style videos carry LV tracings on two frames only (ED and ES). A mask-conditioned latent image model
    (EchoFlow) learns from every frame, with the mask where there is one and a null mask elsewhere, so that it can
    sample with or without a mask. With probability ``traced_prob`` (and when the video has a traced frame) one traced
    frame is drawn with its mask; otherwise any frame is drawn with the null mask (every pixel ``null_value``).

    Args:
        keys: the latent video key, ``(C, T, h, w)``; replaced by the chosen frame ``(C, h, w)``.
        traced: frame-index key -> mask key, e.g. ``{"ed_frame": "ed_mask", "es_frame": "es_mask"}``; a frame index
            outside ``[0, T)`` (EchoNet readers give -1 without tracings) or a missing key means "not traced". Masks
            are ``(h, w)`` or ``(1, h, w)`` on the latent grid.
        mask_key: output key of the condition mask ``(1, h, w)``.
        traced_prob: probability of drawing a traced frame when there is one.
        null_value: fill of the null mask (outside the mask range, so "no mask" differs from "empty mask").
        frame_key: optional output key of the chosen frame index.

    Raises:
        ValueError: a latent that is not ``(C, T, h, w)``, or a mask whose size differs from the latent grid (naming
            the key).

    Example:
        >>> t = RandTracedFramed("latent", {"ed_frame": "ed_mask"}, traced_prob=1.0)
        >>> out = t({"latent": torch.randn(4, 8, 7, 7), "ed_frame": 2, "ed_mask": torch.ones(1, 7, 7)})
        >>> out["latent"].shape, out["lv_mask"].shape
        (torch.Size([4, 7, 7]), torch.Size([1, 7, 7]))
    """

    def __init__(
        self,
        keys: str = "latent",
        traced: Mapping[str, str] | None = None,
        mask_key: str = "lv_mask",
        traced_prob: float = 0.5,
        null_value: float = -1.0,
        frame_key: str | None = None,
    ) -> None:
        super().__init__(keys)
        if not 0.0 <= traced_prob <= 1.0:
            raise ValueError(f"RandTracedFramed: traced_prob must be in [0, 1], got {traced_prob}.")
        self.traced = dict({"ed_frame": "ed_mask", "es_frame": "es_mask"} if traced is None else traced)
        self.mask_key, self.traced_prob, self.null_value = mask_key, float(traced_prob), float(null_value)
        self.frame_key = frame_key

    def _traced_frames(self, d: Mapping[Hashable, Any], num_frames: int) -> list[tuple[int, str]]:
        found = []
        for frame_key, mask_key in self.traced.items():
            if frame_key not in d or mask_key not in d:
                continue
            frame = int(torch.as_tensor(d[frame_key]).reshape(-1)[0])
            if 0 <= frame < num_frames:
                found.append((frame, mask_key))
        return found

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            video = torch.as_tensor(d[key])
            if video.ndim != 4:
                raise ValueError(
                    f"RandTracedFramed: '{key}' must be a latent video (C, T, h, w), got shape {tuple(video.shape)}."
                )
            traced = self._traced_frames(d, video.shape[1])
            use_traced = bool(traced) and self.R.rand() < self.traced_prob
            if use_traced:
                frame, mask_key = traced[self.R.randint(0, len(traced))]
                mask = torch.as_tensor(d[mask_key]).float()
                mask = mask[None] if mask.ndim == 2 else mask
                if mask.ndim != 3 or mask.shape[0] != 1 or tuple(mask.shape[1:]) != tuple(video.shape[2:]):
                    raise ValueError(
                        f"RandTracedFramed: mask '{mask_key}' has shape {tuple(mask.shape)}; expected (1, "
                        f"{video.shape[2]}, {video.shape[3]}), the latent grid of '{key}' (resize masks to the latent "
                        "size before caching)."
                    )
            else:
                frame = int(self.R.randint(0, video.shape[1]))
                mask = torch.full((1, *video.shape[2:]), self.null_value, dtype=torch.float32)
            d[key] = video[:, frame]
            d[self.mask_key] = mask
            if self.frame_key is not None:
                d[self.frame_key] = frame
        return d


class ClassIndexd(MapTransform):
    """Replace a class name (e.g. the echo view ``"A4C"``) by its index in ``classes``; an index is checked.

    Args:
        keys: keys holding class names or indices.
        classes: the class names in index order (e.g. ``["A4C", "PSAX"]``).
        default: value used when the key is missing (e.g. ``"A4C"`` for EchoNet-Dynamic, which has one view);
            None to require the key.

    Raises:
        KeyError: the key is missing and there is no default.
        ValueError: an unknown class name or an index outside ``[0, len(classes))``, naming the key and the classes.

    Example:
        >>> ClassIndexd("view", ["A4C", "PSAX"], default="A4C")({"view": "PSAX"})["view"]
        1
    """

    def __init__(self, keys: str | Sequence[str], classes: Sequence[str], default: str | int | None = None) -> None:
        super().__init__(keys, allow_missing_keys=default is not None)
        if not classes:
            raise ValueError("ClassIndexd: classes must not be empty.")
        self.classes = [str(c) for c in classes]
        self.default = default

    def index(self, value: Any, key: Hashable = "class") -> int:
        """The index of a class name or of an index, checked against ``classes``."""
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, str) and value in self.classes:
            return self.classes.index(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            if 0 <= int(value) < len(self.classes):
                return int(value)
        raise ValueError(
            f"ClassIndexd: '{key}' is {value!r}; expected one of {self.classes} or an index below {len(self.classes)}."
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if key not in d:
                if self.default is None:
                    raise KeyError(
                        f"ClassIndexd: key '{key}' is missing and no default is set; the item has "
                        f"{sorted(map(str, d))}."
                    )
                d[key] = self.default
            d[key] = self.index(d[key], key)
        return d
