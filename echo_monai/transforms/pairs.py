"""Views for contrastive re-identification: two frames of the same video."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.transforms import MapTransform, Randomizable

__all__ = ["PairedFramesd"]


class PairedFramesd(Randomizable, MapTransform):
    """Draw two different frames of one video ``(C, T, H, W)`` as the two views of a re-identification pair.

    Args:
        keys: the video key (e.g. ``"latent"`` of a latent video cache).
        output_keys: where the two frames ``(C, H, W)`` go.
        min_gap: smallest frame distance between the two views (distinct frames, not just augmentations).

    Example:
        >>> PairedFramesd("latent")({"latent": torch.randn(4, 16, 14, 14)})["view_a"].shape
        torch.Size([4, 14, 14])
    """

    def __init__(self, keys: str = "latent", output_keys: tuple[str, str] = ("view_a", "view_b"), min_gap: int = 1):
        super().__init__(keys)
        if min_gap < 1:
            raise ValueError(f"PairedFramesd: min_gap must be >= 1, got {min_gap}.")
        self.output_keys, self.min_gap = output_keys, int(min_gap)

    def randomize(self, num_frames: int) -> tuple[int, int]:
        first = int(self.R.randint(0, num_frames))
        candidates = [t for t in range(num_frames) if abs(t - first) >= self.min_gap]
        if not candidates:
            raise ValueError(f"PairedFramesd: a video of {num_frames} frames has no two frames {self.min_gap} apart.")
        return first, int(candidates[self.R.randint(0, len(candidates))])

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            video = torch.as_tensor(d[key])
            if video.ndim != 4:
                raise ValueError(
                    f"PairedFramesd: '{key}' must be a video (C, T, H, W), got shape {tuple(video.shape)}."
                )
            a, b = self.randomize(video.shape[1])
            d[self.output_keys[0]], d[self.output_keys[1]] = video[:, a], video[:, b]
        return d
