"""The downstream protocol of label-guided generation (Echo from noise): does synthetic data train segmentation?

A segmentation network is trained on real only, synthetic only, and real + synthetic images, and tested on
held-out real images (Dice of LV endocardium, LV epicardium and left atrium). Around it: distribution distances
between real and synthetic images on the features of a view classifier trained on the real data (an offline
encoder, so the distance is ``FD_view_classifier``, not FID), memorisation of the training images, and a report
folder with a label | real | synthetic grid.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from echo_monai.data.atomic import write_png, write_text
from echo_monai.data.camus import CAMUS
from echo_monai.handlers.preview import make_grid
from echo_monai.metrics import (
    ImageClassificationEvaluator,
    MemorisationAudit,
    SegmentationEvaluator,
    distribution_metrics,
    write_report,
)

__all__ = ["camus_samples", "evaluate_segmentation_utility"]

logger = logging.getLogger(__name__)


def camus_samples(dataset: Sequence[Mapping[str, Any]], image_size: int, limit: int | None = None) -> list[dict]:
    """CAMUS items → ``{"image": (1, S, S) float in [-1, 1], "label": (1, S, S) int64, "view": 0|1}`` (no ``label``
    for an unlabelled item).

    Images are resized with area averaging, labels with nearest neighbour.
    """
    samples = []
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        item = dataset[i]
        image = torch.as_tensor(item["image"], dtype=torch.float32)[None] / 127.5 - 1.0
        sample = {
            "image": F.interpolate(image, size=(image_size, image_size), mode="area")[0],
            "view": int(item["view"] == "4CH"),
        }
        if "label" in item:  # a reader with require_label=False gives unlabelled items
            label = torch.as_tensor(item["label"]).float()[None]
            sample["label"] = F.interpolate(label, size=(image_size, image_size), mode="nearest")[0].long()
        samples.append(sample)
    return samples


def _subset(count: int, limit: int | None, seed: int) -> list[int]:
    """All indices, or ``limit`` of them drawn at random with ``seed`` (sorted)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size=int(limit), replace=False))


def _test_sources(synthetic_root: str | os.PathLike, test_patients: set[str]) -> list[str]:
    """The synthetic items whose source label map belongs to a test patient (from ``synthetic_sources.csv``)."""
    path = Path(synthetic_root) / "synthetic_sources.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row["patient"] for row in csv.DictReader(handle) if row.get("patient") in test_patients]


def _generation_settings(synthetic_root: str | os.PathLike) -> dict[str, Any]:
    """The generation pipeline's ``generation_settings.json``, with the copies per label map and the source splits
    from ``synthetic_sources.csv``."""
    path = Path(synthetic_root) / "generation_settings.json"
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"unknown": f"{path} is missing (a dataset not made by the generation pipeline)"}
    sources = Path(synthetic_root) / "synthetic_sources.csv"
    if sources.is_file():
        with open(sources, newline="") as handle:
            rows = list(csv.DictReader(handle))
        settings["copies_per_label_map"] = len({row.get("copy") for row in rows})
        settings["source_splits"] = sorted({row.get("source_split") or "all" for row in rows})
    return settings


def _paired_grid(
    synthetic: Sequence[Mapping[str, Any]],
    sources: Sequence[tuple[str, str, str]],
    real_root: str | os.PathLike,
    views: Sequence[str],
    phases: Sequence[str],
    tile: int = 128,
) -> np.ndarray:
    """Rows label map | synthetic | real image of the source label map, one column per synthetic image, tiles of
    ``tile`` pixels (nearest-neighbour enlarged).

    Args:
        synthetic: the synthetic samples (``camus_samples``).
        sources: ``(patient, view, phase)`` of the synthetic items in the same order (``CAMUS.item_keys``).
        real_root: the real CAMUS root, where the source label maps' images are.
        views: CAMUS views.
        phases: CAMUS phases.
        tile: tile side in pixels.
    """
    real = CAMUS(real_root, views, phases)
    where = {key: i for i, key in enumerate(real.item_keys())}
    columns = []
    for sample, (patient, view, phase) in zip(synthetic, sources, strict=False):
        source = (re.sub(r"c\d+$", "", patient), view, phase)
        size = sample["image"].shape[-2:]
        if source in where:
            source_image = torch.as_tensor(real[where[source]]["image"], dtype=torch.float32)[None] / 127.5 - 1.0
            source_image = F.interpolate(source_image, size=tuple(size), mode="area")[0]
        else:
            source_image = torch.full((1, *size), -1.0)
        columns.append(torch.stack([sample["label"].float() / 1.5 - 1.0, sample["image"], source_image]))
    if not columns:
        return make_grid(torch.full((1, 1, tile, tile), -1.0))
    tiles = torch.stack(columns, dim=1).reshape(-1, 1, *columns[0].shape[-2:])  # labels, then images, then reals
    return make_grid(F.interpolate(tiles, size=(tile, tile), mode="nearest"), nrow=len(columns))


STRUCTURES = {0: "background", 1: "lv_cavity", 2: "myocardium", 3: "left_atrium"}


def intensity_statistics(real: Sequence[Mapping[str, Any]], synthetic: Sequence[Mapping[str, Any]]) -> dict:
    """Grey levels (0-255) per structure, real vs synthetic, and outside the ultrasound sector.

    Each structure's mean and standard deviation over its pixels (the set's own labels), the myocardium-to-cavity
    contrast (difference of means), and the mean over the *outside-sector* region: the pixels that are black
    (< 2/255) in at least 95 % of the real images, where a synthetic image should be black too.
    """

    def _grey(samples: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        return (_stack(samples, "image") + 1) * 127.5, _stack(samples, "label").long()

    real_grey, real_label = _grey(real)
    synthetic_grey, synthetic_label = _grey(synthetic)
    outside = (real_grey < 2.0).float().mean(0)[0] >= 0.95
    stats: dict[str, Any] = {}
    for name, (grey, label) in (("real", (real_grey, real_label)), ("synthetic", (synthetic_grey, synthetic_label))):
        section = {}
        for index, structure in STRUCTURES.items():
            values = grey[label == index]
            section[f"{structure}_mean"] = float(values.mean()) if values.numel() else float("nan")
            section[f"{structure}_std"] = float(values.std()) if values.numel() > 1 else float("nan")
        section["myocardium_vs_cavity_contrast"] = section["myocardium_mean"] - section["lv_cavity_mean"]
        section["outside_sector_mean"] = float(grey[:, 0][:, outside].mean()) if outside.any() else float("nan")
        stats[name] = section
    stats["outside_sector_pixels"] = int(outside.sum())
    return stats


#: what each distribution metric says, and whether lower or higher means closer to real
_MEANINGS = {
    "FD": ("Frechet distance of the feature distributions", "lower"),
    "KD": ("kernel (polynomial MMD) distance of the features", "lower"),
    "precision": ("share of synthetic images that fall within the real images' feature manifold", "higher"),
    "recall": ("share of real images that the synthetic set's manifold covers", "higher"),
    "density": ("how densely synthetic images sit among real neighbours (about 1 when alike)", "higher"),
    "coverage": ("share of real images with a synthetic image among their nearest neighbours", "higher"),
    "diversity": ("mean feature distance between synthetic images (spread)", None),
}


def distribution_readings(synthetic: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, str]:
    """A one-line reading of each distribution metric next to its real-vs-real value (two halves of real data)."""
    readings = {}
    for name, value in synthetic.items():
        kind = name.split("_")[0]
        if kind not in _MEANINGS or name.endswith(("_std", "_real")) or name not in reference:
            continue
        meaning, better = _MEANINGS[kind]
        ref = float(reference[name])
        verdict = ""
        if better == "lower" and ref > 0:
            verdict = " (as close as two real halves)" if value <= 1.1 * ref else f" ({value / ref:.1f}x real vs real)"
        elif better == "lower":
            verdict = " (real vs real is about 0)"
        elif better == "higher":
            verdict = " (as good as two real halves)" if value >= 0.9 * ref else " (below real vs real)"
        readings[name] = f"{meaning}: {value:.3g} synthetic vs real, {ref:.3g} real vs real{verdict}"
    return readings


def _stack(samples: Sequence[Mapping[str, Any]], key: str) -> torch.Tensor:
    return torch.stack([s[key] for s in samples]).float()


def evaluate_segmentation_utility(
    real_root: str | os.PathLike,
    synthetic_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    segmentation: SegmentationEvaluator,
    encoder_classifier: ImageClassificationEvaluator | None = None,
    image_size: int = 112,
    train_split: str | Sequence[str] = "training",
    test_split: str | Sequence[str] = "testing",
    views: Sequence[str] = ("2CH", "4CH"),
    phases: Sequence[str] = ("ED", "ES"),
    mixes: Sequence[str] = ("synthetic", "real", "real+synthetic"),
    max_synthetic: int | None = None,
    title: str = "echo_seg_ddpm: downstream segmentation",
    allow_test_sources: bool = False,
    equal_steps: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the downstream comparison and write ``metrics.json``, ``report.md`` and figures to ``output_dir``.

    Args:
        real_root: real CAMUS root (its ``train_split`` trained the generator; ``test_split`` is held out).
        synthetic_root: the synthetic dataset in the CAMUS layout (``echo_seg_ddpm`` generate stage).
        output_dir: report folder.
        segmentation: the downstream segmentation evaluator (network and training settings).
        encoder_classifier: a view classifier trained on real training images whose features give the
            distribution distances; None skips them (and the memorisation audit runs on pixels).
        image_size: evaluation resolution.
        train_split: CAMUS split(s) of the real training data.
        test_split: CAMUS split(s) of the held-out real test data.
        views: CAMUS views.
        phases: CAMUS phases.
        mixes: training mixes, see :class:`echo_monai.metrics.TrainingMix`.
        max_synthetic: use at most this many synthetic images, a random subset drawn with ``seed``.
        title: report title.
        allow_test_sources: evaluate a synthetic set generated from label maps of the real test patients (its
            ``synthetic_sources.csv`` says so); by default refused, since the test would then see its own hearts.
        equal_steps: train every mix for the same number of optimisation steps (the real-only mix's
            ``max_epochs`` epochs, unless the evaluator sets ``max_steps``), so the mixes differ by data, not updates.
        seed: seed of the ``max_synthetic`` subset.

    Returns:
        the metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError / ValueError: from the readers, naming the missing or invalid files; ValueError when a
            split is empty.
    """
    test_reader = CAMUS(real_root, views, phases, split=test_split)
    leaks = _test_sources(synthetic_root, {patient for patient, _, _ in test_reader.item_keys()})
    if leaks and not allow_test_sources:
        raise ValueError(
            f"evaluate_segmentation_utility: {len(leaks)} synthetic images in {str(synthetic_root)!r} were generated "
            f"from label maps of test patients ({', '.join(sorted(set(leaks))[:5])}...); generate from the training "
            "split (label_map_split: training), or pass allow_test_sources=True to evaluate them anyway."
        )
    real_train = camus_samples(CAMUS(real_root, views, phases, split=train_split), image_size)
    real_test = camus_samples(test_reader, image_size)
    synthetic_reader = CAMUS(synthetic_root, views, phases)
    chosen = _subset(len(synthetic_reader), max_synthetic, seed)
    synthetic = camus_samples(Subset(synthetic_reader, chosen), image_size)
    for name, data in (("real training", real_train), ("real test", real_test), ("synthetic", synthetic)):
        if not data:
            raise ValueError(f"evaluate_segmentation_utility: the {name} set is empty.")
    logger.info(
        "downstream segmentation: %d real train, %d real test, %d synthetic images",
        len(real_train),
        len(real_test),
        len(synthetic),
    )

    if equal_steps and segmentation.max_steps is None:
        segmentation.max_steps = segmentation.max_epochs * math.ceil(len(real_train) / segmentation.batch_size)
    warnings: list[str] = []
    metrics: dict[str, Any] = {
        "settings": {
            "generation": _generation_settings(synthetic_root),
            "evaluation": {
                "image_size": image_size,
                "train_split": train_split,
                "test_split": test_split,
                "max_synthetic": max_synthetic,
                "seed": seed,
                "segmentation_steps_per_mix": segmentation.max_steps,
                "segmentation_epochs": None if segmentation.max_steps else segmentation.max_epochs,
                "segmentation_batch_size": segmentation.batch_size,
                "segmentation_learning_rate": segmentation.learning_rate,
                "synthetic_from_test_patients": len(leaks),
            },
        },
        "data": {
            "real_train": len(real_train),
            "real_test": len(real_test),
            "synthetic": len(synthetic),
            "image_size": image_size,
        },
        "segmentation": segmentation.run(real_test, real=real_train, synthetic=synthetic, mixes=list(mixes)),
    }

    real_images, synthetic_images = _stack(real_train, "image"), _stack(synthetic, "image")
    test_images = _stack(real_test, "image")
    embed = None
    if encoder_classifier is not None:
        encoder_classifier.fit(real_train)
        metrics["view_classifier_on_real_test"] = encoder_classifier.evaluate(real_test)
        accuracy = float(metrics["view_classifier_on_real_test"].get("accuracy", 1.0))
        chance = 1.0 / 2  # two views
        if accuracy < chance + 0.15:
            warnings.append(
                f"the view classifier behind the distribution metrics scores {accuracy:.2f} on real test images "
                f"(chance {chance:.2f}): its features barely tell the views apart, so FD / KD / PRDC on them say little"
            )
        encoder = encoder_classifier.feature_encoder("view_classifier")
        metrics["distribution"] = distribution_metrics(
            real_images,
            synthetic_images,
            encoder=encoder,
            kid_subsets=20,
            kid_subset_size=max(2, min(len(real_images), len(synthetic_images), 1000) // 2),
        )
        # the reference: the same distances between two halves of the real training images
        halves = np.random.default_rng(seed).permutation(len(real_images))
        first, second = real_images[halves[: len(halves) // 2]], real_images[halves[len(halves) // 2 :]]
        if min(len(first), len(second)) >= 2:
            reference = distribution_metrics(
                first, second, encoder=encoder, kid_subsets=20, kid_subset_size=max(2, min(len(first), 1000) // 2)
            )
            metrics["distribution_real_vs_real"] = reference
            metrics["distribution_reading"] = distribution_readings(metrics["distribution"], reference)
        embed = encoder.encode
    audit = MemorisationAudit(embed=embed)(synthetic_images, real_images, test_images)
    metrics["privacy"] = audit.summary()
    metrics["intensity"] = intensity_statistics(real_test, synthetic)
    for key, real_value in metrics["intensity"]["real"].items():
        synthetic_value = metrics["intensity"]["synthetic"][key]
        if key.endswith("_mean") and abs(synthetic_value - real_value) > 15.0:
            warnings.append(
                f"synthetic {key.removesuffix('_mean').replace('_', ' ')} grey level {synthetic_value:.0f} differs "
                f"from real {real_value:.0f} by more than 15 of 255"
            )
    for warning in warnings:
        logger.warning("evaluate_segmentation_utility: %s", warning)
    if warnings:
        metrics["warnings"] = warnings

    dice = {
        f"{mix} / {name.removeprefix('dice_')}": float(value)
        for mix, section in metrics["segmentation"].items()
        for name, value in section.items()
        if name.startswith("dice_")
    }
    n = min(8, len(synthetic))
    paths = write_report(
        output_dir,
        metrics,
        real_samples=test_images[: min(n, len(real_test))],
        synthetic_samples=synthetic_images[: min(n, len(real_test))],
        title=title,
        bars={"Dice on the held-out real images, per training mix": dice},
        bar_range=(0.0, 1.0),
    )
    keys = synthetic_reader.item_keys()
    grid = _paired_grid(synthetic[:n], [keys[i] for i in chosen[:n]], real_root, views, phases)
    figure = write_png(Path(output_dir) / "label_synthetic_real.png", grid)
    report = Path(paths["report"])
    write_text(
        report,
        report.read_text()
        + "\n## Label map | synthetic image generated from it | real image of its source label map\n\n"
        + "One column per synthetic image: its label map (top), the image generated from it (middle) and the real "
        + "image whose label map it was drawn from (bottom; blank when the source is not in the real dataset).\n\n"
        + f"![label, synthetic, real]({figure.name})\n",
    )
    return metrics
