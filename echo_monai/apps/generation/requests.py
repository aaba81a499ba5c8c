"""Typed generation requests and reports, and the request lists bundles build from their settings.

A :class:`GenerationRequest` is one synthetic item to make: its name, its position in the whole job, its seed (its
noise, its condition augmentation and its reference draws all follow from it, so a resumed or re-sharded run makes
the same item), the conditions the conditioner reads, the split it is written to, and where it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echo_monai.data.busi import BUSI
from echo_monai.data.label_maps import label_map_datalist
from echo_monai.transforms.prompts import EchoPrompt

__all__ = [
    "GenerationReport",
    "GenerationRequest",
    "RankReport",
    "image_requests",
    "label_map_requests",
    "make_requests",
    "motion_requests",
    "prompt_requests",
    "request_conditions",
    "requests_fingerprint",
]


@dataclass(frozen=True)
class GenerationRequest:
    """One item of a generation job.

    Attributes:
        name: the item's name in the output dataset (file stem, ``FileName``).
        index: its position in the whole request list (the same on every rank and every rerun).
        seed: the item's seed: initial noise, random condition augmentation and reference redraws.
        conditions: what the conditioner turns into network inputs (``ejection_fraction`` in percent, ``view``
            index, ``lv_mask`` map or path, ``label`` path of a label map...).
        split: the split the item is written to (``TRAIN`` for a training set).
        source: provenance kept with the item (source patient, view, phase, label map file, copy...).
    """

    name: str
    index: int
    seed: int
    conditions: Mapping[str, Any] = field(default_factory=dict)
    split: str = "TRAIN"
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or os.sep in self.name:
            raise ValueError(f"GenerationRequest: name must be a non-empty file stem, got {self.name!r}.")
        if self.index < 0:
            raise ValueError(f"GenerationRequest: {self.name}: index must be >= 0, got {self.index}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (array conditions are summarised by shape)."""
        data = asdict(self)
        data["conditions"] = {k: _describe(v) for k, v in self.conditions.items()}
        return data


def _describe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    shape = getattr(value, "shape", None)
    return f"array{tuple(shape)}" if shape is not None else str(value)


def make_requests(
    conditions: Mapping[str, Any],
    count: int | None = None,
    prefix: str = "synthetic",
    seed: int = 0,
    split: str = "TRAIN",
) -> list[GenerationRequest]:
    """Requests from per-item condition lists, with scalar conditions shared by all items.

    Item ``i`` is named ``<prefix>_<i:05d>`` and seeded ``seed + i``.

    Args:
        conditions: condition name -> a list (one value per item) or a scalar (the same for every item).
        count: number of items when every condition is a scalar; otherwise the lists' common length.
        prefix: name prefix.
        seed: base seed.
        split: split of every item.

    Raises:
        ValueError: lists of different lengths, or no length at all.

    Example:
        >>> make_requests({"ejection_fraction": [30.0, 60.0], "view": 0})[1].conditions
        {'ejection_fraction': 60.0, 'view': 0}
    """
    lists = {k: list(v) for k, v in conditions.items() if isinstance(v, (list, tuple, np.ndarray))}
    lengths = {len(v) for v in lists.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"make_requests: condition lists must have one value per item, got lengths "
            f"{ {k: len(v) for k, v in lists.items()} }."
        )
    n = lengths.pop() if lengths else count
    if n is None or (count is not None and n != count):
        raise ValueError(f"make_requests: give count or condition lists of length count; got count={count}, {lengths}.")
    return [
        GenerationRequest(
            name=f"{prefix}_{i:05d}",
            index=i,
            seed=int(seed) + i,
            conditions={k: (lists[k][i] if k in lists else v) for k, v in conditions.items()},
            split=split,
        )
        for i in range(int(n))
    ]


def label_map_requests(
    root: str | os.PathLike,
    copies: int = 1,
    split: str | Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[GenerationRequest]:
    """One request per label map and copy (Echo from noise: each copy is a differently augmented label map).

    The conditions are the label map file (``label``) and, for CAMUS, its image (``image``, which the sector
    transform reads); ``source`` keeps the patient, view, phase, copy, the label map file and the split it came
    from, which the CAMUS writer uses for the synthetic patient's name.

    Args:
        root: a CAMUS root, a folder of label maps or one file (see :func:`echo_monai.data.label_map_datalist`).
        copies: requests per label map.
        split: CAMUS split name or patient list; None for every label map.
        limit: the first ``limit`` label maps.
        seed: base seed; request ``i`` gets ``seed + i``.
    """
    requests = []
    for i, item in enumerate(label_map_datalist(root, copies=copies, limit=limit, split=split)):
        conditions = {k: item[k] for k in ("label", "image") if k in item}
        source = {k: item[k] for k in ("patient", "view", "phase", "copy")}
        source.update(label_map=item["label"], source_split=split if isinstance(split, str) else None)
        requests.append(
            GenerationRequest(f"{item['name']}_c{item['copy']:02d}", i, int(seed) + i, conditions, source=source)
        )
    return requests


#: still-image files :func:`image_requests` takes as a single image (what ``LoadGreyImaged`` reads)
STILL_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz")
_MASK_STEM = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<index>\d+))?$")  # BUSI's mask names: NAME_mask, NAME_mask_1


def _image_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _image_stem(path: Path) -> str:
    return path.name[: len(path.name) - len(_image_suffix(path))]


def _sanitised(stem: str) -> str:
    """A file-stem-safe name: runs of anything but letters, digits, ``.``, ``_`` and ``-`` become one ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def _single_image(path: Path) -> dict[str, Any]:
    """One image file as a BUSI-like record: its sibling ``<stem>_mask[_k]`` files and the class its name or folder
    gives (``benign (3).png``, ``malignant/x.png``), else None."""
    suffix, stem = _image_suffix(path), _image_stem(path)
    if suffix not in STILL_IMAGE_SUFFIXES:
        raise ValueError(
            f"image_requests: {str(path)!r} is not an image file; expected a BUSI folder or one of "
            f"{list(STILL_IMAGE_SUFFIXES)}."
        )
    if _MASK_STEM.match(stem):
        raise ValueError(f"image_requests: {str(path)!r} is a lesion mask (BUSI '_mask' name); give its image.")
    masks = []
    for sibling in sorted(path.parent.iterdir()):
        match = _MASK_STEM.match(_image_stem(sibling))
        if match and match["stem"] == stem and _image_suffix(sibling) in STILL_IMAGE_SUFFIXES and sibling.is_file():
            masks.append(str(sibling))
    label = next((c for c in BUSI.CLASSES if stem.lower().startswith(c) or path.parent.name == c), None)
    return {"filename": path.name, "image_path": str(path), "label": label, "mask_paths": masks}


def image_requests(
    root: str | os.PathLike,
    copies: int = 1,
    classes: Sequence[str] = ("benign", "malignant"),
    limit: int | None = None,
    seed: int = 0,
    split: str = "TRAIN",
    prefix: str | None = None,
) -> list[GenerationRequest]:
    """One request per still image and copy (image-to-video: each copy is another stochastic video of the image).

    ``root`` is a BUSI-layout folder (``Dataset_BUSI_with_GT/<class>/<class> (k).png`` with ``_mask[_k].png`` files,
    indexed by :class:`echo_monai.data.BUSI` without reading pixels; every image needs a mask there) or one image
    file (PNG / JPEG / BMP / TIFF / DICOM / NIfTI) with its BUSI-named sibling masks when there are any, and the class
    its name or folder gives (``benign (3).png``), else None. ``classes`` filters the BUSI folder only.

    Copy ``c`` of image ``i`` is request ``i * copies + c``, seeded ``seed`` plus that running index and named
    ``[<prefix>_]<stem>_v<c:02d>`` (the image's stem with spaces and brackets made ``_``: ``benign_3_v00``; a stem
    that two images share gets ``_2``, ``_3``...). Conditions: ``image`` (path), ``mask`` (list of mask paths, merged
    by union when loaded, or None) and ``label`` (class or None); source: ``image`` (path relative to the BUSI root,
    or the file name), ``label`` and ``copy``.

    Args:
        root: a BUSI-layout folder (or its parent) or one image file.
        copies: videos per image.
        classes: BUSI classes to animate; ``normal`` (no lesion) is left out by default, as BUSV has only benign
            and malignant videos.
        limit: the first ``limit`` images (after filtering), each with its copies; None for all.
        seed: base seed.
        split: split of every request.
        prefix: prepended to every name, or None.

    Raises:
        FileNotFoundError: ``root`` (or a class folder) does not exist.
        ValueError: ``copies < 1``, ``limit < 0``, an unknown class, a file that is not an image (or is a mask).

    Example:
        >>> requests = image_requests("BUSI", copies=2, limit=10)
        >>> requests[1].name, requests[1].conditions["label"]    # ('benign_1_v01', 'benign')
    """
    if isinstance(copies, bool) or int(copies) != copies or copies < 1:
        raise ValueError(f"image_requests: copies must be an integer >= 1, got {copies!r}.")
    if limit is not None and (int(limit) != limit or limit < 0):
        raise ValueError(f"image_requests: limit must be an integer >= 0 or None, got {limit!r}.")
    classes = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in classes if c not in BUSI.CLASSES]
    if not classes or unknown:
        raise ValueError(
            f"image_requests: classes must be a non-empty subset of {list(BUSI.CLASSES)}, got {classes!r}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    path = Path(root)
    if path.is_file():
        records = [_single_image(path)]
    elif path.is_dir():
        records = list(BUSI(path, classes=classes, validate=False).data)
    else:
        raise FileNotFoundError(f"image_requests: root {str(path)!r} does not exist; expected a BUSI folder or image.")
    records = records[: int(limit)] if limit is not None else records
    requests, used = [], set()
    for record in records:
        stem = _sanitised(_image_stem(Path(record["image_path"])))
        stem = f"{_sanitised(prefix)}_{stem}" if prefix else stem
        unique, k = stem, 1
        while unique in used:
            k += 1
            unique = f"{stem}_{k}"
        used.add(unique)
        conditions = {
            "image": record["image_path"],
            "mask": list(record["mask_paths"]) or None,
            "label": record["label"],
        }
        for copy in range(int(copies)):
            index = len(requests)
            source = {"image": record["filename"], "label": record["label"], "copy": copy}
            requests.append(
                GenerationRequest(f"{unique}_v{copy:02d}", index, int(seed) + index, dict(conditions), split, source)
            )
    return requests


def _checked_prompts(prompts: Sequence[str], count: int | None) -> list[str]:
    """`prompts` checked non-empty strings; with `count` (controlnet), one for every request or one for each."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for number, text in enumerate(prompts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"prompt_requests: prompts[{number}] must be a non-empty string, got {text!r}.")
    if count is None:
        return prompts
    if len(prompts) not in (1, count):
        raise ValueError(
            f"prompt_requests: controlnet takes 1 prompt or one per request ({count}), got {len(prompts)}."
        )
    return prompts * count if len(prompts) == 1 else prompts


def prompt_requests(
    mode: str = "text",
    views: Sequence[str] = ("2CH", "4CH"),
    phases: Sequence[str] = ("ED", "ES"),
    per_class: int = 1,
    seed: int = 0,
    template: int = 0,
    label_maps: str | os.PathLike | None = None,
    copies: int = 1,
    split: str | Sequence[str] | None = None,
    prefix: str = "patient",
    prompts: Sequence[str] | None = None,
) -> list[GenerationRequest]:
    """The requests of one DiffEcho mode.

    - ``text``: ``per_class`` items for every view x phase, each with the prompt
      :class:`echo_monai.transforms.EchoPrompt` writes for its class (``template``);
    - ``unconditional``: the same items with the null prompt ``""`` (their view and phase only name the files);
    - ``controlnet``: one item per label map of ``label_maps`` and copy (see :func:`label_map_requests`), prompted
      with the label map's own view and phase.

    ``prompts`` (text mode) replaces the generated prompts with your own, ``per_class`` items each; the view and phase
    that name an item's files are read from its words (``two-chamber``/``four-chamber``, ``end-diastolic``/
    ``end-systolic``; ``4CH``/``ED`` when it names none). In ``controlnet`` mode ``prompts`` is one prompt for every
    label map, or one per request (label map and copy), instead of the label map's own view and phase.

    Every request's ``conditions`` hold ``prompt`` (and ``label``/``image`` for label maps); its ``source`` the
    patient (``<prefix><i>`` without label maps), view, phase and copy, which the CAMUS writer names files by.

    Raises:
        ValueError: for an unknown mode, ``per_class < 1``, an unknown view or phase, or ``controlnet`` without
            ``label_maps``.
    """
    if mode not in ("unconditional", "text", "controlnet"):
        raise ValueError(f"prompt_requests: mode must be 'unconditional', 'text' or 'controlnet', got {mode!r}.")
    prompt = EchoPrompt()
    if mode == "controlnet":
        if label_maps is None:
            raise ValueError("prompt_requests: mode 'controlnet' needs label_maps (a CAMUS root or label map folder).")
        requests = label_map_requests(label_maps, copies=copies, split=split, seed=seed)
        own = _checked_prompts(prompts, len(requests)) if prompts is not None else None
        return [
            GenerationRequest(
                r.name,
                r.index,
                r.seed,
                {
                    **r.conditions,
                    "prompt": own[i] if own else prompt.build(r.source["view"], r.source["phase"], template),
                },
                r.split,
                r.source,
            )
            for i, r in enumerate(requests)
        ]
    if per_class < 1:
        raise ValueError(f"prompt_requests: per_class must be >= 1, got {per_class}.")
    entries: list[tuple[str, str, str, int]] = []  # (prompt, view, phase, patient number) per item
    if prompts is not None and mode == "text":
        for text in _checked_prompts(prompts, None):
            entries += [(text, *_named_class(text), len(entries) + i) for i in range(int(per_class))]
    else:  # a synthetic patient per copy, with one image per view x phase, as CAMUS has
        for view in views:
            for phase in phases:
                text = prompt.build(view, phase, template) if mode == "text" else ""
                entries += [(text, view, phase, i) for i in range(int(per_class))]
    requests = []
    for index, (text, view, phase, number) in enumerate(entries):
        source = {"patient": f"{prefix}{number:05d}", "view": view, "phase": phase, "copy": 0}
        name = f"{source['patient']}_{view}_{phase}"
        requests.append(GenerationRequest(name, index, int(seed) + index, {"prompt": text}, source=source))
    return requests


def _named_class(prompt: str) -> tuple[str, str]:
    """The (view, phase) a prompt names, ``("4CH", "ED")`` for what it does not name."""
    words = prompt.lower()
    view = "2CH" if "two-chamber" in words or "2ch" in words else "4CH"
    phase = "ES" if "end-systolic" in words or "systol" in words else "ED"
    return view, phase


def request_conditions(requests: Sequence[GenerationRequest]) -> list[dict[str, Any]]:
    """The conditions of each request as plain dicts (a dataset of them for a sampling evaluator)."""
    return [dict(request.conditions) for request in requests]


def requests_fingerprint(requests: Sequence[GenerationRequest]) -> str:
    """A short hash of a request list (names, seeds, conditions, splits), tying per-rank reports to one job."""
    text = json.dumps([r.to_dict() for r in requests], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RankReport:
    """What one rank did in one run.

    Attributes:
        rank: the rank.
        world_size: the number of ranks.
        written: names generated and written by this run.
        skipped_existing: items of this rank already on disk.
        failed: names given up (every reference the privacy gate rejected).
        rejected_references: references drawn and rejected by the gate in this run.
        gated: names generated but rejected by the output gate (not written).
    """

    rank: int
    world_size: int
    written: list[str] = field(default_factory=list)
    skipped_existing: int = 0
    failed: list[str] = field(default_factory=list)
    rejected_references: int = 0
    gated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationReport:
    """The merged report of a job, recounted from the items on disk (so a resumed job reports all of it).

    Attributes:
        job: :func:`requests_fingerprint` of the requests.
        world_size: ranks of the last run.
        requested: number of requests.
        written: names with a finished item on disk, in request order.
        failed: requests given up by every rank that tried them.
        missing: requests neither written, failed nor gated (a rank has not finished).
        skipped_existing: items the last run found finished.
        accepted_references: references that passed the gate (one per written item that drew a reference).
        rejected_references: references the gate rejected (``max_attempts`` per failed request).
        gated: requests generated but rejected by the output gate (re-identified; not written).
    """

    job: str
    world_size: int
    requested: int
    written: list[str]
    failed: list[str]
    missing: list[str]
    skipped_existing: int = 0
    accepted_references: int = 0
    rejected_references: int = 0
    gated: list[str] = field(default_factory=list)

    @property
    def gate_rejection_rate(self) -> float:
        """Rejected / drawn references: the share the re-identification filter flagged (memorisation before it)."""
        return self.rejected_references / max(1, self.accepted_references + self.rejected_references)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gate_rejection_rate": self.gate_rejection_rate}


def motion_requests(
    root: str | os.PathLike,
    mode: str = "transfer",
    split: str = "TEST",
    limit: int | None = None,
    copies: int = 1,
    reference: str | os.PathLike | None = None,
    seed: int = 0,
    output_split: str = "TRAIN",
    ejection_fraction: float | None = None,
) -> list[GenerationRequest]:
    """Requests of a motion-conditioned video model (MCDM): one per source video and copy.

    ``mode="transfer"``: the source video drives the motion (``video``: its path, ``ejection_fraction``: its EF
    when the source is an EchoNet-Dynamic root, so an EchoNet-layout export can record it). ``mode="prior"``: the
    motion is drawn from a prior, seeded ``motion_seed`` (the request's seed), and the source video only gives the
    reference frame. The reference frame is the source video's first frame, or ``reference`` (one image file) for
    every request (a reference from any image, the motion from another video).

    Args:
        root: an EchoNet-Dynamic root (``FileList.csv`` + ``Videos/``), a folder of ``.avi`` files or one ``.avi``.
        mode: ``"transfer"`` or ``"prior"``.
        split: the EchoNet split whose videos are read (held-out ones by default: never the training videos).
        limit: the first ``limit`` videos.
        copies: requests per video (each its own seed).
        reference: an image every request takes its reference frame from; None for each video's first frame.
        seed: base seed; request ``i`` gets ``seed + i``.
        output_split: the split the items are written to.
        ejection_fraction: the EF (percent) of every request, for a model with an EF token; None: the source
            video's label in mode transfer, none in mode prior.

    Raises:
        FileNotFoundError: a missing root or reference.
        ValueError: an unknown mode, ``copies < 1``, no video found, an EF outside [0, 100] (other than -1, none).
    """
    if mode not in ("transfer", "prior"):
        raise ValueError(f"motion_requests: mode must be 'transfer' or 'prior', got {mode!r}.")
    if int(copies) < 1:
        raise ValueError(f"motion_requests: copies must be >= 1, got {copies}.")
    if ejection_fraction is not None and not (0.0 <= float(ejection_fraction) <= 100.0 or ejection_fraction == -1):
        raise ValueError(
            f"motion_requests: ejection_fraction must be in [0, 100] (or -1: none), got {ejection_fraction}."
        )
    root = Path(root)
    if reference is not None and not Path(reference).is_file():
        raise FileNotFoundError(f"motion_requests: reference image {str(reference)!r} does not exist.")
    if (root / "FileList.csv").is_file():
        from echo_monai.data.echonet import EchoNetDynamic

        records = EchoNetDynamic(root, split=split, require_tracings=False).data
        videos = [(Path(r["video_path"]), r["meta"]["ejection_fraction"]) for r in records]
    elif root.is_dir():
        videos = [(p, None) for p in sorted(root.glob("*.avi"))]
    elif root.is_file():
        videos = [(root, None)]
    else:
        raise FileNotFoundError(f"motion_requests: {str(root)!r} is neither an EchoNet root, a folder nor a video.")
    videos = videos[: None if limit is None else int(limit)]
    if not videos:
        raise ValueError(f"motion_requests: no video in {str(root)!r} (split {split!r}).")
    requests = []
    for i, ((path, ef), copy) in enumerate((v, c) for v in videos for c in range(int(copies))):
        conditions: dict[str, Any] = {"video": str(path), "reference": None if reference is None else str(reference)}
        if mode == "prior":
            conditions["motion_seed"] = int(seed) + i
        if ejection_fraction is not None:
            conditions["ejection_fraction"] = float(ejection_fraction)
        elif ef is not None and mode == "transfer":
            conditions["ejection_fraction"] = float(ef)
        source = {"source_video": path.name, "copy": copy, "mode": mode}
        requests.append(GenerationRequest(f"{path.stem}_{mode}_c{copy:02d}", i, int(seed) + i, conditions,
                                          split=output_split, source=source))  # fmt: skip
    return requests
