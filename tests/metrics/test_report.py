from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from echo_monai.metrics.report import markdown_tables, to_json_compatible, write_report

from .threads import single_thread  # noqa: F401 (autouse fixture)

METRICS = {
    "FD_view_classifier": 12.5,
    "psnr": float("inf"),
    "segmentation": {
        "real": {"dice_lv_endo": 0.9, "dice_la": 0.8, "num_train_samples": 10},
        "synthetic": {"dice_lv_endo": np.float32(0.85), "dice_la": float("nan"), "num_train_samples": 10},
    },
    "privacy": {"memorisation_rate": 0.02, "memorised_indices": torch.tensor([4, 17])},
}


def test_writes_json_markdown_and_figures(tmp_path):
    paths = write_report(
        tmp_path / "eval",
        METRICS,
        real_samples=torch.rand(3, 1, 16, 16) * 2 - 1,
        synthetic_samples=torch.rand(3, 1, 16, 16) * 2 - 1,
        ef_requested=[30.0, 50.0, 70.0],
        ef_measured=[35.0, 48.0, 66.0],
    )
    loaded = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert loaded["segmentation"]["synthetic"]["dice_la"] == "nan" and loaded["psnr"] == "inf"
    assert loaded["privacy"]["memorised_indices"] == [4, 17]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| real | 0.9 | 0.8 | 10 |" in report and "| FD_view_classifier | 12.5 |" in report
    for key in ("samples", "bars_0", "ef_scatter"):
        assert os.path.isfile(paths[key]) and os.path.basename(paths[key]) in report
    assert not [name for name in os.listdir(tmp_path / "eval") if ".tmp" in name]


def test_explicit_bars_replace_the_default(tmp_path):
    paths = write_report(tmp_path, {"a": 1.0}, bars={"utility": {"real": 0.9, "synthetic": 0.8}})
    assert "bars_0" in paths and "samples" not in paths


def test_markdown_handles_nested_sections():
    text = markdown_tables(to_json_compatible({"distribution": {"FD_x": 1.0, "per_view": {"a2c": 2.0}}}))
    assert "## distribution" in text and "## distribution / per_view" in text and "| a2c | 2 |" in text


def test_write_report_rejects_unpaired_inputs(tmp_path):
    with pytest.raises(ValueError, match="real_samples and synthetic_samples"):
        write_report(tmp_path, {}, real_samples=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="ef_requested and ef_measured"):
        write_report(tmp_path, {}, ef_measured=[1.0])


def test_end_to_end_from_a_trained_classifier_to_the_report(tmp_path):
    """The evaluate stage of a bundle: train an encoder on real data, score a synthetic set, write the report."""
    from echo_monai.metrics.distribution import distribution_metrics
    from echo_monai.metrics.downstream.classification import ImageClassificationEvaluator
    from echo_monai.metrics.privacy import MemorisationAudit

    generator = torch.Generator().manual_seed(0)

    def samples(count: int) -> list[dict]:
        labels = torch.randint(0, 2, (count,), generator=generator)
        images = 0.5 * torch.randn(count, 1, 16, 16, generator=generator) + (labels.float() - 0.5)[:, None, None, None]
        return [{"image": image, "label": int(label)} for image, label in zip(images, labels, strict=True)]

    real_train, real_test, synthetic = samples(24), samples(16), samples(24)
    evaluator = ImageClassificationEvaluator(2, block_inplanes=(4, 4, 8, 8), max_epochs=2, batch_size=8)
    utility = evaluator.run(real_test, real=real_train, synthetic=synthetic)
    encoder = evaluator.feature_encoder("brightness_classifier")
    stack = lambda data: torch.stack([s["image"] for s in data])  # noqa: E731
    fidelity = distribution_metrics(stack(real_test), stack(synthetic), encoder, kid_subsets=5, k=3)
    privacy = MemorisationAudit(embed=encoder)(stack(synthetic), stack(real_train), stack(real_test)).summary()
    paths = write_report(
        tmp_path,
        {"distribution": fidelity, "classification": utility, "privacy": privacy},
        real_samples=stack(real_test),
        synthetic_samples=stack(synthetic),
    )
    report = open(paths["report"]).read()
    assert "FD_brightness_classifier" in report and "| synthetic |" in report and "memorisation_rate" in report
