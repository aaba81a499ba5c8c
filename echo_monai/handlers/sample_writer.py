"""Writing generated, labelled images: PNG pairs or a CAMUS-layout dataset, resumable and without partial files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from echo_monai.data.atomic import write_png, write_text
from echo_monai.data.camus import save_camus_nifti

__all__ = ["SyntheticSampleWriter"]


class SyntheticSampleWriter:
    """Write each generated batch with its label map, one file pair per sample.

    Layouts:

    * ``"png"``: ``<output_dir>/images/<name>_c<copy>.png`` (grey, 0-255) and ``labels/<name>_c<copy>.png`` (CAMUS
      values 0-3).
    * ``"camus"``: the CAMUS NIfTI layout, one synthetic patient ``<patient>c<copy>`` per source patient and copy:
      ``database_nifti/<patient>c<copy>/<patient>c<copy>_<view>_<phase>[_gt].nii.gz`` and ``Info_<view>.cfg``, so
      :class:`echo_monai.data.CAMUS` reads the synthetic dataset like the real one.

    Files are written to temporary names and renamed, the label first and the image last, so an item counts as done
    only once its image exists; :meth:`pending` drops finished items from a datalist, which makes generation
    resumable.

    Args:
        output_dir: root of the synthetic dataset.
        layout: ``"png"`` or ``"camus"``.
        pred_key: engine output key of the generated images ``(B, 1, H, W)`` in [-1, 1].
        label_key: batch key of the 5-class one-hot label map ``(B, 5, H, W)`` (Echo from noise classes) or of a
            ``(B, 1, H, W)`` index map.
        spacing: pixel size written to NIfTI headers, mm.

    Example:
        >>> writer = SyntheticSampleWriter("synthetic", layout="camus")
        >>> datalist = writer.pending(label_map_datalist("CAMUS", copies=4))
        >>> writer.attach(evaluator)
    """

    LAYOUTS = ("png", "camus")

    def __init__(
        self,
        output_dir: str | os.PathLike,
        layout: str = "png",
        pred_key: str = "pred",
        label_key: str = "label_map",
        spacing: float = 1.0,
    ) -> None:
        if layout not in self.LAYOUTS:
            raise ValueError(f"SyntheticSampleWriter: layout must be one of {self.LAYOUTS}, got '{layout}'.")
        self.output_dir, self.layout = Path(output_dir), layout
        self.pred_key, self.label_key, self.spacing = pred_key, label_key, float(spacing)

    def paths(self, item: Mapping[str, Any]) -> dict[str, Path]:
        """Output files of one datalist item (keys ``name``, ``copy``; ``patient``, ``view``, ``phase`` for CAMUS)."""
        copy = int(item.get("copy", 0))
        if self.layout == "png":
            stem = f"{item['name']}_c{copy:02d}.png"
            return {"label": self.output_dir / "labels" / stem, "image": self.output_dir / "images" / stem}
        patient = f"{item['patient']}c{copy:02d}"
        folder = self.output_dir / "database_nifti" / patient
        stem = f"{patient}_{item['view']}_{item['phase']}"
        return {
            "info": folder / f"Info_{item['view']}.cfg",
            "label": folder / f"{stem}_gt.nii.gz",
            "image": folder / f"{stem}.nii.gz",
        }

    def pending(self, datalist: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The items of ``datalist`` whose files are not all written yet."""
        return [item for item in datalist if not all(p.is_file() for p in self.paths(item).values())]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        pred = output[self.pred_key] if isinstance(output, Mapping) else torch.stack([o[self.pred_key] for o in output])
        self.write_batch(batch, pred)

    def write_batch(self, batch: Mapping[str, Any], pred: torch.Tensor) -> None:
        """Write generated images ``(B, 1, H, W)`` in [-1, 1] with the batch's label maps and names."""
        images = ((pred.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()[:, 0]
        label_map = torch.as_tensor(batch[self.label_key]).detach().cpu()
        indices = label_map.argmax(1) if label_map.shape[1] > 1 else label_map[:, 0].long()
        labels = (indices - 1).clamp(min=0).to(torch.uint8).numpy()  # Echo-from-noise classes -> CAMUS 0..3
        for i in range(images.shape[0]):
            item = {k: _at(batch[k], i) for k in ("name", "copy", "patient", "view", "phase") if k in batch}
            self._write_item(item, images[i], labels[i])

    def _write_item(self, item: Mapping[str, Any], image: np.ndarray, label: np.ndarray) -> None:
        paths = self.paths(item)
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        if self.layout == "png":
            write_png(paths["label"], label)
            write_png(paths["image"], image)
            return
        if not paths["info"].is_file():
            write_text(paths["info"], "ED: 1\nES: 1\nNbFrame: 1\nImageQuality: Good\nSynthetic: echo_seg_ddpm\n")
        save_camus_nifti(paths["label"], label, self.spacing)
        save_camus_nifti(paths["image"], image, self.spacing)


def _at(value: Any, i: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value[i].item() if value.ndim else value.item()
    if isinstance(value, (list, tuple)):
        return value[i]
    return value
