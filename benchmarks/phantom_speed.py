"""Phantom simulator throughput: frames/s at 112x112 and 256x256 against the 100 frames/s target at 112.

Run: ``python benchmarks/phantom_speed.py [--frames 200] [--repeats 3]``. Times ``CardiacPhantom.simulate`` (B-mode
frame + label map per frame, 4-chamber view) after a warm-up; the subject set-up (material field, raster calibration)
is timed separately, since it is paid once per video.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters

TARGET_FPS = 100.0


def measure(size: int, frames: int, repeats: int, seed: int = 0) -> tuple[float, float]:
    """Best-of-``repeats`` frames/s of ``CardiacPhantom.simulate`` and mean set-up time (s) at ``size x size``."""
    params = CardiacParameters.sample(np.random.default_rng(seed), view="4CH")
    setup = []
    rates = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        phantom = CardiacPhantom(params, (size, size), seed=seed + repeat)
        setup.append(time.perf_counter() - start)
        start = time.perf_counter()
        phantom.simulate(frames)
        elapsed = time.perf_counter() - start
        if repeat:  # the first run warms up caches and OpenCV's thread pool
            rates.append(frames / elapsed)
    return max(rates), float(np.mean(setup[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
        f"OpenCV threads {cv2.getNumThreads()}, numpy {np.__version__}"
    )
    results = {}
    for size in (112, 256):
        fps, setup = measure(size, args.frames, args.repeats)
        results[size] = fps
        print(
            f"{size}x{size}: {fps:7.1f} frames/s  ({1000.0 / fps:5.2f} ms/frame, subject set-up {1000 * setup:.0f} ms)"
        )
    ratio = results[112] / TARGET_FPS
    verdict = "meets" if ratio >= 1.0 else "misses"
    print(f"112x112 vs target {TARGET_FPS:.0f} frames/s: {ratio:.2f}x ({verdict} the target)")


if __name__ == "__main__":
    main()
