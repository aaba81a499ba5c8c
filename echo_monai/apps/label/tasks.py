"""What one MONAI Label infer request does, without MONAI Label: read the request, check it, generate the synthetic
file through :mod:`echo_monai.apps.serving`, and answer with the file and its JSON.

A request (MONAI Label merges the form's ``params`` into it at the top level) holds:

- ``image``: the file MONAI Label gives the task (an upload, or the studies datastore's image). For
  ``echo_seg_ddpm`` it is the label map (NIfTI or PNG, classes 0-3; or a 2D DICOM SEG) that guides the image; for
  ``us_image_to_video`` the still image (PNG / JPEG / BMP / TIFF, DICOM or NIfTI) that the video starts from. The
  ``echo_flow`` task reads it only with ``reference: image`` (MONAI Label requires one: send any study image).
- ``ejection_fraction``: the cine's EF in percent, 0-100 (``echo_flow``; one value per request).
- ``reference``: where the ``echo_flow`` cine starts: ``sampled`` (default: a first frame sampled by the bundle's image
  model and passed through its privacy gate) or ``image`` (the request's image, a still echo frame, is the first
  frame).
- ``prompt``: the image's prompt (``echo_text_controlnet``; default :data:`DEFAULT_PROMPT` in text mode, the label
  map's own view and phase in ControlNet mode, where the request's image is the label map that guides it).
- the bundle's parameters (:data:`echo_monai.apps.serving.TASKS`): ``sampler`` and ``steps`` (``echo_seg_ddpm``,
  defaults ``dpm_solver`` and 10), ``solver`` and ``steps`` (``echo_flow``, defaults ``euler`` and 8;
  ``us_image_to_video``, ``euler`` and the bundle's own steps).
- ``output_format``: ``nifti`` (default: 3D Slicer and OHIF open it; ``(W, H, T)`` uint8, ``T = 1`` for an image) or
  ``dicom`` (Ultrasound Image / Multi-frame Image Storage).

Keys MONAI Label adds itself (``model``, ``description``, ``device``, ``save_label`` ...) are left to it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from echo_monai.apps.serving import (
    DESCRIPTION,
    IMAGE_SUFFIXES,
    LABEL_MAP_SUFFIXES,
    SUFFIXES,
    TASKS,
    ServeError,
    ServeRequest,
    check_ejection_fractions,
    generate_files,
    request_settings,
    trained_bundle,
)
from echo_monai.transforms.prompts import EchoPrompt

__all__ = ["DEFAULT_PROMPT", "OUTPUT_FORMATS", "REFERENCES", "label_request", "run_label_request", "task_config"]

OUTPUT_FORMATS = ("nifti", "dicom")
#: where an echo_flow cine starts: a sampled first frame, or the request's image
REFERENCES = ("sampled", "image")
#: the text mode's prompt when a request has none
DEFAULT_PROMPT = EchoPrompt().build("4CH", "ED", 0)


def task_config(bundle: str) -> dict[str, Any]:
    """The options a MONAI Label client shows for `bundle`'s task, with their defaults."""
    config: dict[str, Any] = {name: p.default for name, p in TASKS[bundle].parameters.items() if p.default is not None}
    if TASKS[bundle].input_kind == "ejection_fraction":
        config = {"ejection_fraction": 55.0, "reference": REFERENCES[0], **config}
    if TASKS[bundle].input_kind == "prompt":
        config = {"prompt": DEFAULT_PROMPT, **config}
    return {**config, "output_format": OUTPUT_FORMATS[0]}


def label_request(bundle: str, request: Mapping[str, Any]) -> tuple[ServeRequest, dict[str, Any], str]:
    """The serving request, the config overrides and the output format of a MONAI Label request for `bundle`.

    Raises:
        ServeError: no label map or EF where the task needs one, an EF outside 0-100, a label map file of another
            kind, a bad parameter value or output format.
    """
    task = TASKS[bundle]
    output_format = request.get("output_format", OUTPUT_FORMATS[0])
    if output_format not in OUTPUT_FORMATS:
        raise ServeError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}.")
    settings = request_settings(bundle, {k: request[k] for k in task.parameters if k in request})
    if task.input_kind == "ejection_fraction":
        if "ejection_fraction" not in request:
            raise ServeError(f"{bundle} needs 'ejection_fraction' (percent, 0-100) in the request's params.")
        values = check_ejection_fractions(request["ejection_fraction"], "request")
        if len(values) != 1:
            raise ServeError(f"request: one ejection_fraction per request, got {len(values)}.")
        reference = request.get("reference", REFERENCES[0])
        if reference not in REFERENCES:
            raise ServeError(f"request: reference must be one of {', '.join(REFERENCES)}, got {reference!r}.")
        frame = _image_file(bundle, request.get("image"), "image", IMAGE_SUFFIXES) if reference == "image" else None
        serve_request = ServeRequest(task.input_kind, ejection_fractions=values, reference_image=frame)
        return serve_request, settings, output_format
    prompt = request.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ServeError(f"request: prompt must be a non-empty string, got {prompt!r}.")
    if task.input_kind == "prompt" and settings["mode"] == "text":
        return ServeRequest(task.input_kind, prompts=[prompt or DEFAULT_PROMPT]), settings, output_format
    image_kind = task.input_kind == "image"
    what, suffixes = ("image", IMAGE_SUFFIXES) if image_kind else ("label map", LABEL_MAP_SUFFIXES)
    image = _image_file(bundle, request.get("image"), what, suffixes)
    if image_kind:
        return ServeRequest(task.input_kind, images=[image]), settings, output_format
    prompts = [prompt] if task.input_kind == "prompt" and prompt else []  # ControlNet: else the label map's own
    return ServeRequest(task.input_kind, label_maps=[image], prompts=prompts), settings, output_format


def _image_file(bundle: str, image: Any, what: str, suffixes: tuple[str, ...]) -> str:
    """The request's image: an existing file with one of `suffixes` (`what` names it in the error)."""
    if not isinstance(image, str) or not Path(image).is_file():
        article = "an" if what[0] in "aeiou" else "a"
        raise ServeError(f"{bundle} needs {article} {what} file as the request's image, got {image!r}.")
    if not image.lower().endswith(suffixes):
        raise ServeError(f"{what} '{image}' must be one of {', '.join(suffixes)}.")
    return image


def run_label_request(model_folder: str | os.PathLike, request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Generate the synthetic file a MONAI Label request asks of the trained bundle in `model_folder`.

    Returns:
        the file's path (a new temporary file; MONAI Label removes it once sent) and the result JSON (bundle,
        settings, shape, seconds, the description saying ``SYNTHETIC``).

    Raises:
        ServeError: a model folder without ``models/model.pt`` or of a bundle that is not served, or a bad request
            (:func:`label_request`, and what the bundle's own checks refuse: a label map's size or class values).
    """
    bundle = trained_bundle(model_folder)
    serve_request, settings, output_format = label_request(bundle, request)
    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="echo_monai_label_"))
    try:
        item = generate_files(model_folder, serve_request, folder, bundle, (output_format,), settings)[0]
        written = item[output_format]
        handle, target = tempfile.mkstemp(prefix="synthetic_", suffix=SUFFIXES[output_format])
        os.close(handle)
        os.replace(written, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    shape = _shape(target, output_format)
    result = {"bundle": bundle, "description": DESCRIPTION, "output_format": output_format, "shape": shape,
              "seconds": round(time.perf_counter() - start, 3), **settings}  # fmt: skip
    if serve_request.kind == "ejection_fraction":
        result["ejection_fraction"] = serve_request.ejection_fractions[0]
        result["reference"] = REFERENCES[serve_request.reference_image is not None]
    return target, result


def _shape(path: str, output_format: str) -> list[int]:
    if output_format == "nifti":
        import nibabel as nib

        return [int(n) for n in nib.load(path).shape]
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [int(getattr(ds, "NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns)]
