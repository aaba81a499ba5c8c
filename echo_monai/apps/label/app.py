"""The MONAI Label app: each trained bundle folder in the app's ``model/`` folder is one infer task.

Made by ``python -m echo_monai.apps.label APP_DIR BUNDLE_ROOT ...`` (it writes ``APP_DIR/main.py``, which imports
:class:`EchoMonaiLabelApp`, and links each trained bundle root as ``APP_DIR/model/<task>``), then served by
``monailabel start_server --app APP_DIR --studies STUDIES``. Needs MONAI Label (``.ci/label-env``).

Requests that cannot be served answer an HTTP error whose ``detail`` is one line, and the server keeps serving:
400 for a bad request (a label map of another size or with other class values, an EF outside 0-100, a bad
parameter), 404 for an unknown task name, 503 for a task whose model folder has no ``models/model.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from echo_monai.apps.label.tasks import run_label_request, task_config
from echo_monai.apps.serving import DESCRIPTION, TASKS, ServeError, trained_bundle

__all__ = ["EchoMonaiLabelApp", "SyntheticUltrasoundInfer", "UnavailableModel"]

logger = logging.getLogger(__name__)
MODEL_FOLDER = "model"


class UnavailableModel(ServeError):
    """A task whose model folder cannot be served (answered with 503)."""


class SyntheticUltrasoundInfer(InferTask):
    """One trained bundle root as a MONAI Label infer task (label map -> image, EF -> cine, image -> video)."""

    def __init__(self, model_folder: str | Path) -> None:
        self.model_folder = Path(model_folder)
        try:
            self.bundle: str | None = trained_bundle(self.model_folder)
            self.problem: str | None = None
        except ServeError as error:
            self.bundle, self.problem = None, str(error)
            logger.warning("echo_monai label: task '%s' is unavailable: %s", self.model_folder.name, error)
        kind = TASKS[self.bundle].input_kind if self.bundle else None
        inputs = {
            "label_map": "cardiac label map",
            "ejection_fraction": "ejection fraction",
            "image": "ultrasound image",
            "prompt": "prompt (+ label map)",
        }
        what = f"{inputs[kind]} -> " if kind else ""
        output = TASKS[self.bundle].output if self.bundle else "ultrasound"
        super().__init__(
            type=InferType.OTHERS,
            labels=["background", "lv_endocardium", "lv_epicardium", "left_atrium"]
            if kind in ("label_map", "prompt")
            else None,
            dimension=2,
            description=f"{what}{DESCRIPTION.replace('ultrasound', f'ultrasound {output}')} [{self.bundle or '-'}]",
            config=task_config(self.bundle) if self.bundle else {},
        )

    def is_valid(self) -> bool:
        return self.bundle is not None

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.bundle is None:
            raise UnavailableModel(str(self.problem))
        return run_label_request(self.model_folder, request)


class EchoMonaiLabelApp(MONAILabelApp):
    """echo_monai's bundles in MONAI Label: one infer task per trained bundle folder in ``APP_DIR/model/``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="echo_monai",
            description="echo_monai: SYNTHETIC ultrasound (not for clinical use) from label maps, prompts, EFs, images",
            version="1",
        )

    def init_infers(self) -> dict[str, InferTask]:
        folder = Path(self.app_dir) / MODEL_FOLDER
        tasks = (
            {p.name: SyntheticUltrasoundInfer(p) for p in sorted(folder.iterdir()) if p.is_dir()}
            if folder.is_dir()
            else {}
        )
        if not tasks:
            logger.warning("echo_monai label: no trained bundle folder in %s", folder)
        return tasks

    def infer(self, request, datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(
                status_code=404, detail=f"unknown task '{model}'; tasks: {', '.join(self._infers) or 'none'}."
            )
        try:
            return super().infer(request, datastore)
        except UnavailableModel as error:
            raise HTTPException(status_code=503, detail=f"task '{model}': {error}") from error
        except ServeError as error:
            raise HTTPException(status_code=400, detail=f"task '{model}': {error}") from error
