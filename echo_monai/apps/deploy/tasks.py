"""What the MONAI Deploy application does with one input folder, without the SDK: read the request, check it against
the trained bundle, and generate synthetic ultrasound DICOM through the bundle's own generation pipeline.

Inputs (one kind per run, by the trained bundle):

- ``echo_seg_ddpm``: label maps (``*.nii.gz``, ``*.nii``, ``*.png``, or a 2D DICOM SEG ``*.dcm`` whose segment
  numbers are the classes; one image generated per label map) -> one Ultrasound Image Storage file each;
- ``echo_flow``: ``request.json`` ``{"ejection_fraction": 45}`` or ``{"ejection_fraction": [30, 55]}`` (percent,
  0-100) -> one Ultrasound Multi-frame Image Storage cine each.

Every file is written by :class:`echo_monai.apps.generation.VideoFileWriter` (modality US, UIDs from the request,
``SYNTHETIC`` in the series description and the patient name, frame time from the bundle's fps; nothing is copied
from any input). Generation runs into a temporary folder beside the output folder; only finished DICOM files are
moved (renamed) into the output folder, so a failed run leaves no partial DICOM there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DESCRIPTION", "TASKS", "DeployError", "DeployRequest", "generate_dicom", "read_request", "trained_bundle"]

DESCRIPTION = "SYNTHETIC ultrasound (echo_monai, not for clinical use)"
LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".png", ".dcm")  # .dcm: a 2D DICOM SEG
REQUEST_FILE = "request.json"


class DeployError(ValueError):
    """A bad input folder, request or model folder; the message is the one line the application prints."""


@dataclass(frozen=True)
class Task:
    """How a bundle is served: the input it reads and the config ids it sets for one run."""

    input_kind: str  # "label_map" | "ejection_fraction"
    writer_key: str  # the config id of the generation's writer
    fps: str | float = "@fps"  # the writer's frame rate: the bundle's own, or a value for a bundle of still images


TASKS: dict[str, Task] = {
    "echo_seg_ddpm": Task("label_map", "writer", fps=30.0),  # images: written as US Image Storage, no frame time
    "echo_flow": Task("ejection_fraction", "generation::writer"),
}


@dataclass
class DeployRequest:
    """One run's request: label map files or ejection fractions."""

    kind: str
    label_maps: list[str] = field(default_factory=list)
    ejection_fractions: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.label_maps) if self.kind == "label_map" else len(self.ejection_fractions)


def trained_bundle(model_folder: str | os.PathLike) -> str:
    """The bundle a trained folder (``--bundle_root`` of ``echo-monai train``) belongs to, checked servable.

    Raises:
        DeployError: no ``models/model.pt``, no training record, or a bundle the application does not serve.
    """
    from echo_monai.apps.provenance import RECORD_FILE, read_record

    models = Path(model_folder) / "models"
    if not (models / "model.pt").is_file():
        raise DeployError(f"model folder '{model_folder}' has no models/model.pt (train the bundle there first).")
    try:
        record = read_record(models)
    except ValueError as error:
        raise DeployError(str(error)) from error
    name = (record or {}).get("bundle")
    if name is None:
        raise DeployError(f"model folder '{model_folder}' has no models/{RECORD_FILE} naming its bundle.")
    if name not in TASKS:
        raise DeployError(f"bundle '{name}' (in '{model_folder}') is not served; served: {', '.join(sorted(TASKS))}.")
    return str(name)


def _label_maps(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(LABEL_MAP_SUFFIXES))


def _ejection_fractions(path: Path) -> list[float]:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DeployError(f"'{path}' is not readable JSON ({error}).") from error
    values = content.get("ejection_fraction") if isinstance(content, Mapping) else None
    values = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else values
    if not isinstance(values, list) or not values:
        raise DeployError(f"'{path}' must hold {{\"ejection_fraction\": EF or [EF, ...]}} in percent, got {content!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 100.0:
            raise DeployError(f"'{path}': ejection_fraction {value!r} is outside 0-100 (percent).")
    return [float(v) for v in values]


def _stage_label_map(path: Path, folder: Path) -> Path:
    """`path` as a label map file in `folder`: a link to it (a copy where links fail), or a DICOM SEG as NIfTI."""
    if path.name.lower().endswith(".dcm"):
        import nibabel as nib
        import numpy as np

        from echo_monai.data import read_dicom_seg

        try:
            label = read_dicom_seg(path)
        except ValueError as error:
            raise DeployError(str(error)) from error
        target = folder / f"{path.name[: -len('.dcm')]}.nii.gz"
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(target))
        return target
    target = folder / path.name
    try:
        target.symlink_to(path.resolve())
    except OSError:
        shutil.copy2(path, target)
    return target


def read_request(input_folder: str | os.PathLike, bundle: str) -> DeployRequest:
    """The request in `input_folder` for `bundle`'s task.

    Raises:
        DeployError: a missing folder, no input of the task's kind, an unreadable request or an EF outside 0-100.
    """
    folder = Path(input_folder)
    if not folder.is_dir():
        raise DeployError(f"input folder '{folder}' does not exist.")
    kind = TASKS[bundle].input_kind
    if kind == "label_map":
        files = _label_maps(folder)
        if not files:
            raise DeployError(
                f"input folder '{folder}' has no label map ({', '.join(LABEL_MAP_SUFFIXES)}) for bundle '{bundle}'."
            )
        return DeployRequest(kind, label_maps=files)
    if not (folder / REQUEST_FILE).is_file():
        raise DeployError(f"input folder '{folder}' has no {REQUEST_FILE} with the EF(s) for bundle '{bundle}'.")
    return DeployRequest(kind, ejection_fractions=_ejection_fractions(folder / REQUEST_FILE))


def _overrides(bundle: str, request: DeployRequest, workdir: Path, label_dir: Path | None) -> dict[str, Any]:
    writer = {"_target_": "echo_monai.apps.generation.VideoFileWriter", "root": str(workdir), "formats": ["dicom"],
              "fps": TASKS[bundle].fps, "description": DESCRIPTION}  # fmt: skip
    overrides: dict[str, Any] = {TASKS[bundle].writer_key: writer, "output_dir": str(workdir)}
    if request.kind == "label_map":
        # a label map of another size than the model's is refused, not resampled (whatever the training preset says)
        overrides.update(dataset_dir=str(label_dir), copies=1, label_map_split=None, resize_label_maps=False)
    else:
        overrides.update(ejection_fractions=list(request.ejection_fractions), num_videos=len(request))
    return overrides


def generate_dicom(
    model_folder: str | os.PathLike, request: DeployRequest, output_folder: str | os.PathLike, bundle: str
) -> list[Path]:
    """Generate the request's synthetic DICOM files with the trained bundle in `model_folder` into `output_folder`.

    Returns:
        the DICOM files written, in request order.

    Raises:
        DeployError: naming the input, for a label map the bundle refuses (size, class values) or any other bad
            input the bundle's checks find; nothing is written to `output_folder` then.
    """
    from echo_monai.apps.cli import CLIError, bundle_parser

    output = Path(output_folder)
    output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".echo_monai_deploy_", dir=output.parent))
    try:
        label_dir, sources = None, {}
        if request.kind == "label_map":  # the bundle reads a folder: the inputs, linked (a DICOM SEG converted) there
            label_dir = scratch / "label_maps"
            label_dir.mkdir()
            for path in request.label_maps:
                target = _stage_label_map(Path(path), label_dir)
                sources[str(target)] = str(path)
        workdir = scratch / "generated"
        overrides = {"bundle_root": str(model_folder), **_overrides(bundle, request, workdir, label_dir)}
        try:
            parser = bundle_parser(bundle, overrides)
            generation, requests = parser.get_parsed_content("generation"), parser.get_parsed_content("requests")
            report = generation.run(requests)
        except (CLIError, ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
            line = str(error).splitlines()[0] if str(error) else type(error).__name__
            for staged, path in sources.items():  # name the user's file, not its copy in the scratch folder
                line = line.replace(staged, path)
            raise DeployError(f"{bundle}: {line}") from error
        if report is None or report.failed or report.missing:
            detail = report.to_dict() if report else "no report"
            raise DeployError(f"{bundle}: not every item was generated ({detail}).")
        written = []
        for name in report.written:
            target = output / f"{name}.dcm"
            os.replace(workdir / f"{name}.dcm", target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
