"""Write simulated 2- and 4-chamber sequences in the CAMUS NIfTI layout.

Layout (Leclerc et al., IEEE TMI 2019; NIfTI release 2023)::

    root/database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}[_gt].nii.gz
    root/database_nifti/patientXXXX/Info_{2CH,4CH}.cfg      Key: value lines (ED, ES, NbFrame, Sex, Age,
                                                            ImageQuality, EF, FrameRate; plus LVedv, LVesv, LVef
                                                            as in the 2019 release)
    root/database_split/subgroup_{training,validation,testing}.txt

Images are uint8 and stored in ITK order, ``(W, H)`` and ``(W, H, T)`` (nibabel returns them transposed from the
``(H, W)`` display order); labels use 0 background, 1 LV cavity, 2 myocardium, 3 left atrium. The half sequence runs
from ED (frame 1 in the cfg, 1-based) to ES (frame ``NbFrame``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from echo_monai.data.atomic import write_text
from echo_monai.data.camus import save_camus_nifti
from echo_monai.data.phantom.cardiac import CardiacSequence

__all__ = ["CAMUS_SPLITS", "IMAGE_QUALITIES", "CAMUSWriter"]

CAMUS_SPLITS = ("training", "validation", "testing")
IMAGE_QUALITIES = ("Good", "Medium", "Poor")


class CAMUSWriter:
    """Write CAMUS patients (two views each) and the split lists.

    Args:
        root: dataset folder (created).

    Example:
        >>> with CAMUSWriter("CAMUS_public") as writer:
        ...     writer.add("patient0001", {"2CH": two_chamber, "4CH": four_chamber}, split="training")
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        (self.root / "database_nifti").mkdir(parents=True, exist_ok=True)
        self._splits: dict[str, list[str]] = {name: [] for name in CAMUS_SPLITS}

    def add(
        self,
        patient: str,
        views: Mapping[str, CardiacSequence],
        split: str = "training",
        sex: str = "F",
        age: int = 60,
        image_quality: str = "Good",
        ejection_fraction: float | None = None,
    ) -> Path:
        """Write one patient's views.

        Args:
            patient: folder name, e.g. ``"patient0001"``.
            views: ``{"2CH": sequence, "4CH": sequence}`` (either may be absent).
            split: ``"training"``, ``"validation"`` or ``"testing"``.
            sex: ``"M"`` or ``"F"``.
            age: years.
            image_quality: ``"Good"``, ``"Medium"`` or ``"Poor"``.
            ejection_fraction: the patient's (biplane) EF written to both cfg files; ``None``: the mean of the views'.

        Returns:
            The patient folder.
        """
        if split not in CAMUS_SPLITS:
            raise ValueError(f"CAMUSWriter.add: split must be one of {CAMUS_SPLITS}, got {split!r}.")
        if image_quality not in IMAGE_QUALITIES:
            raise ValueError(f"CAMUSWriter.add: image_quality must be one of {IMAGE_QUALITIES}, got {image_quality!r}.")
        unknown = sorted(set(views) - {"2CH", "4CH"})
        if unknown or not views:
            raise ValueError(
                f"CAMUSWriter.add: views must be a non-empty mapping with keys '2CH'/'4CH', got {sorted(views)}."
            )
        if ejection_fraction is None:
            ejection_fraction = float(np.mean([s.ejection_fraction for s in views.values()]))
        folder = self.root / "database_nifti" / patient
        folder.mkdir(parents=True, exist_ok=True)
        for view, sequence in views.items():
            ed, es = sequence.ed_frame, sequence.es_frame
            spacing = float(sequence.pixel_spacing_mm)
            stem = folder / f"{patient}_{view}"
            for phase, index in (("ED", ed), ("ES", es)):
                save_camus_nifti(Path(f"{stem}_{phase}.nii.gz"), sequence.frames[index], spacing)
                save_camus_nifti(Path(f"{stem}_{phase}_gt.nii.gz"), sequence.labels[index], spacing)
            save_camus_nifti(Path(f"{stem}_half_sequence.nii.gz"), sequence.frames[ed : es + 1], spacing)
            save_camus_nifti(Path(f"{stem}_half_sequence_gt.nii.gz"), sequence.labels[ed : es + 1], spacing)
            info = {
                "ED": 1,
                "ES": es - ed + 1,
                "NbFrame": es - ed + 1,
                "Sex": sex,
                "Age": int(age),
                "ImageQuality": image_quality,
                "EF": f"{ejection_fraction:.2f}",
                "FrameRate": f"{sequence.fps:.1f}",
                # the 2019 MetaImage release's volume keys, so readers of either release find the ground truth
                "LVedv": f"{sequence.edv_ml:.2f}",
                "LVesv": f"{sequence.esv_ml:.2f}",
                "LVef": f"{ejection_fraction:.2f}",
            }
            write_text(folder / f"Info_{view}.cfg", "".join(f"{key}: {value}\n" for key, value in info.items()))
        self._splits[split].append(patient)
        return folder

    def close(self) -> Path:
        """Write ``database_split/subgroup_*.txt``; returns the dataset root."""
        for name, patients in self._splits.items():
            write_text(self.root / "database_split" / f"subgroup_{name}.txt", "".join(f"{p}\n" for p in patients))
        return self.root

    def __enter__(self) -> CAMUSWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
