from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.downstream.ejection_fraction import (
    EjectionFractionEvaluator,
    ScaledRegressor,
    regression_metrics,
)
from echo_monai.metrics.encoders import InputKind

from ..threads import single_thread  # noqa: F401 (autouse fixture)
from .phantoms import oscillation_samples


def test_regresses_the_oscillation_amplitude_in_percent():
    evaluator = EjectionFractionEvaluator(
        block_inplanes=(4, 8, 8, 8), max_epochs=8, batch_size=8, ef_offset=50, ef_scale=20
    )
    evaluator.fit(oscillation_samples(64, seed=1))
    test = oscillation_samples(32, seed=2)
    scores = evaluator.evaluate(test)
    spread = np.std([s["ejection_fraction"] for s in test])
    assert scores["r2"] > 0.5 and scores["mae"] < 0.6 * spread
    predictions, targets = evaluator.predict(test)
    assert predictions.shape == (32, 1) and targets.shape == (32, 1)
    encoder = evaluator.feature_encoder("ef_regressor")
    assert encoder.input_kind == InputKind.VIDEO and encoder.encode(test[0]["video"][None]).shape == (1, 8)


def test_scaled_regressor_and_metrics_closed_form():
    network = ScaledRegressor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 1, bias=False)), 55.0, 10.0)
    torch.nn.init.ones_(network.backbone[1].weight)
    torch.testing.assert_close(network(torch.full((2, 1), 2.0)), torch.full((2, 1), 75.0))
    scores = regression_metrics([50.0, 60.0, 70.0], [50.0, 62.0, 66.0])
    assert scores["mae"] == pytest.approx(2.0) and scores["rmse"] == pytest.approx(np.sqrt(20 / 3))
    target = np.array([50.0, 62.0, 66.0])
    assert scores["r2"] == pytest.approx(1 - 20 / np.sum((target - target.mean()) ** 2))
    assert np.isnan(regression_metrics([1.0, 2.0], [3.0, 3.0])["r2"])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ef_scale must be > 0"):
        EjectionFractionEvaluator(ef_scale=0.0)
    with pytest.raises(ValueError, match="block_inplanes must have 4"):
        EjectionFractionEvaluator(block_inplanes=(4, 8))
    evaluator = EjectionFractionEvaluator(block_inplanes=(4, 4, 4, 4), max_epochs=1)
    with pytest.raises(ValueError, match="'video' and 'ejection_fraction'"):
        evaluator.fit([{"video": torch.zeros(1, 4, 16, 16), "ef": 50.0}])
