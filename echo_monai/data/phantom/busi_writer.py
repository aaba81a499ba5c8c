"""Write simulated breast images in the BUSI layout (Al-Dhabyani et al., Data in Brief 2020)::

    root/Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (k).png
    root/Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (k)_mask.png      lesion 1 (0/255)
    root/Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (k)_mask_1.png    lesion 2, when present

Images are 3-channel grey PNGs as in the release; normal images have an all-zero mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echo_monai.data.atomic import write_png
from echo_monai.data.phantom.breast import LESION_CLASSES, BreastSequence

__all__ = ["BUSIWriter"]


class BUSIWriter:
    """Write still breast images with their lesion masks, numbered per class from 1.

    Args:
        root: dataset folder (``Dataset_BUSI_with_GT/`` is created in it).

    Example:
        >>> writer = BUSIWriter("busi")
        >>> writer.add(BreastPhantom(BreastParameters.sample(rng, "benign")).simulate(1))
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.dataset = self.root / "Dataset_BUSI_with_GT"
        self._counts = {label: 0 for label in LESION_CLASSES}
        for label in LESION_CLASSES:
            (self.dataset / label).mkdir(parents=True, exist_ok=True)

    def add(self, sequence: BreastSequence, frame: int = 0) -> Path:
        """Write one frame and one mask per lesion.

        Args:
            sequence: a breast sequence; its ``label`` picks the class folder.
            frame: which frame to write.

        Returns:
            Path of the written image.
        """
        if not 0 <= frame < len(sequence.frames):
            raise ValueError(f"BUSIWriter.add: frame must be in [0, {len(sequence.frames)}), got {frame}.")
        label = sequence.label
        self._counts[label] += 1
        stem = f"{label} ({self._counts[label]})"
        folder = self.dataset / label
        image = np.repeat(sequence.frames[frame][:, :, None], 3, axis=2)
        path = write_png(folder / f"{stem}.png", image)
        instances = sequence.masks[frame]
        count = max(1, len(sequence.parameters.lesions))
        for k in range(count):
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            write_png(folder / f"{stem}{suffix}.png", ((instances == k + 1) * 255).astype(np.uint8))
        return path
