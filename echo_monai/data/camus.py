"""CAMUS reader: 2- and 4-chamber apical echo images at ED and ES with LV / myocardium / LA labels.

Leclerc et al., "Deep Learning for Segmentation using an Open Large-Scale Dataset in 2D Echocardiography",
IEEE Transactions on Medical Imaging 38(9), 2019.

Two releases are read:

* NIfTI (2023): ``database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}[_gt].nii.gz``,
  ``Info_{2CH,4CH}.cfg`` per patient and ``database_split/subgroup_{training,validation,testing}.txt``.
* MetaImage (2019): ``{training,testing}/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,sequence}[_gt].mhd`` + ``.raw``.

Both store frames in ITK order, so nibabel returns ``(W, H[, T])``; the reader transposes to ``(H, W)`` /
``(T, H, W)``. Spacing comes from the header, ``(dy, dx)`` in mm.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from echo_monai.data.atomic import atomic_path
from echo_monai.data.reader_base import FieldChecker, OnInvalid, ReaderDataset

__all__ = ["CAMUS", "read_metaimage", "read_camus_image", "read_info_cfg", "save_camus_nifti"]

_MET_TYPES = {
    "MET_UCHAR": np.uint8,
    "MET_CHAR": np.int8,
    "MET_USHORT": np.uint16,
    "MET_SHORT": np.int16,
    "MET_UINT": np.uint32,
    "MET_INT": np.int32,
    "MET_FLOAT": np.float32,
    "MET_DOUBLE": np.float64,
}
_SPLIT_NAMES = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
    "testing": "testing",
    "test": "testing",
}


def read_metaimage(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a MetaImage (``.mhd`` header + raw data file, optionally zlib-compressed).

    Args:
        path: ``.mhd`` header.

    Returns:
        ``(array, spacing)``: array in numpy order (last ``DimSize`` first, e.g. ``(T, H, W)``) and the
        ``ElementSpacing`` in the same order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MetaImage header {str(path)!r} does not exist.")
    header = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(_MET_TYPES[header["ElementType"]])
        data_file = header["ElementDataFile"]
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"MetaImage header {str(path)!r} needs DimSize, a supported ElementType ({sorted(_MET_TYPES)}) and "
            f"ElementDataFile; got {header}."
        ) from error
    if header.get("BinaryDataByteOrderMSB", "False").lower() == "true":
        dtype = dtype.newbyteorder(">")
    raw_path = path.parent / data_file
    if not raw_path.is_file():
        raise FileNotFoundError(f"MetaImage data file {str(raw_path)!r} named by {str(path)!r} does not exist.")
    buffer = raw_path.read_bytes()
    if header.get("CompressedData", "False").lower() == "true":
        buffer = zlib.decompress(buffer)
    count = int(np.prod(dims))
    if len(buffer) != count * dtype.itemsize:
        raise ValueError(
            f"MetaImage data file {str(raw_path)!r} holds {len(buffer)} bytes; expected {count * dtype.itemsize} "
            f"for DimSize {dims} of {header['ElementType']}."
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(dims[::-1]).astype(dtype.newbyteorder("="))
    spacing = tuple(float(v) for v in header.get("ElementSpacing", " ".join(["1"] * len(dims))).split())
    return array, spacing[::-1]


def read_camus_image(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """Read one CAMUS image, label or sequence file (``.nii``, ``.nii.gz`` or ``.mhd``).

    Returns:
        ``(array, (dy, dx))``: array ``(H, W)`` or ``(T, H, W)`` and the pixel spacing in mm.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CAMUS file {str(path)!r} does not exist.")
    if path.suffix == ".mhd":
        array, spacing = read_metaimage(path)
        return array, (float(spacing[-2]), float(spacing[-1]))
    try:
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises several types for damaged files
        raise ValueError(f"CAMUS file {str(path)!r} is not a readable NIfTI image: {error}") from error
    zooms = image.header.get_zooms()
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return np.ascontiguousarray(array.T), (float(zooms[1]), float(zooms[0]))


def save_camus_nifti(path: str | os.PathLike, array: np.ndarray, spacing: float = 1.0) -> Path:
    """Save ``(H, W)`` or ``(T, H, W)`` uint8 as the CAMUS NIfTI release stores it, ``(W, H[, T])``, atomically.

    The inverse of :func:`read_camus_image` for NIfTI files; pixels are square with side ``spacing`` mm.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"save_camus_nifti: expected (H, W) or (T, H, W) for {str(path)!r}, got shape {array.shape}.")
    data = array.T if array.ndim == 2 else np.transpose(array, (2, 1, 0))
    image = nib.Nifti1Image(np.ascontiguousarray(data, np.uint8), np.diag([spacing, spacing, 1.0, 1.0]))
    image.header.set_zooms((spacing, spacing) + ((1.0,) if array.ndim == 3 else ()))
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)


def read_info_cfg(path: str | os.PathLike) -> dict[str, str]:
    """Parse a CAMUS ``Info_{2CH,4CH}.cfg`` file of ``Key: value`` lines."""
    info = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


IMAGE_QUALITIES = ("Good", "Medium", "Poor")
SEXES = ("M", "F")


def _check_info(info: Mapping[str, str], source: str) -> tuple[dict[str, Any], int, FieldChecker]:
    """The item metadata of one ``Info_*.cfg``, every field range-checked (see :class:`CAMUS` for which are optional).

    Returns:
        ``(meta, num_frames, fields)``: the parsed values (valid only when ``fields.problems`` is empty), ``NbFrame``
        and the checker holding the problems found.
    """
    fields = FieldChecker(source)
    ed, es, num_frames = (fields.number(info, key, minimum=1, integer=True) for key in ("ED", "ES", "NbFrame"))
    for key, frame in (("ED", ed), ("ES", es)):
        if not (math.isnan(frame) or math.isnan(num_frames)):
            fields.check(frame <= num_frames, f"{key} {frame:g} > NbFrame {num_frames:g}; expected {key} <= NbFrame")
    # the NIfTI release names the EF "EF", the MetaImage one "LVef"; a present field must be valid either way
    ef, lvef = (fields.number(info, key, minimum=0, maximum=100, required=False, unit="%") for key in ("EF", "LVef"))
    edv, esv = (fields.number(info, key, minimum=0, required=False, unit="mL") for key in ("LVedv", "LVesv"))
    fields.volumes(edv, esv, "LVedv", "LVesv")
    meta = {
        "ejection_fraction": lvef if math.isnan(ef) else ef,
        "edv": edv,
        "esv": esv,
        "image_quality": fields.choice(info, "ImageQuality", IMAGE_QUALITIES),
        "ed_frame": -1 if math.isnan(ed) else int(ed) - 1,
        "es_frame": -1 if math.isnan(es) else int(es) - 1,
        "sex": fields.choice(info, "Sex", SEXES),
        "age": fields.number(info, "Age", minimum=0, required=False, unit="years"),
        "fps": fields.number(info, "FrameRate", above=0, required=False, unit="frames/s"),
    }
    return meta, -1 if math.isnan(num_frames) else int(num_frames), fields


class CAMUS(ReaderDataset):
    """CAMUS images (or half-sequences) with their 4-class labels and per-view clinical info.

    One item per (patient, view, phase). For ``phase`` ``"ED"``/``"ES"`` an item is:

    * ``image``: ``(1, H, W)`` float32 torch tensor, grey levels in the source range [0, 255].
    * ``label``: ``(1, H, W)`` uint8 torch tensor in {0 background, 1 LV cavity, 2 myocardium, 3 left atrium}
      (absent when ``require_label=False`` and the file has no ``_gt``).

    For ``phase="half_sequence"`` (ED to ES cine; ``sequence`` in the MetaImage release) ``image`` is replaced by

    * ``video``: ``(1, T, H, W)`` float32, [0, 255]; ``label`` is ``(1, T, H, W)`` uint8 when a ``_gt`` exists.

    and every item also has:

    * ``view``: str, ``"2CH"`` or ``"4CH"``; ``phase``: str, ``"ED"``, ``"ES"`` or ``"half_sequence"``.
    * ``patient``: str, e.g. ``"patient0001"``.
    * ``ejection_fraction``: float, EF in percent, 0-100 (``EF`` in the NIfTI release's cfg, ``LVef`` in the
      MetaImage one; NaN when absent); ``edv``, ``esv``: float, mL, >= 0 with ``edv >= esv`` (``LVedv``/``LVesv``,
      MetaImage release only, else NaN).
    * ``fps``: float, ``FrameRate`` of the cine, > 0 (NIfTI release; NaN when absent).
    * ``image_quality``: str, ``Good``/``Medium``/``Poor`` (empty when absent).
    * ``ed_frame``, ``es_frame``: int, 0-based ED/ES index in the half-sequence, in ``[0, NbFrame)``.
    * ``spacing``: ``(dy, dx)`` pixel size in mm from the file header.
    * ``sex``: str, ``M``/``F`` (empty when absent); ``age``: float, years >= 0 (NaN when absent).

    ``Info_{view}.cfg`` is checked at construction, one problem per view listing every bad field: ``ED``, ``ES``
    and ``NbFrame`` are required (both releases have them), integers >= 1 with ``ED, ES <= NbFrame``; ``EF``,
    ``LVef``, ``LVedv``, ``LVesv``, ``FrameRate``, ``ImageQuality``, ``Sex`` and ``Age`` are optional (absent:
    NaN or empty as above) but must be valid when present (a value that does not parse is a problem, never NaN).
    On access a half-sequence must have ``NbFrame`` frames.

    Args:
        root: folder holding ``database_nifti/`` (and ``database_split/``), or ``training/``/``testing/`` of
            the MetaImage release, or directly the ``patientXXXX`` folders.
        views: subset of ``("2CH", "4CH")``.
        phases: subset of ``("ED", "ES", "half_sequence")``.
        split: ``None`` (all patients), ``"training"``/``"validation"``/``"testing"`` (from
            ``database_split/subgroup_*.txt``, or the MetaImage release's folder of that name) or a sequence of
            patient names.
        transform: MONAI transform applied to each item dict.
        require_label: a missing ``_gt`` file is a missing-file problem; else the item has no ``label``.
        on_invalid: ``"raise"`` one error listing every problem, or ``"skip"`` bad items (``self.invalid``).
        validate: load every item at construction to check label values and sizes (default: when skipping).

    Example:
        >>> dataset = CAMUS("CAMUS_public", views=("4CH",), phases=("ED", "ES"), split="training")
        >>> item = dataset[0]
        >>> item["image"].shape, item["label"].unique(), item["ejection_fraction"]
    """

    VIEWS = ("2CH", "4CH")
    PHASES = ("ED", "ES", "half_sequence")

    def __init__(
        self,
        root: str | os.PathLike,
        views: Sequence[str] = ("2CH", "4CH"),
        phases: Sequence[str] = ("ED", "ES"),
        split: str | Sequence[str] | None = None,
        transform: Sequence[Callable] | Callable | None = None,
        require_label: bool = True,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        views, phases = ([v] if isinstance(v, str) else list(v) for v in (views, phases))
        if not views or any(v not in self.VIEWS for v in views):
            raise ValueError(f"CAMUS: views must be a non-empty subset of {self.VIEWS}, got {views!r}.")
        if not phases or any(p not in self.PHASES for p in phases):
            raise ValueError(f"CAMUS: phases must be a non-empty subset of {self.PHASES}, got {phases!r}.")
        if isinstance(split, str) and split.lower() not in _SPLIT_NAMES:
            raise ValueError(
                f"CAMUS: split must be None, one of {sorted(_SPLIT_NAMES)} or patient names, got {split!r}."
            )
        super().__init__(transform=transform, on_invalid=on_invalid, validate=validate)
        self.root, self.views, self.phases, self.require_label = Path(root), views, phases, require_label
        records = []
        for patient_dir in self._patient_dirs(split):
            if not patient_dir.is_dir():
                self.reject(patient_dir.name, f"patient folder {str(patient_dir)!r} is missing.", missing=True)
                continue
            for view in views:
                records.extend(self._index_view(patient_dir, view))
        self._finalize(records, key="item")

    # --- indexing -------------------------------------------------------------------------------------------------
    def _patient_dirs(self, split: str | Sequence[str] | None) -> list[Path]:
        root = self.root
        if (root / "database_nifti").is_dir():
            bases = [root / "database_nifti"]
        elif (root / "training").is_dir() or (root / "testing").is_dir():
            bases = [root / name for name in ("training", "testing") if (root / name).is_dir()]
        elif root.is_dir():
            bases = [root]
        else:
            raise FileNotFoundError(f"CAMUS: root {str(root)!r} does not exist.")
        found = {p.name: p for base in bases for p in sorted(base.glob("patient*")) if p.is_dir()}
        if split is None:
            if not found:
                raise FileNotFoundError(
                    f"CAMUS: no patient* folders under {[str(b) for b in bases]}; expected the NIfTI layout "
                    "database_nifti/patientXXXX/ or the MetaImage layout training/patientXXXX/."
                )
            return list(found.values())
        if isinstance(split, str):
            name = _SPLIT_NAMES[split.lower()]
            listing = root / "database_split" / f"subgroup_{name}.txt"
            if listing.is_file():
                names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            elif (root / name).is_dir():
                names = [p.name for p in sorted((root / name).glob("patient*")) if p.is_dir()]
            else:
                raise FileNotFoundError(
                    f"CAMUS: split {split!r} needs {str(listing)!r} (NIfTI release) or the folder "
                    f"{str(root / name)!r} (MetaImage release); neither exists."
                )
        else:
            names = list(split)
        return [found.get(name, bases[0] / name) for name in names]

    def _find(self, patient_dir: Path, stem: str) -> Path | None:
        for suffix in (".nii.gz", ".nii", ".mhd"):
            if (patient_dir / f"{stem}{suffix}").is_file():
                return patient_dir / f"{stem}{suffix}"
        return None

    def _index_view(self, patient_dir: Path, view: str) -> list[dict[str, Any]]:
        patient = patient_dir.name
        suffix = ".mhd" if any(patient_dir.glob("*.mhd")) else ".nii.gz"
        cfg = patient_dir / f"Info_{view}.cfg"
        if not cfg.is_file():
            self.reject(f"{patient}_{view}", f"info file {str(cfg)!r} is missing.", missing=True)
            return []
        info, num_frames, fields = _check_info(read_info_cfg(cfg), repr(str(cfg)))
        if fields.problems:
            self.reject(f"{patient}_{view}", fields.reason)
            return []
        meta = {"view": view, "patient": patient, **info}
        records = []
        for phase in self.phases:
            item = f"{patient}_{view}_{phase}"
            stems = [item] + ([f"{patient}_{view}_sequence"] if phase == "half_sequence" else [])
            image = next((p for p in (self._find(patient_dir, s) for s in stems) if p is not None), None)
            label = next((p for p in (self._find(patient_dir, f"{s}_gt") for s in stems) if p is not None), None)
            missing = []
            if image is None:
                missing.append(str(patient_dir / f"{item}{suffix}"))
            if label is None and self.require_label:
                missing.append(str(patient_dir / f"{item}_gt{suffix}"))
            if missing:
                self.reject(item, f"missing file(s) {missing}.", missing=True)
                continue
            records.append(
                {
                    "item": item,
                    "image_path": str(image),
                    "label_path": label and str(label),
                    "phase": phase,
                    "info_path": str(cfg),
                    "num_frames": num_frames,
                    "meta": meta,
                }
            )
        return records

    def item_keys(self) -> list[tuple[str, str, str]]:
        """``(patient, view, phase)`` of every item, in order, from the index (no image is read)."""
        return [(str(r["meta"]["patient"]), str(r["meta"]["view"]), str(r["phase"])) for r in self.data]

    # --- loading --------------------------------------------------------------------------------------------------
    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        image, spacing = read_camus_image(record["image_path"])
        sequence = record["phase"] == "half_sequence"
        expected_ndim = 3 if sequence else 2
        if image.ndim != expected_ndim:
            raise ValueError(
                f"CAMUS: {record['image_path']!r} has shape {image.shape}; expected a {expected_ndim}-D "
                f"{'(T, H, W) sequence' if sequence else '(H, W) image'}."
            )
        expected_frames = record.get("num_frames", -1)
        if sequence and expected_frames > 0 and image.shape[0] != expected_frames:
            raise ValueError(
                f"CAMUS: sequence {record['image_path']!r} has {image.shape[0]} frames but "
                f"{record.get('info_path', 'Info_*.cfg')!r} gives NbFrame {expected_frames}; expected equal counts."
            )
        item: dict[str, Any] = {"video" if sequence else "image": torch.from_numpy(image.astype(np.float32)[None])}
        if record["label_path"] is not None:
            label, _ = read_camus_image(record["label_path"])
            if label.shape != image.shape:
                raise ValueError(
                    f"CAMUS: label {record['label_path']!r} has shape {label.shape} but image "
                    f"{record['image_path']!r} has {image.shape}; expected equal sizes."
                )
            values = np.unique(label)
            if not np.isin(values, (0, 1, 2, 3)).all():
                raise ValueError(
                    f"CAMUS: label {record['label_path']!r} has values {values.tolist()}; expected only "
                    "{0 background, 1 LV cavity, 2 myocardium, 3 left atrium}."
                )
            item["label"] = torch.from_numpy(label.astype(np.uint8)[None])
        item.update(record["meta"])
        item["phase"] = record["phase"]
        item["spacing"] = spacing
        return item
