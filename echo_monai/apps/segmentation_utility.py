"""The downstream protocol of label-guided generation (Echo from noise): does synthetic data train segmentation?

A segmentation network is trained on real only, synthetic only, and real + synthetic images, and tested on
held-out real images (Dice of LV endocardium, LV epicardium and left atrium). Around it: distribution distances
between real and synthetic images on the features of a view classifier trained on the real data (an offline
encoder, so the distance is ``FD_view_classifier``, not FID), memorisation of the training images, and a report
folder with a label | real | synthetic grid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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
    """CAMUS items → ``{"image": (1, S, S) float in [-1, 1], "label": (1, S, S) int64, "view": 0|1}``.

    Images are resized with area averaging, labels with nearest neighbour.
    """
    samples = []
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        item = dataset[i]
        image = torch.as_tensor(item["image"], dtype=torch.float32)[None] / 127.5 - 1.0
        label = torch.as_tensor(item["label"]).float()[None]
        samples.append(
            {
                "image": F.interpolate(image, size=(image_size, image_size), mode="area")[0],
                "label": F.interpolate(label, size=(image_size, image_size), mode="nearest")[0].long(),
                "view": int(item["view"] == "4CH"),
            }
        )
    return samples


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
        max_synthetic: use at most this many synthetic images.
        title: report title.

    Returns:
        the metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError / ValueError: from the readers, naming the missing or invalid files; ValueError when a
            split is empty.
    """
    real_train = camus_samples(CAMUS(real_root, views, phases, split=train_split), image_size)
    real_test = camus_samples(CAMUS(real_root, views, phases, split=test_split), image_size)
    synthetic = camus_samples(CAMUS(synthetic_root, views, phases), image_size, max_synthetic)
    for name, data in (("real training", real_train), ("real test", real_test), ("synthetic", synthetic)):
        if not data:
            raise ValueError(f"evaluate_segmentation_utility: the {name} set is empty.")
    logger.info(
        "downstream segmentation: %d real train, %d real test, %d synthetic images",
        len(real_train),
        len(real_test),
        len(synthetic),
    )

    metrics: dict[str, Any] = {
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
        encoder = encoder_classifier.feature_encoder("view_classifier")
        metrics["distribution"] = distribution_metrics(
            real_images,
            synthetic_images,
            encoder=encoder,
            kid_subsets=20,
            kid_subset_size=min(len(real_images), len(synthetic_images), 1000),
        )
        embed = encoder.encode
    audit = MemorisationAudit(embed=embed)(synthetic_images, real_images, test_images)
    metrics["privacy"] = audit.summary()

    n = min(8, len(synthetic), len(real_test))
    paths = write_report(
        output_dir, metrics, real_samples=test_images[:n], synthetic_samples=synthetic_images[:n], title=title
    )
    # label map | synthetic image it was generated from | a real image, one column per sample
    grid = make_grid(
        torch.cat([_stack(synthetic[:n], "label") / 1.5 - 1.0, synthetic_images[:n], test_images[:n]]), nrow=n
    )
    figure = write_png(Path(output_dir) / "label_synthetic_real.png", grid)
    report = Path(paths["report"])
    write_text(
        report, report.read_text() + f"\n## Label map | synthetic | real\n\n![label, synthetic, real]({figure.name})\n"
    )
    return metrics
