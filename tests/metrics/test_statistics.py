from __future__ import annotations

import math

import numpy as np
import pytest

from echo_monai.metrics import RunSummary, paired_difference, summarise_runs


def test_mean_and_standard_error_are_the_closed_forms():
    values = [0.80, 0.84, 0.82, 0.86]
    summary = summarise_runs(values)
    assert summary.mean == pytest.approx(0.83)
    # sample standard deviation sqrt(sum (x - m)^2 / (n - 1)) = sqrt(0.002 / 3), over sqrt(4)
    assert summary.standard_error == pytest.approx(math.sqrt(0.002 / 3) / 2)
    assert summary.runs == 4
    assert min(values) <= summary.low <= summary.mean <= summary.high <= max(values)


def test_bootstrap_interval_is_deterministic_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.8, 0.02, 6), rng.normal(0.8, 0.02, 600)
    assert summarise_runs(few, seed=3) == summarise_runs(few, seed=3)
    width = lambda s: s.high - s.low  # noqa: E731
    assert width(summarise_runs(many)) < width(summarise_runs(few))
    # for many runs the 95 % percentile interval is close to mean +- 1.96 se
    summary = summarise_runs(many, resamples=4000)
    assert width(summary) == pytest.approx(2 * 1.96 * summary.standard_error, rel=0.1)


def test_constant_runs_have_no_spread_and_one_run_has_no_interval():
    assert summarise_runs([0.5, 0.5, 0.5]) == RunSummary(0.5, 0.0, 0.5, 0.5, 3)
    single = summarise_runs([0.7, float("nan")])
    assert single.mean == 0.7 and single.runs == 1 and math.isnan(single.standard_error) and math.isnan(single.low)


def test_paired_difference_cancels_what_the_runs_share():
    reference = [0.70, 0.90, 0.80, 0.75]
    shifted = [value - 0.01 for value in reference]  # one point below on every run
    difference = paired_difference(shifted, reference)
    assert difference.mean == pytest.approx(-0.01)
    assert difference.standard_error == pytest.approx(0.0, abs=1e-12)
    assert summarise_runs(shifted).standard_error > 0.04  # unpaired, the runs' own spread hides the point
    assert difference.to_dict()["runs"] == 4
    assert summarise_runs([0.8, 0.9]).format(scale=100, digits=1) == "85.0 ± 5.0 [80.0, 90.0]"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="no finite number"):
        summarise_runs([float("nan")])
    with pytest.raises(ValueError, match="confidence must be in"):
        summarise_runs([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        summarise_runs([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError, match="same runs, got 2 and 3"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
