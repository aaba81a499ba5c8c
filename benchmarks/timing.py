"""The one timer of the benchmark scripts: the best wall time of a few calls after a warm-up, GPU-synchronised."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["best_time"]


def best_time(function: Callable[[], object], device: str | torch.device = "cpu", repeats: int = 2) -> float:
    """Best wall time (s) of ``repeats`` calls of ``function`` after one warm-up call; CUDA work is waited for."""
    cuda = torch.device(device).type == "cuda"

    def run() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run()  # warm-up
    return min(run() for _ in range(max(1, int(repeats))))
