"""Spread of benchmark results over repeated runs: the mean with its standard error and a bootstrap interval, for
one condition or for the paired difference of two conditions run on the same seeds.

A *run* is one repetition with its own seeds (generation seed x downstream training seed). Two conditions are
*paired* when run ``i`` of both used the same seeds (same label maps, same initial noise, same downstream
initialisation and batch order): their difference then cancels what the seeds share, and its interval is what
decides whether one condition is below the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["RunSummary", "paired_difference", "summarise_runs"]


@dataclass(frozen=True)
class RunSummary:
    """Mean over runs, its standard error, a percentile-bootstrap interval of the mean and the number of runs.

    ``standard_error`` is the sample standard deviation (``ddof = 1``) over ``sqrt(runs)``; NaN for one run, as are
    the interval bounds.
    """

    mean: float
    standard_error: float
    low: float
    high: float
    runs: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def format(self, scale: float = 1.0, digits: int = 3) -> str:
        """``mean ± se [low, high]`` with every figure multiplied by ``scale``."""
        return (
            f"{self.mean * scale:.{digits}f} ± {self.standard_error * scale:.{digits}f} "
            f"[{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"
        )


def summarise_runs(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> RunSummary:
    """Mean of per-run values, standard error and percentile-bootstrap interval of the mean.

    Args:
        values: one figure per run (NaNs are dropped).
        confidence: coverage of the interval, in (0, 1).
        resamples: bootstrap resamples (>= 1).
        seed: bootstrap RNG seed (the interval is deterministic for a seed).

    Raises:
        ValueError: for no finite value, ``confidence`` outside (0, 1) or ``resamples < 1``.

    Example:
        >>> summarise_runs([0.80, 0.82, 0.81]).mean
        0.81
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"summarise_runs: confidence must be in (0, 1), got {confidence}.")
    if resamples < 1:
        raise ValueError(f"summarise_runs: resamples must be >= 1, got {resamples}.")
    data = np.asarray([float(v) for v in values], dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ValueError("summarise_runs: values holds no finite number.")
    mean = float(data.mean())
    if data.size == 1:
        return RunSummary(mean, math.nan, math.nan, math.nan, 1)
    standard_error = float(data.std(ddof=1) / math.sqrt(data.size))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return RunSummary(mean, standard_error, float(low), float(high), int(data.size))


def paired_difference(
    values: Sequence[float], reference: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> RunSummary:
    """Summary of ``values[i] - reference[i]`` over paired runs (same seeds for run ``i`` of both).

    Raises:
        ValueError: when the two sequences differ in length (the runs are not paired).
    """
    if len(values) != len(reference):
        raise ValueError(
            f"paired_difference: values and reference must hold the same runs, got {len(values)} and {len(reference)}."
        )
    return summarise_runs(
        [float(a) - float(b) for a, b in zip(values, reference, strict=True)], confidence, resamples, seed
    )
