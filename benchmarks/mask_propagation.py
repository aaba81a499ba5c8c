"""How well do the boxes of an animated BUSV-layout dataset follow the lesion? On phantom breast videos, whose true
lesion mask is known on every frame.

``us_image_to_video`` writes a lesion box per generated frame by carrying the seed image's mask along the generated
motion with dense optical flow (``echo_monai.apps.generation.propagate_mask``). Here the same function runs on real
(phantom) probe-motion videos, from the first frame's true mask, and each frame's box is scored against the true box
(IoU). Baseline: the first frame's box kept on every frame (what a writer without motion would do). Printed per
motion (sweep, tilt, compression) and flow method, with the ratio of the mean IoU to the baseline's.

    python benchmarks/mask_propagation.py
    python benchmarks/mask_propagation.py --videos 12 --frames 16 --size 128 160
"""

from __future__ import annotations

import argparse

import numpy as np

from echo_monai.apps.generation import mask_box, propagate_mask
from echo_monai.data.phantom import BreastParameters, BreastPhantom


def iou(a: list[float] | None, b: np.ndarray) -> float:
    """IoU of two ``[x, y, w, h]`` boxes (0 when one is missing)."""
    if a is None or b[2] <= 0 or b[3] <= 0:
        return 0.0
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per motion")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = {}
    print(f"mask propagation on phantom breast videos: {args.videos} videos x {args.frames} frames per motion, "
          f"{args.size[0]} x {args.size[1]} px; IoU of each frame's box (frames 1..T-1) with the true box")  # fmt: skip
    for motion in ("sweep", "tilt", "compression"):
        scores: dict[str, list[float]] = {"fixed first-frame box": [], "farneback": [], "dis": []}
        for i in range(args.videos):
            rng = np.random.default_rng([args.seed, i, len(motion)])
            params = BreastParameters.sample(rng, ("benign", "malignant")[i % 2], motion=motion)
            video = BreastPhantom(params, tuple(args.size), seed=int(rng.integers(2**31))).simulate(args.frames)
            first = video.masks[0] == 1
            truth = video.boxes
            scores["fixed first-frame box"] += [iou(mask_box(first), truth[t]) for t in range(1, args.frames)]
            for method in ("farneback", "dis"):
                masks = propagate_mask(video.frames, first, method=method)
                scores[method] += [iou(mask_box(masks[t]), truth[t]) for t in range(1, args.frames)]
        base = float(np.mean(scores["fixed first-frame box"]))
        results[motion] = {name: float(np.mean(v)) for name, v in scores.items()}
        line = ", ".join(
            f"{name} {np.mean(v):.3f}" + ("" if name.startswith("fixed") else f" ({np.mean(v) / base:.2f}x)")
            for name, v in scores.items()
        )
        print(f"  {motion:12s} mean IoU: {line}")
    return results


if __name__ == "__main__":
    main()
