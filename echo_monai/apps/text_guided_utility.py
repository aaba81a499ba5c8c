"""The evaluation of prompt- and label-map-guided generation (DiffEcho, Ashrafian et al. 2024), and two adherence
checks beyond the paper.

Per synthetic set (one per mode, each a CAMUS-layout folder from ``echo_text_controlnet infer``):

- **view/phase classification** (the paper's 4 classes 2CH/4CH x ED/ES): a classifier trained on real only and on
  real + synthetic images (labelled by the class their prompt asked for), the same number of steps each, tested on
  held-out real images (accuracy, macro precision, recall, F1);
- **downstream segmentation** for label-guided sets (images with ``_gt``): synthetic only, real only and
  real + synthetic, Dice per structure on held-out real images;
- **prompt adherence**: the real-trained classifier's accuracy on the synthetic images against their prompt's
  class (is a "two-chamber, end-systolic" image one?); for an unconditional set, the share of each class it sees;
- **label-map adherence**: a real-trained segmentation network segments each label-guided image and is scored
  against the label map that guided it (Dice);
- **feature distances** (FD, KD, PRDC on the real-trained classifier's features: ``FD_view_phase_classifier``, not
  FID) overall and per class, and **memorisation** of the real training images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from echo_monai.apps.segmentation_utility import camus_samples
from echo_monai.data.camus import CAMUS
from echo_monai.metrics import (
    ImageClassificationEvaluator,
    MemorisationAudit,
    SegmentationEvaluator,
    distribution_metrics,
    write_report,
)

__all__ = ["VIEW_PHASE_CLASSES", "evaluate_text_guided", "view_phase_samples"]

logger = logging.getLogger(__name__)

#: the 4 classes of the paper's view/phase classification, in class-index order
VIEW_PHASE_CLASSES = (("2CH", "ED"), ("2CH", "ES"), ("4CH", "ED"), ("4CH", "ES"))


def view_phase_samples(root: str | os.PathLike, image_size: int, split: Any = None, labels: bool = True) -> list[dict]:
    """CAMUS items of ``root`` as ``{"image", "label" (when ``labels``), "view_phase": 0..3}`` at ``image_size``.

    Raises:
        FileNotFoundError / ValueError: from the CAMUS reader, naming the missing or invalid files.
    """
    reader = CAMUS(root, split=split, require_label=labels)
    samples = camus_samples(reader, image_size)
    for sample, (_, view, phase) in zip(samples, reader.item_keys(), strict=True):
        sample["view_phase"] = VIEW_PHASE_CLASSES.index((view, phase))
    return samples


def _classes(samples: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Only what the view/phase classifier reads (label-guided and unlabelled sets then mix)."""
    return [{"image": s["image"], "view_phase": s["view_phase"]} for s in samples]


def _images(samples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    return torch.stack([s["image"] for s in samples]).float()


def _distances(real: torch.Tensor, synthetic: torch.Tensor, encoder: Any) -> dict[str, float]:
    size = max(2, min(len(real), len(synthetic), 1000) // 2)
    return distribution_metrics(real, synthetic, encoder=encoder, kid_subsets=20, kid_subset_size=size)


def evaluate_text_guided(
    real_root: str | os.PathLike,
    synthetic_roots: Mapping[str, str | os.PathLike | None],
    output_dir: str | os.PathLike,
    classifier: ImageClassificationEvaluator,
    segmentation: SegmentationEvaluator,
    image_size: int = 64,
    train_split: str | Sequence[str] = "training",
    test_split: str | Sequence[str] = "testing",
    title: str = "echo_text_controlnet: downstream utility and adherence",
) -> dict[str, Any]:
    """Run the evaluation of every given synthetic set and write ``metrics.json``, ``report.md`` and figures.

    Args:
        real_root: the real CAMUS root (``train_split`` trained the generators, ``test_split`` is held out).
        synthetic_roots: mode (``unconditional``, ``text``, ``controlnet``) -> its synthetic CAMUS folder; None or a
            missing folder skips the mode (with a log line).
        output_dir: report folder.
        classifier: the 4-class view/phase classifier (``num_classes=4``, ``target_key="view_phase"``).
        segmentation: the downstream segmentation evaluator.
        image_size: evaluation resolution.
        train_split: real training split(s).
        test_split: real held-out split(s).
        title: report title.

    Returns:
        the metrics written to ``metrics.json``.

    Raises:
        ValueError: when no synthetic set exists, or the classifier is not a 4-class ``view_phase`` one.
    """
    if getattr(classifier, "target_key", None) != "view_phase" or getattr(classifier, "num_classes", 4) != 4:
        raise ValueError(
            "evaluate_text_guided: classifier must be a 4-class ImageClassificationEvaluator on 'view_phase'."
        )
    present = {m: Path(r) for m, r in synthetic_roots.items() if r is not None and Path(r).is_dir()}
    for mode in sorted(set(synthetic_roots) - set(present)):
        logger.info("evaluate_text_guided: no synthetic set for mode %r (%s); skipped", mode, synthetic_roots[mode])
    if not present:
        raise ValueError(
            f"evaluate_text_guided: none of the synthetic folders exists ({dict(synthetic_roots)}); run "
            "echo_text_controlnet infer --mode <mode> first."
        )
    real_train = view_phase_samples(real_root, image_size, train_split)
    real_test = view_phase_samples(real_root, image_size, test_split)
    real_images = _images(real_train)

    # the real-trained judges: the view/phase classifier and the segmentation network
    classifier.fit(real_train)
    metrics: dict[str, Any] = {
        "data": {"real_train": len(real_train), "real_test": len(real_test), "image_size": image_size},
        "view_phase_classifier_on_real_test": classifier.evaluate(real_test),
    }
    encoder = classifier.feature_encoder("view_phase_classifier")
    judge_state = {k: v.clone() for k, v in classifier.network.state_dict().items()}
    segmentation.fit(real_train)
    segmentation_judge = {k: v.clone() for k, v in segmentation.network.state_dict().items()}
    if classifier.max_steps is None:  # every classification mix takes the real-only mix's number of steps
        classifier.max_steps = classifier.max_epochs * -(-len(real_train) // classifier.batch_size)
    if segmentation.max_steps is None:
        segmentation.max_steps = segmentation.max_epochs * -(-len(real_train) // segmentation.batch_size)

    synthetic_examples = None
    for mode, root in present.items():
        guided = mode != "unconditional"
        labelled = any(root.rglob("*_gt.nii.gz"))
        synthetic = view_phase_samples(root, image_size, labels=labelled)
        images = _images(synthetic)
        synthetic_examples = images if synthetic_examples is None else synthetic_examples
        section: dict[str, Any] = {"images": len(synthetic), "label_guided": labelled}

        classifier.network.load_state_dict(judge_state)
        logits, _ = classifier.predict([{**s, "view_phase": 0} for s in synthetic])
        predicted = logits.argmax(1)
        if guided:
            asked = torch.tensor([s["view_phase"] for s in synthetic])
            section["prompt_adherence"] = float((predicted == asked).float().mean())
            section["prompt_adherence_per_class"] = {
                f"{view}_{phase}": float((predicted[asked == c] == c).float().mean()) if (asked == c).any() else None
                for c, (view, phase) in enumerate(VIEW_PHASE_CLASSES)
            }
        section["predicted_class_share"] = {
            f"{view}_{phase}": float((predicted == c).float().mean())
            for c, (view, phase) in enumerate(VIEW_PHASE_CLASSES)
        }
        section["distribution"] = _distances(real_images, images, encoder)
        if guided:
            per_class = {}
            for c, (view, phase) in enumerate(VIEW_PHASE_CLASSES):
                real_c = real_images[[s["view_phase"] == c for s in real_train]]
                synthetic_c = images[[s["view_phase"] == c for s in synthetic]]
                if len(real_c) >= 2 and len(synthetic_c) >= 2:
                    per_class[f"{view}_{phase}"] = _distances(real_c, synthetic_c, encoder)
            section["distribution_per_class"] = per_class
            section["view_phase_classification"] = classifier.run(
                _classes(real_test),
                real=_classes(real_train),
                synthetic=_classes(synthetic),
                mixes=["real", "real+synthetic"],
            )
        if labelled:
            segmentation.network.load_state_dict(segmentation_judge)
            section["label_map_adherence"] = segmentation.evaluate(synthetic)
            section["segmentation"] = segmentation.run(
                real_test, real=real_train, synthetic=synthetic, mixes=["synthetic", "real", "real+synthetic"]
            )
        section["privacy"] = MemorisationAudit(embed=encoder.encode)(images, real_images, _images(real_test)).summary()
        metrics[mode] = section
        logger.info("evaluate_text_guided: %s: %d images evaluated", mode, len(synthetic))

    bars = {
        "prompt adherence (real-trained view/phase classifier)": {
            mode: metrics[mode]["prompt_adherence"] for mode in present if "prompt_adherence" in metrics[mode]
        }
    }
    n = min(8, len(real_test), len(synthetic_examples))
    write_report(
        output_dir,
        metrics,
        real_samples=_images(real_test)[:n],
        synthetic_samples=synthetic_examples[:n],
        title=title,
        bars=bars,
        bar_range=(0.0, 1.0),
    )
    return metrics
