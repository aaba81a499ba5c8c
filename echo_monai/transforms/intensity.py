"""Intensity scaling from a reader's source range to the model space [-1, 1]."""

from __future__ import annotations

import numpy as np
from monai.config import DtypeLike, KeysCollection
from monai.transforms import ScaleIntensityRanged

__all__ = ["ScaleIntensityToModelRanged"]


class ScaleIntensityToModelRanged(ScaleIntensityRanged):
    """Map ``[source_min, source_max]`` linearly onto the model space ``[-1, 1]`` (images or videos, any shape).

    Readers return grey levels in the source range ([0, 255] for 8-bit ultrasound); this is the one place that
    scales them, so the inverse for display is ``(x + 1) / 2 * (source_max - source_min) + source_min``.
    A thin specialisation of MONAI's ``ScaleIntensityRanged`` with ``b_min=-1, b_max=1``.

    Args:
        keys: keys to scale.
        source_min: source value mapped to -1.
        source_max: source value mapped to +1.
        clip: clip the output to [-1, 1].
        dtype: output dtype.
        allow_missing_keys: do not raise for absent keys.

    Example:
        >>> scale = ScaleIntensityToModelRanged("video")
        >>> scale({"video": torch.tensor([0.0, 127.5, 255.0])})["video"].tolist()
        [-1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_min: float = 0.0,
        source_max: float = 255.0,
        clip: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        if not source_max > source_min:
            raise ValueError(
                f"ScaleIntensityToModelRanged: source_max must exceed source_min, got {source_min!r}, {source_max!r}."
            )
        super().__init__(
            keys,
            a_min=source_min,
            a_max=source_max,
            b_min=-1.0,
            b_max=1.0,
            clip=clip,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )
