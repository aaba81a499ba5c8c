"""Finding label maps to generate from: CAMUS ``_gt`` files, or folders of PNG / NIfTI label maps."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["label_map_datalist"]

_CAMUS_GT = re.compile(r"^(?P<patient>patient\d+)_(?P<view>[24]CH)_(?P<phase>ED|ES)_gt\.(nii\.gz|nii|mhd)$")
_SUFFIXES = (".png", ".nii.gz", ".nii", ".mhd")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _split_patients(root: Path, split: str | Sequence[str]) -> set[str]:
    if not isinstance(split, str):
        return set(split)
    listing = root / "database_split" / f"subgroup_{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"label_map_datalist: split {split!r} needs {str(listing)!r}, which does not exist.")
    return set(listing.read_text().split())


def label_map_datalist(
    root: str | os.PathLike, copies: int = 1, limit: int | None = None, split: str | Sequence[str] | None = None
) -> list[dict]:
    """One dict per label map and copy: ``{"label": path, "name", "patient", "view", "phase", "copy"}``.

    CAMUS ``patientXXXX_{2CH,4CH}_{ED,ES}_gt`` files (NIfTI or MetaImage, anywhere under ``root``) keep their patient,
    view and phase, and their image (the same name without ``_gt``) under ``"image"`` when it exists; other
    ``.png``/``.nii[.gz]`` files count as label maps of an unnamed ``4CH`` ``ED`` view.
    Half-sequence labels are skipped.

    Args:
        root: a CAMUS root, a folder of label maps, or one label map file.
        copies: items per label map (``copy`` 0..copies-1): with random label augmentation, each copy becomes a
            different label map, as in Echo from noise.
        limit: keep only the first ``limit`` label maps (sorted by path) before copying.
        split: CAMUS patients to use: a split name (``"training"``, read from ``database_split/``) or patient names;
            None for all.

    Raises:
        FileNotFoundError: naming ``root`` when it does not exist or holds no label map.
        ValueError: for ``copies < 1``.
    """
    if copies < 1:
        raise ValueError(f"label_map_datalist: copies must be >= 1, got {copies}.")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"label_map_datalist: {str(root)!r} does not exist.")
    files = (
        [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
    )
    camus = [p for p in files if _CAMUS_GT.match(p.name)]
    if split is not None:
        patients = _split_patients(root, split)
        camus = [p for p in camus if _CAMUS_GT.match(p.name)["patient"] in patients]  # type: ignore[index]
        if not camus:
            raise FileNotFoundError(
                f"label_map_datalist: no CAMUS label map of the split {split!r} under {str(root)!r}."
            )
    if camus:
        files = camus
    else:
        files = [p for p in files if "half_sequence" not in p.name and p.suffix != ".raw"]
    if not files:
        raise FileNotFoundError(
            f"label_map_datalist: no label map under {str(root)!r} (expected CAMUS *_ED_gt/*_ES_gt files, or "
            ".png/.nii/.nii.gz label maps)."
        )
    items = []
    for path in files[:limit]:
        match = _CAMUS_GT.match(path.name)
        info = match.groupdict() if match else {"patient": _stem(path), "view": "4CH", "phase": "ED"}
        name = f"{info['patient']}_{info['view']}_{info['phase']}"
        image = path.with_name(path.name.replace("_gt.", "."))
        extra = {"image": str(image)} if match and image.is_file() else {}
        items.extend({"label": str(path), "name": name, "copy": k, **info, **extra} for k in range(copies))
    return items
