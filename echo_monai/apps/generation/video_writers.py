"""Writers of generated videos: a BUSV-layout dataset with lesion boxes carried along the motion, and viewer files.

:class:`BusvWriter` makes a dataset that :class:`echo_monai.data.BUSV` reads like the real one (Lin et al., MICCAI
2022): PNG frames under ``rawframes/<label>/<name>/`` and COCO-VID JSON per split. An image-to-video model (LDDM,
Chen et al., MICCAI 2024) animates a still image whose lesion mask is known only on the first frame; the per-frame
boxes come from carrying that mask along the generated motion with dense optical flow (:func:`propagate_mask`).

:class:`VideoFileWriter` writes each generated video in the formats viewers open: GIF, MP4, a folder of PNG frames,
NIfTI 2D+t and multi-frame ultrasound DICOM, each marked as synthetic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import nibabel as nib
import numpy as np
import torch

from echo_monai.apps.generation.requests import GenerationRequest
from echo_monai.apps.generation.writers import DatasetWriter, to_uint8
from echo_monai.data.atomic import atomic_path, write_avi, write_json, write_png
from echo_monai.data.phantom.busv_writer import BUSV_CATEGORIES
from echo_monai.data.phantom.dicom_writer import write_cine_dicom

__all__ = ["FLOW_METHODS", "VIDEO_FORMATS", "BusvWriter", "VideoFileWriter", "mask_box", "propagate_mask"]

FLOW_METHODS = ("farneback", "dis")
VIDEO_FORMATS = ("gif", "mp4", "frames", "nifti", "dicom")
BUSV_SPLITS = {"TRAIN": "train", "VAL": "val"}  # BUSV has no test split (its val set is the benchmark's test set)


def _flow_to_reference(
    frame: np.ndarray, reference: np.ndarray, method: str, initial: np.ndarray | None = None
) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` (dx, dy) with ``frame(x) ~ reference(x + flow(x))``, refined from ``initial``."""
    flow = None if initial is None else initial.copy()
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(frame, reference, flow)
    flags = 0 if flow is None else cv2.OPTFLOW_USE_INITIAL_FLOW
    return cv2.calcOpticalFlowFarneback(
        frame, reference, flow, pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=flags
    )


def propagate_mask(frames: np.ndarray, mask: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Carry the first frame's lesion mask along a video's motion with dense optical flow (OpenCV).

    For every frame ``t`` the flow is computed from frame ``t`` straight back to frame 0, and the mask is pulled
    through it: ``mask_t(x) = mask_0(x + flow_t->0(x))`` (``cv2.remap``, bilinear, kept where >= 0.5). Flows to the
    first frame, rather than chained frame-to-frame flows, do not accumulate each step's error (a chained mask
    drifts and erodes over the clip), and a generated clip stays close to its seed image, so frame 0 remains a good
    reference over the short clips an image-to-video model makes. Each flow starts from the previous frame's flow to
    frame 0, so only one step's motion is left to find: the large displacements of late frames, which a flow
    started from zero misses on small frames, are followed as a chain would follow them, without its drift.

    Args:
        frames: ``(T, H, W)`` uint8 grey video.
        mask: ``(H, W)`` lesion mask of frame 0 (bool, or values in [0, 1]; > 0.5 is lesion).
        method: ``"farneback"`` (``cv2.calcOpticalFlowFarneback``) or ``"dis"`` (``cv2.DISOpticalFlow``, medium
            preset).

    Returns:
        ``(T, H, W)`` bool masks; frame 0 is ``mask`` itself, and an empty mask stays empty.

    Raises:
        ValueError: an unknown method, frames that are not ``(T, H, W)`` uint8, or a mask of another size.

    Example:
        >>> masks = propagate_mask(video_uint8, first_frame_mask)   # (T, H, W) bool
        >>> boxes = [mask_box(m) for m in masks]
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"propagate_mask: method must be one of {FLOW_METHODS}, got {method!r}.")
    frames, mask = np.asarray(frames), np.asarray(mask)
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[0] < 1:
        raise ValueError(f"propagate_mask: frames must be (T, H, W) uint8, got {frames.dtype} {frames.shape}.")
    if mask.shape != frames.shape[1:]:
        raise ValueError(f"propagate_mask: mask must be (H, W) = {frames.shape[1:]} like the frames, got {mask.shape}.")
    first = mask.astype(np.float32) > 0.5
    out = np.zeros(frames.shape, dtype=bool)
    out[0] = first
    if not first.any():
        return out
    height, width = first.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    source, flow = first.astype(np.float32), None
    for t in range(1, len(frames)):
        flow = _flow_to_reference(np.ascontiguousarray(frames[t]), np.ascontiguousarray(frames[0]), method, flow)
        warped = cv2.remap(
            source, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        out[t] = warped >= 0.5
    return out


def mask_box(mask: np.ndarray) -> list[float] | None:
    """The box ``[x, y, w, h]`` (COCO, pixels) enclosing a ``(H, W)`` mask's pixels, or None when it is empty."""
    rows, columns = np.nonzero(np.asarray(mask))
    if rows.size == 0:
        return None
    x, y = float(columns.min()), float(rows.min())
    return [x, y, float(columns.max()) + 1.0 - x, float(rows.max()) + 1.0 - y]


def _video_frames(sample: torch.Tensor | np.ndarray, owner: str, name: str) -> np.ndarray:
    """A generated video ``(1, T, H, W)`` or ``(T, H, W)`` in [-1, 1] (or uint8) as ``(T, H, W)`` uint8."""
    frames = to_uint8(sample)
    if frames.ndim == 4 and frames.shape[0] == 1:
        frames = frames[0]
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise ValueError(f"{owner}: {name}: expected a video (1, T, H, W) or (T, H, W), got {tuple(frames.shape)}.")
    return np.ascontiguousarray(frames)


class BusvWriter(DatasetWriter):
    """Generated breast videos as a BUSV dataset (Lin et al., MICCAI 2022), read back by :class:`echo_monai.data.BUSV`.

    ``rawframes/<label>/<name>/000000.png ...`` (grey replicated to 3 channels, as the release and the phantom
    writer store them; :func:`echo_monai.data.busi.read_grey_png` reads back the exact grey levels) and, from
    :meth:`finalize`, ``imagenet_vid_{train,val}.json`` (COCO-VID: ``videos``, ``images``, ``annotations`` and
    ``categories`` 1 benign, 2 malignant) for the splits that have videos. The class folder in the path gives a
    video without boxes its class. When the conditioned item holds a non-empty lesion mask ``(1, H, W)`` on the
    generated frame grid, it is carried along the generated motion (:func:`propagate_mask`) into one box per frame
    where the lesion is visible; otherwise the video has no boxes.

    Splits: request split ``TRAIN`` -> ``train`` and ``VAL`` -> ``val`` (any case); ``TEST`` is refused, since BUSV
    has no test split and its ``val`` set is the benchmark's test set: write held-out items as ``VAL`` knowingly.

    Each record keeps ``label``, ``num_frames``, ``height``, ``width``, ``boxes`` (a ``[x, y, w, h]`` or None per
    frame, or None for the whole video) and ``boxes_source`` (``"warped_mask"`` or ``"absent"``).

    Args:
        root: dataset folder.
        num_frames: frames of each generated video (they name the item's files).
        label_key: the request condition holding ``"benign"`` or ``"malignant"``.
        mask_key: the conditioned item's lesion mask ``(1, H, W)`` (or ``(H, W)``), values in {0, 1}; None writes no
            boxes.
        flow_method: optical flow of :func:`propagate_mask`, ``"farneback"`` or ``"dis"``.
        require_mask: refuse a request without a mask (``mask_key`` condition None or absent) and an item whose
            conditioned mask is missing, so that every video has boxes unless its mask is empty.

    Example:
        >>> writer = BusvWriter("synthetic_busv", num_frames=16)
        >>> writer.write(request, video, item)    # video (1, T, H, W) in [-1, 1], item["mask"] (1, H, W)
        >>> writer.finalize()
        >>> BUSV(writer.root, annotation_files=writer.annotation_files())
    """

    managed = (*DatasetWriter.managed, "rawframes", "imagenet_vid_train.json", "imagenet_vid_val.json")

    def __init__(
        self,
        root: str | os.PathLike,
        num_frames: int,
        label_key: str = "label",
        mask_key: str | None = "mask",
        flow_method: str = "farneback",
        require_mask: bool = False,
    ) -> None:
        if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"BusvWriter: num_frames must be an integer >= 1, got {num_frames!r}.")
        if flow_method not in FLOW_METHODS:
            raise ValueError(f"BusvWriter: flow_method must be one of {FLOW_METHODS}, got {flow_method!r}.")
        if require_mask and mask_key is None:
            raise ValueError("BusvWriter: require_mask=True needs a mask_key (the conditioned item's lesion mask).")
        super().__init__(root)
        self.num_frames, self.label_key, self.mask_key = int(num_frames), label_key, mask_key
        self.flow_method, self.require_mask = flow_method, bool(require_mask)

    # --- requests -----------------------------------------------------------------------------------------------
    def check(self, request: GenerationRequest) -> None:
        """Refuse a request without a benign/malignant label, with a split BUSV lacks, or (``require_mask``)
        without a mask."""
        labels = [c["name"] for c in BUSV_CATEGORIES]
        label = request.conditions.get(self.label_key)
        if label not in labels:
            raise ValueError(
                f"BusvWriter: request '{request.name}' has {self.label_key}={label!r}; expected one of {labels} "
                "(BUSV holds benign and malignant lesions only)."
            )
        if str(request.split).upper() not in BUSV_SPLITS:
            raise ValueError(
                f"BusvWriter: request '{request.name}' has split {request.split!r}; expected one of "
                f"{sorted(BUSV_SPLITS)} (BUSV has train and val only; its val set serves as the test set)."
            )
        if self.require_mask and request.conditions.get(self.mask_key) is None:
            raise ValueError(
                f"BusvWriter: request '{request.name}' has no '{self.mask_key}' condition, but require_mask=True "
                "(every video's boxes come from its lesion mask)."
            )

    def busv_split(self, request: GenerationRequest) -> str:
        """The BUSV split (``train`` / ``val``) of a request."""
        self.check(request)
        return BUSV_SPLITS[str(request.split).upper()]

    def video_name(self, request: GenerationRequest) -> str:
        """The video's folder under ``rawframes/``: ``<label>/<name>``."""
        self.check(request)
        return f"{request.conditions[self.label_key]}/{request.name}"

    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        folder = self.root / "rawframes" / self.video_name(request)
        return {f"frame_{t:06d}": folder / f"{t:06d}.png" for t in range(self.num_frames)}

    # --- items --------------------------------------------------------------------------------------------------
    def _frames(self, request: GenerationRequest, sample: torch.Tensor) -> np.ndarray:
        frames = _video_frames(sample, "BusvWriter", request.name)
        if len(frames) != self.num_frames:
            raise ValueError(
                f"BusvWriter: {request.name}: the video has {len(frames)} frames; expected num_frames="
                f"{self.num_frames}."
            )
        return frames

    def _mask(self, request: GenerationRequest, item: Mapping[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
        """The first frame's lesion mask ``(H, W)`` bool from the conditioned item, or None without one."""
        value = None if self.mask_key is None else item.get(self.mask_key)
        if value is None:
            if self.require_mask:
                raise ValueError(
                    f"BusvWriter: {request.name}: the conditioned item has no '{self.mask_key}' (it has "
                    f"{sorted(item)}), but require_mask=True."
                )
            return None
        mask = torch.as_tensor(value).detach().cpu().float().numpy()
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.shape != tuple(shape):
            raise ValueError(
                f"BusvWriter: {request.name}: mask '{self.mask_key}' has shape {tuple(np.shape(value))}; expected "
                f"(1, H, W) or (H, W) with (H, W) = {tuple(shape)}, the generated frames' size."
            )
        return mask > 0.5

    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        frames = self._frames(request, sample)
        self._mask(request, item, frames.shape[1:])  # a bad mask is refused before any file is written
        for path, frame in zip(self.item_paths(request).values(), frames, strict=True):
            write_png(path, np.repeat(frame[:, :, None], 3, axis=2))

    def record(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> dict[str, Any]:
        """The base record plus the video's label, size and per-frame boxes (from the warped first-frame mask)."""
        frames = self._frames(request, sample)
        mask = self._mask(request, item, frames.shape[1:])
        boxes = None
        if mask is not None and mask.any():
            boxes = [mask_box(m) for m in propagate_mask(frames, mask, self.flow_method)]
        return {
            **super().record(request, sample, item),
            "label": request.conditions[self.label_key],
            "video": self.video_name(request),
            "busv_split": self.busv_split(request),
            "num_frames": int(frames.shape[0]),
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            "boxes": boxes,
            "boxes_source": "warped_mask" if boxes is not None else "absent",
        }

    # --- index --------------------------------------------------------------------------------------------------
    def annotation_files(self) -> list[Path]:
        """The COCO-VID files :meth:`finalize` wrote (``imagenet_vid_{train,val}.json`` that exist): give them to
        :class:`echo_monai.data.BUSV` as ``annotation_files`` for a folder the generation pipeline wrote, whose own
        JSON files (``generation_report.json``...) in ``root`` are not COCO."""
        paths = [self.root / f"imagenet_vid_{split}.json" for split in BUSV_SPLITS.values()]
        return [path for path in paths if path.is_file()]

    def finalize(self, requests: Sequence[GenerationRequest] | None = None) -> Path:
        """Write ``imagenet_vid_{train,val}.json`` from the records of the finished ``requests`` (every record when
        None; a split without videos has no file, and a stale one is removed) and ``synthetic_sources.csv``.

        Raises:
            ValueError: naming the record of an item that lacks a field the index needs.
        """
        category = {c["name"]: c["id"] for c in BUSV_CATEGORIES}
        coco = {split: {"videos": [], "images": [], "annotations": []} for split in BUSV_SPLITS.values()}
        for name, record in self._finished(requests).items():
            missing = [k for k in ("label", "video", "busv_split", "num_frames", "height", "width") if k not in record]
            if missing:
                raise ValueError(f"BusvWriter: record of {name!r} lacks {missing}; delete it and rerun.")
            split = coco[record["busv_split"]]
            video_id = len(split["videos"]) + 1
            split["videos"].append({"id": video_id, "name": record["video"]})
            boxes = record.get("boxes") or [None] * int(record["num_frames"])
            for t, box in enumerate(boxes):
                image_id = len(split["images"]) + 1
                split["images"].append(
                    {
                        "id": image_id,
                        "file_name": f"{record['video']}/{t:06d}.png",
                        "width": int(record["width"]),
                        "height": int(record["height"]),
                        "video_id": video_id,
                        "frame_id": t,
                    }
                )
                if box is not None:
                    split["annotations"].append(
                        {
                            "id": len(split["annotations"]) + 1,
                            "image_id": image_id,
                            "video_id": video_id,
                            "category_id": category[record["label"]],
                            "instance_id": video_id,
                            "bbox": [float(v) for v in box],
                            "area": float(box[2] * box[3]),
                            "iscrowd": 0,
                        }
                    )
        for split, content in coco.items():
            path = self.root / f"imagenet_vid_{split}.json"
            if content["videos"]:
                write_json(path, {**content, "categories": list(BUSV_CATEGORIES)})
            else:
                path.unlink(missing_ok=True)
        return super().finalize(requests)


def _write_gif(path: Path, frames: np.ndarray, fps: float, description: str) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0, comment=description)


def _write_nifti(path: Path, frames: np.ndarray, spacing: float, description: str) -> None:
    data = np.ascontiguousarray(np.transpose(frames, (2, 1, 0)))  # (T, H, W) -> (W, H, T), as CAMUS stores videos
    image = nib.Nifti1Image(data, np.diag([spacing, spacing, 1.0, 1.0]))
    image.header.set_zooms((spacing, spacing, 1.0))
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode("ascii", "replace")[:79]
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


class VideoFileWriter(DatasetWriter):
    """One generated video per request in the formats viewers open, each marked synthetic.

    Files under ``root`` (``<name>`` is the request's name):

    * ``gif``: ``<name>.gif``, looping, ``description`` as its comment. A preview: Pillow merges identical
      consecutive frames into one longer frame (the timing is kept), so it may hold fewer frames than the video.
    * ``mp4``: ``<name>.mp4``, MPEG-4 (OpenCV ``mp4v``, lossy), 3-channel grey.
    * ``frames``: ``<name>/000000.png ...``, one grey PNG per frame (needs ``num_frames``).
    * ``nifti``: ``<name>.nii.gz``, uint8 ``(W, H, T)`` as the CAMUS release stores videos (a viewer shows each
      frame upright; ``get_fdata().transpose(2, 1, 0)`` is ``(T, H, W)``), pixel size ``pixel_spacing_mm`` (1
      when None), ``description`` in the header's ``descrip`` (80 bytes).
    * ``dicom``: ``<name>.dcm``, US Multi-frame Image Storage, 8-bit MONOCHROME2 at ``fps``
      (:func:`echo_monai.data.phantom.dicom_writer.write_cine_dicom`); ``SeriesDescription`` (64 characters) and
      ``ImageComments`` hold ``description``; UIDs follow from the request's name and seed, so a rerun writes the
      same file. An image sample ``(1, H, W)`` (an image model's) is written as US Image Storage (and as a
      one-frame file in the other formats).

    Args:
        root: output folder.
        formats: some of :data:`VIDEO_FORMATS`.
        fps: frame rate (GIF frame duration, MP4 and DICOM frame rate).
        description: what the files say they are; must say ``synthetic``.
        num_frames: frames of each video; required with ``"frames"`` (they name the item's files).
        pixel_spacing_mm: square pixel size written to NIfTI and DICOM; None: unknown (NIfTI 1, no calibrated
            DICOM region).

    Example:
        >>> writer = VideoFileWriter("videos", formats=("gif", "dicom"), fps=30.0)
        >>> writer.write(request, video)    # video (1, T, H, W) in [-1, 1]
    """

    def __init__(
        self,
        root: str | os.PathLike,
        formats: Sequence[str] = ("gif", "nifti"),
        fps: float = 30.0,
        description: str = "synthetic ultrasound video (echo_monai, not for clinical use)",
        num_frames: int | None = None,
        pixel_spacing_mm: float | None = None,
    ) -> None:
        formats = [formats] if isinstance(formats, str) else list(formats)
        unknown = [f for f in formats if f not in VIDEO_FORMATS]
        if not formats or unknown:
            raise ValueError(
                f"VideoFileWriter: formats must be a non-empty list of {list(VIDEO_FORMATS)}, got {formats!r}"
                + (f" (unknown: {unknown})." if unknown else ".")
            )
        if not fps > 0:
            raise ValueError(f"VideoFileWriter: fps must be > 0, got {fps}.")
        if "synthetic" not in str(description).lower():
            raise ValueError(
                f"VideoFileWriter: description must say the video is synthetic (contain 'synthetic'), got "
                f"{description!r}."
            )
        if num_frames is not None and (int(num_frames) != num_frames or num_frames < 1):
            raise ValueError(f"VideoFileWriter: num_frames must be an integer >= 1 or None, got {num_frames!r}.")
        if "frames" in formats and num_frames is None:
            raise ValueError("VideoFileWriter: the 'frames' format needs num_frames (the frame files of each video).")
        if pixel_spacing_mm is not None and not pixel_spacing_mm > 0:
            raise ValueError(f"VideoFileWriter: pixel_spacing_mm must be > 0 or None, got {pixel_spacing_mm}.")
        super().__init__(root)
        self.formats = tuple(dict.fromkeys(formats))
        self.fps, self.description = float(fps), str(description)
        self.num_frames = None if num_frames is None else int(num_frames)
        self.pixel_spacing_mm = None if pixel_spacing_mm is None else float(pixel_spacing_mm)

    @property
    def managed(self) -> tuple[str, ...]:  # type: ignore[override]
        """The pipeline's entries and every file (in any format) of the items that have a record."""
        names = [path.stem for path in sorted((self.root / "rows").glob("*.json"))]
        files = [f"{n}{suffix}" for n in names for suffix in ("", ".gif", ".mp4", ".nii.gz", ".dcm")]
        return (*DatasetWriter.managed, *files)

    def item_paths(self, request: GenerationRequest) -> dict[str, Path]:
        name = request.name
        suffixes = {"gif": ".gif", "mp4": ".mp4", "nifti": ".nii.gz", "dicom": ".dcm"}
        paths = {f: self.root / f"{name}{suffixes[f]}" for f in self.formats if f in suffixes}
        if "frames" in self.formats:
            paths.update({f"frame_{t:06d}": self.root / name / f"{t:06d}.png" for t in range(self.num_frames)})
        return paths

    def write_item(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> None:
        frames = _video_frames(sample, "VideoFileWriter", request.name)
        still = torch.as_tensor(sample).ndim == 3 and frames.shape[0] == 1  # an image (1, H, W)
        if "frames" in self.formats and len(frames) != self.num_frames:
            raise ValueError(
                f"VideoFileWriter: {request.name}: the video has {len(frames)} frames; expected num_frames="
                f"{self.num_frames} (the 'frames' format names them)."
            )
        paths = self.item_paths(request)
        if "gif" in self.formats:
            _write_gif(paths["gif"], frames, self.fps, self.description)
        if "mp4" in self.formats:
            try:
                write_avi(paths["mp4"], frames, self.fps, codec="mp4v")
            except OSError as error:
                raise OSError(
                    f"VideoFileWriter: OpenCV cannot write the MPEG-4 (mp4v) file {str(paths['mp4'])!r} ({error}); "
                    "this OpenCV build lacks the codec: leave 'mp4' out of formats."
                ) from error
        if "frames" in self.formats:
            for t, frame in enumerate(frames):
                write_png(paths[f"frame_{t:06d}"], frame)
        if "nifti" in self.formats:
            _write_nifti(paths["nifti"], frames, self.pixel_spacing_mm or 1.0, self.description)
        if "dicom" in self.formats:
            write_cine_dicom(
                paths["dicom"],
                frames,
                self.fps,
                self.pixel_spacing_mm,
                patient_id=request.name[:64],
                uid_seed=request.seed,
                uid_name=request.name,
                description=self.description[:64],
                manufacturer="echo_monai",
                patient_name="SYNTHETIC",
                image_comments=self.description,
                still=still,
            )

    def record(self, request: GenerationRequest, sample: torch.Tensor, item: Mapping[str, Any]) -> dict[str, Any]:
        frames = torch.as_tensor(sample).shape[-3:]  # (T, H, W)
        return {
            **super().record(request, sample, item),
            "num_frames": int(frames[0]),
            "height": int(frames[1]),
            "width": int(frames[2]),
            "fps": self.fps,
            "formats": list(self.formats),
            "description": self.description,
        }
