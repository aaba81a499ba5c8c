"""What the MONAI Deploy application does with one input folder, without the SDK: read the request, check it against
the trained bundle, and generate synthetic ultrasound DICOM through the bundle's own generation pipeline
(:mod:`echo_monai.apps.serving`, shared with the MONAI Label app).

Inputs (one kind per run, by the trained bundle):

- ``echo_seg_ddpm``: label maps (``*.nii.gz``, ``*.nii``, ``*.png``, or a 2D DICOM SEG ``*.dcm`` whose segment
  numbers are the classes; one image generated per label map) -> one Ultrasound Image Storage file each;
- ``echo_flow``: ``request.json`` ``{"ejection_fraction": 45}`` or ``{"ejection_fraction": [30, 55]}`` (percent,
  0-100) -> one Ultrasound Multi-frame Image Storage cine each; with one still echo frame beside it (an image file:
  PNG / JPEG / BMP / TIFF, single-frame DICOM or NIfTI), every cine starts from that frame instead of a sampled one.

An optional ``request.json`` also holds the bundle's request parameters (``{"sampler": "ddim", "steps": 50}`` for
echo_seg_ddpm, ``{"solver": "heun", "steps": 16}`` for echo_flow; :data:`echo_monai.apps.serving.TASKS`); without
them the fast defaults are used. Only finished DICOM files are moved into the output folder, so a failed run leaves
no partial DICOM there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echo_monai.apps.serving import (
    DESCRIPTION,
    IMAGE_SUFFIXES,
    LABEL_MAP_SUFFIXES,
    TASKS,
    ServeError,
    ServeRequest,
    check_ejection_fractions,
    generate_files,
    request_settings,
    trained_bundle,
)

__all__ = ["DESCRIPTION", "TASKS", "DeployError", "DeployRequest", "generate_dicom", "read_request", "trained_bundle"]

REQUEST_FILE = "request.json"
DeployError = ServeError  # the one-line error the application prints


@dataclass
class DeployRequest(ServeRequest):
    """One run's request: label map files or ejection fractions, and the bundle's request parameters."""

    parameters: dict[str, Any] = field(default_factory=dict)


def _label_maps(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(LABEL_MAP_SUFFIXES))


def _request_file(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DeployError(f"'{path}' is not readable JSON ({error}).") from error
    if not isinstance(content, Mapping):
        raise DeployError(f"'{path}' must hold a JSON object, got {content!r}.")
    return dict(content)


def read_request(input_folder: str | os.PathLike, bundle: str) -> DeployRequest:
    """The request in `input_folder` for `bundle`'s task.

    Raises:
        DeployError: a missing folder, no input of the task's kind, an unreadable request, an EF outside 0-100 or a
            bad request parameter.
    """
    folder = Path(input_folder)
    if not folder.is_dir():
        raise DeployError(f"input folder '{folder}' does not exist.")
    path = folder / REQUEST_FILE
    content = _request_file(path) if path.is_file() else {}
    kind = TASKS[bundle].input_kind
    if kind not in ("label_map", "ejection_fraction"):
        raise DeployError(
            f"bundle '{bundle}' is served by MONAI Label (docs/monai_label.md), not by this application: "
            "it serves echo_seg_ddpm and echo_flow."
        )
    if kind == "label_map":
        files = _label_maps(folder)
        if not files:
            raise DeployError(
                f"input folder '{folder}' has no label map ({', '.join(LABEL_MAP_SUFFIXES)}) for bundle '{bundle}'."
            )
        request = DeployRequest(kind, label_maps=files)
    else:
        if not path.is_file():
            raise DeployError(f"input folder '{folder}' has no {REQUEST_FILE} with the EF(s) for bundle '{bundle}'.")
        if "ejection_fraction" not in content:
            raise DeployError(
                f"'{path}' must hold {{\"ejection_fraction\": EF or [EF, ...]}} in percent, got {content!r}."
            )
        frames = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        if len(frames) > 1:
            raise DeployError(
                f"input folder '{folder}' holds {len(frames)} images; give at most one still frame for every cine "
                f"to start from, got {', '.join(Path(f).name for f in frames)}."
            )
        request = DeployRequest(
            kind,
            ejection_fractions=check_ejection_fractions(content.pop("ejection_fraction"), f"'{path}'"),
            reference_image=frames[0] if frames else None,
        )
    request.parameters = {k: v for k, v in content.items() if k != "ejection_fraction"}
    try:
        request_settings(bundle, request.parameters)
    except ServeError as error:
        raise DeployError(f"'{path}': {error}") from error
    return request


def generate_dicom(
    model_folder: str | os.PathLike, request: ServeRequest, output_folder: str | os.PathLike, bundle: str
) -> list[Path]:
    """Generate the request's synthetic DICOM files with the trained bundle in `model_folder` into `output_folder`.

    Returns:
        the DICOM files written, in request order.

    Raises:
        DeployError: naming the input, for a label map the bundle refuses (size, class values) or any other bad
            input the bundle's checks find; nothing is written to `output_folder` then.
    """
    settings = request_settings(bundle, getattr(request, "parameters", {}))
    files = generate_files(model_folder, request, output_folder, bundle, formats=("dicom",), settings=settings)
    return [item["dicom"] for item in files]
