"""Serving a trained bundle outside the bundle CLI (MONAI Deploy, MONAI Label): which bundles are served, what one
request holds, the request parameters each bundle takes, and generation into viewer files through the bundle's own
generation pipeline.

Served bundles (:data:`TASKS`):

- ``echo_seg_ddpm``: label maps (``*.nii.gz``, ``*.nii``, ``*.png``, or a 2D DICOM SEG ``*.dcm`` whose segment
  numbers are the classes; one image per label map); parameters ``sampler`` (``ddpm`` | ``ddim`` | ``dpm_solver``,
  default ``dpm_solver``) and ``steps`` (default 10);
- ``echo_flow``: ejection fractions (percent, 0-100; one cine each), optionally with one still frame of the user's
  (an image file of :data:`IMAGE_SUFFIXES`) that every cine starts from instead of a sampled first frame; parameters
  ``solver`` (``euler`` | ``heun``, default ``euler``) and ``steps`` (default 8: the step count the bundle's benchmark
  found within 1 EF point of the 64-step DDPM baseline);
- ``echo_text_controlnet``: one prompt per request (text mode), or a prompt and one label map (ControlNet mode; the
  label map's own view and phase give the prompt when there is none); parameters ``mode`` (``text`` |
  ``controlnet``, default ``text``), ``sampler`` (``ddim`` | ``dpm_solver``, default ``dpm_solver``) and ``steps``
  (default: the trained bundle's own);
- ``us_image_to_video``: one still ultrasound image (PNG / JPEG / BMP / TIFF, DICOM or NIfTI; letterboxed to the
  model's size as the bundle does) per request, animated into one video; parameters ``solver`` and ``steps`` (by
  default the trained bundle's own: 16 unless trained otherwise; ``solver`` applies to flow matching).

Files are written by :class:`echo_monai.apps.generation.VideoFileWriter` (DICOM: modality US, UIDs from the request,
``SYNTHETIC`` in the series description and the patient name, frame time from the bundle's fps; NIfTI: ``descrip``
says synthetic; nothing is copied from any input). Generation runs into a temporary folder beside the output folder;
only finished files are moved (renamed) into the output folder, so a failed request leaves no partial file there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DESCRIPTION",
    "IMAGE_SUFFIXES",
    "LABEL_MAP_SUFFIXES",
    "SUFFIXES",
    "TASKS",
    "Parameter",
    "ServeError",
    "ServeRequest",
    "Task",
    "generate_files",
    "request_settings",
    "trained_bundle",
]

DESCRIPTION = "SYNTHETIC ultrasound (echo_monai, not for clinical use)"
LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".png", ".dcm")  # .dcm: a 2D DICOM SEG
#: still images an image-to-video bundle animates (echo_monai.transforms.LoadGreyImaged reads them)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz")
#: the file each format is written to (VideoFileWriter's names)
SUFFIXES = {"dicom": ".dcm", "nifti": ".nii.gz", "gif": ".gif", "mp4": ".mp4"}


class ServeError(ValueError):
    """A bad request, input file or model folder; the message is the one line the user sees."""


@dataclass(frozen=True)
class Parameter:
    """A request parameter: the config id it sets, its default, and the values allowed (choices or a closed range)."""

    config_id: str
    default: Any
    choices: tuple = ()
    low: float | None = None
    high: float | None = None

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.default is None:  # not given, and the bundle's own setting is the default
            return None
        if self.choices:
            if value not in self.choices:
                raise ServeError(
                    f"parameter '{name}' must be one of {', '.join(map(str, self.choices))}, got {value!r}."
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ServeError(f"parameter '{name}' must be a whole number, got {value!r}.")
        if not self.low <= int(value) <= self.high:
            raise ServeError(f"parameter '{name}' must be in {self.low:g}-{self.high:g}, got {value!r}.")
        return int(value)


@dataclass(frozen=True)
class Task:
    """How a bundle is served: the input it reads, the config ids it sets for one request, and its parameters."""

    input_kind: str  # "label_map" | "ejection_fraction" | "image" | "prompt" (and, for ControlNet, a label map)
    writer_key: str  # the config id of the generation's writer
    fps: str | float = "@fps"  # the writer's frame rate: the bundle's own, or a value for a bundle of still images
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    output: str = "image"  # what one request item becomes: "image" | "cine" | "video"


TASKS: dict[str, Task] = {
    "echo_seg_ddpm": Task(
        "label_map",
        "writer",
        fps=30.0,  # images: written as US Image Storage, no frame time
        parameters={
            "sampler": Parameter("sampler_name", "dpm_solver", choices=("ddpm", "ddim", "dpm_solver")),
            "steps": Parameter("num_inference_steps", 10, low=1, high=1000),
        },
    ),
    "echo_flow": Task(
        "ejection_fraction",
        "generation::writer",
        parameters={
            "solver": Parameter("solver", "euler", choices=("euler", "heun")),
            "steps": Parameter("num_inference_steps", 8, low=1, high=1000),
        },
        output="cine",
    ),
    "echo_text_controlnet": Task(
        "prompt",
        "generation::writer",
        fps=30.0,  # images
        parameters={
            "mode": Parameter("mode", "text", choices=("text", "controlnet")),
            "sampler": Parameter("sampler_name", "dpm_solver", choices=("ddim", "dpm_solver")),
            "steps": Parameter("num_inference_steps", None, low=1, high=1000),  # None: the bundle's own (25)
        },
    ),
    "us_image_to_video": Task(
        "image",
        "generation::writer",
        parameters={
            "solver": Parameter("solver", "euler", choices=("euler", "heun")),
            "steps": Parameter("num_inference_steps", None, low=1, high=1000),  # None: the bundle's own (16)
        },
        output="video",
    ),
}


@dataclass
class ServeRequest:
    """One request: label map files, ejection fractions, one still image, or prompts (with label maps: ControlNet).

    ``reference_image``: for ejection fractions, a still frame every cine starts from (None: a sampled one).
    """

    kind: str
    label_maps: list[str] = field(default_factory=list)
    ejection_fractions: list[float] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    reference_image: str | None = None

    def __len__(self) -> int:
        if self.kind == "prompt":
            return len(self.label_maps) or len(self.prompts)
        return len({"label_map": self.label_maps, "image": self.images}.get(self.kind, self.ejection_fractions))


def trained_bundle(model_folder: str | os.PathLike) -> str:
    """The bundle a trained folder (``--bundle_root`` of ``echo-monai train``) belongs to, checked servable.

    Raises:
        ServeError: no ``models/model.pt``, no training record, or a bundle that is not served.
    """
    from echo_monai.apps.provenance import RECORD_FILE, read_record

    models = Path(model_folder) / "models"
    if not (models / "model.pt").is_file():
        raise ServeError(f"model folder '{model_folder}' has no models/model.pt (train the bundle there first).")
    try:
        record = read_record(models)
    except ValueError as error:
        raise ServeError(str(error)) from error
    name = (record or {}).get("bundle")
    if name is None:
        raise ServeError(f"model folder '{model_folder}' has no models/{RECORD_FILE} naming its bundle.")
    if name not in TASKS:
        raise ServeError(f"bundle '{name}' (in '{model_folder}') is not served; served: {', '.join(sorted(TASKS))}.")
    return str(name)


def check_ejection_fractions(values: Any, where: str) -> list[float]:
    """``values`` (a number or a non-empty list of numbers, percent) as floats in 0-100; `where` names the input."""
    values = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else values
    if not isinstance(values, list) or not values:
        raise ServeError(f"{where}: ejection_fraction must be EF or [EF, ...] in percent, got {values!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 100.0:
            raise ServeError(f"{where}: ejection_fraction {value!r} is outside 0-100 (percent).")
    return [float(v) for v in values]


def request_settings(bundle: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The config overrides of a request's parameters for `bundle` (defaults for those not given), checked.

    Raises:
        ServeError: an unknown parameter or a value outside its choices or range.
    """
    known = TASKS[bundle].parameters
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ServeError(f"{bundle} takes the parameters {', '.join(known)}; unknown: {', '.join(unknown)}.")
    settings = {p.config_id: p.check(name, parameters.get(name, p.default)) for name, p in known.items()}
    return {key: value for key, value in settings.items() if value is not None}


def _stage_label_map(path: Path, folder: Path) -> Path:
    """`path` as a label map file in `folder`: a link to it (a copy where links fail), or a DICOM SEG as NIfTI."""
    if path.name.lower().endswith(".dcm"):
        import nibabel as nib
        import numpy as np

        from echo_monai.data import read_dicom_seg

        try:
            label = read_dicom_seg(path)
        except ValueError as error:
            raise ServeError(str(error)) from error
        target = folder / f"{path.name[: -len('.dcm')]}.nii.gz"
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(target))
        return target
    return _stage_file(path, folder)


def _stage_file(path: Path, folder: Path) -> Path:
    """`path` linked into `folder` under its own name (copied where links fail)."""
    if not path.is_file():
        raise ServeError(f"input file '{path}' does not exist.")
    target = folder / path.name
    try:
        target.symlink_to(path.resolve())
    except OSError:
        shutil.copy2(path, target)
    return target


def _overrides(
    bundle: str,
    request: ServeRequest,
    workdir: Path,
    label_dir: Path | None,
    image: Path | None,
    formats: Sequence[str],
) -> dict[str, Any]:
    writer = {"_target_": "echo_monai.apps.generation.VideoFileWriter", "root": str(workdir), "formats": list(formats),
              "fps": TASKS[bundle].fps, "description": DESCRIPTION}  # fmt: skip
    overrides: dict[str, Any] = {TASKS[bundle].writer_key: writer, "output_dir": str(workdir)}
    if request.kind == "label_map":
        # a label map of another size than the model's is refused, not resampled (whatever the training preset says)
        overrides.update(dataset_dir=str(label_dir), copies=1, label_map_split=None, resize_label_maps=False)
    elif request.kind == "image":  # one image file: one video, as viewer files
        overrides.update(images=str(image), samples_per_image=1, limit=None, output_layout="files")
    elif request.kind == "prompt" and request.label_maps:  # ControlNet: one image per label map, its prompt or ours
        overrides.update(dataset_dir=str(label_dir), copies=1, label_map_split=None, resize_label_maps=False,
                         prompts=list(request.prompts) or None)  # fmt: skip
    elif request.kind == "prompt":
        overrides.update(prompts=list(request.prompts), per_class=1)
    else:
        overrides.update(ejection_fractions=list(request.ejection_fractions), num_videos=len(request))
        if image is not None:  # the user's first frame, encoded by the bundle instead of a sampled one
            overrides.update(reference_image=str(image))
    return overrides


def generate_files(
    model_folder: str | os.PathLike,
    request: ServeRequest,
    output_folder: str | os.PathLike,
    bundle: str,
    formats: Sequence[str] = ("dicom",),
    settings: Mapping[str, Any] | None = None,
) -> list[dict[str, Path]]:
    """Generate the request's synthetic files with the trained bundle in `model_folder` into `output_folder`.

    Args:
        formats: :class:`~echo_monai.apps.generation.VideoFileWriter` formats written per item.
        settings: more config overrides (:func:`request_settings`).

    Returns:
        per request item, in request order, its files by format.

    Raises:
        ServeError: naming the input, for a label map the bundle refuses (size, class values) or any other bad
            input the bundle's checks find; nothing is written to `output_folder` then.
    """
    from echo_monai.apps.cli import CLIError, bundle_parser
    from echo_monai.apps.errors import one_line

    unknown = sorted(set(formats) - set(SUFFIXES))
    if unknown or not formats:
        raise ServeError(f"formats must be some of {', '.join(SUFFIXES)}, got {list(formats)!r}.")
    output = Path(output_folder)
    output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".echo_monai_serve_", dir=output.parent))
    try:
        label_dir, image, sources = None, None, {}
        if request.label_maps:  # the bundle reads a folder: the inputs, linked (a DICOM SEG converted) there
            label_dir = scratch / "label_maps"
            label_dir.mkdir()
            for path in request.label_maps:
                target = _stage_label_map(Path(path), label_dir)
                sources[str(target)] = str(path)
        elif request.kind == "image" or request.reference_image is not None:
            # one still image: the one to animate, or the first frame of every cine
            if request.kind == "image" and len(request.images) != 1:
                raise ServeError(f"{bundle}: one image per request, got {len(request.images)}.")
            given = str(request.images[0] if request.kind == "image" else request.reference_image)
            (scratch / "image").mkdir()
            image = _stage_file(Path(given), scratch / "image")
            sources[str(image)] = given
        workdir = scratch / "generated"
        overrides = {
            "bundle_root": str(model_folder),
            **dict(settings or {}),
            **_overrides(bundle, request, workdir, label_dir, image, formats),
        }
        try:
            parser = bundle_parser(bundle, overrides)
            generation, requests = parser.get_parsed_content("generation"), parser.get_parsed_content("requests")
            report = generation.run(requests)
        except (CLIError, ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
            line = one_line(error).splitlines()[0]  # the component's own error, not MONAI's "Failed to instantiate"
            for staged, path in sources.items():  # name the user's file, not its copy in the scratch folder
                line = line.replace(staged, path)
            raise ServeError(f"{bundle}: {line}") from error
        if report is None or report.failed or report.missing:
            detail = report.to_dict() if report else "no report"
            raise ServeError(f"{bundle}: not every item was generated ({detail}).")
        written = []
        for name in report.written:
            files = {}
            for fmt in formats:
                target = output / f"{name}{SUFFIXES[fmt]}"
                os.replace(workdir / target.name, target)
                files[fmt] = target
            written.append(files)
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
