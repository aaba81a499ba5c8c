"""Clip-loading throughput: decode-every-access baseline vs the memory-mapped video cache, in one run.

The baseline decodes the whole AVI on every access and then slices a clip, as echonet/dynamic's ``Echo`` dataset
does. The cached path is ``LoadVideod(cache_dir=..., lazy=True)`` + ``RandClipd``: the first epoch ("cold")
decodes each video once and writes a ``uint8`` ``.npy``; later epochs ("cached") slice the clip's frames out of a
memory map. "cached, full video" is what a reader with ``cache_dir`` returns (every frame as float32). The test
videos are generated here (a noise pattern drifting one pixel per frame, MJPG), so the benchmark does not depend
on the phantom simulator.

Usage:
    python benchmarks/clip_loading.py --videos 16 --frames 150 --size 112 --clip 32 --period 2 --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from echo_monai.data import VideoCache, read_video, write_video
from echo_monai.transforms import LoadVideod, RandClipd


def make_videos(folder: Path, count: int, frames: int, size: int, fps: float = 50.0) -> list[Path]:
    """Write ``count`` MJPG AVIs of a noise pattern drifting one pixel per frame (so frames differ)."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        base = rng.integers(0, 256, (size, size + frames), dtype=np.uint8)
        video = np.stack([base[:, t : t + size] for t in range(frames)])
        paths.append(write_video(folder / f"video_{index:03d}.avi", video, fps=fps))
    return paths


def baseline_clip(path: Path, num_frames: int, period: int, rng: np.random.Generator) -> torch.Tensor:
    """Decode the whole video, then take a random clip (the echonet/dynamic way)."""
    video = read_video(path).astype(np.float32)  # (T, H, W)
    span = (num_frames - 1) * period + 1
    start = int(rng.integers(0, max(0, len(video) - span) + 1))
    return torch.from_numpy(video[start : start + span : period][None].copy())


def clips_per_second(paths: list[Path], load: Callable[[Path], torch.Tensor], epochs: int) -> float:
    """Clips per second over ``epochs`` passes through ``paths``."""
    start = time.perf_counter()
    for _ in range(epochs):
        for path in paths:
            clip = load(path)
            assert clip.ndim == 4
    return epochs * len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--clip", type=int, default=32)
    parser.add_argument("--period", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for the baseline and the cached paths")
    parser.add_argument("--workdir", type=Path, default=None, help="videos + cache folder (default: temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        paths = make_videos(work / "videos", args.videos, args.frames, args.size)
        cache_dir = work / "cache"
        rng = np.random.default_rng(0)
        load = LoadVideod("video", cache_dir=cache_dir, lazy=True)
        clip = RandClipd("video", num_frames=args.clip, period=args.period, dtype=torch.float32).set_random_state(0)
        cache = VideoCache(cache_dir)

        def cached(path: Path) -> torch.Tensor:
            return clip(load({"video": path}))["video"]

        def cached_full(path: Path) -> torch.Tensor:
            return torch.from_numpy(np.asarray(cache.load(path), dtype=np.float32))[None]

        baseline = clips_per_second(paths, lambda p: baseline_clip(p, args.clip, args.period, rng), args.epochs)
        cold = clips_per_second(paths, cached, 1)
        warm = clips_per_second(paths, cached, args.epochs)
        full = clips_per_second(paths, cached_full, args.epochs)

    print(f"{args.videos} videos x {args.frames} frames {args.size}x{args.size} MJPG; clip {args.clip} frames, "
          f"period {args.period}; {args.epochs} epochs; torch threads 1")
    print(f"{'loader':<40}{'clips/s':>12}{'x baseline':>12}")
    for name, rate in (("baseline: decode whole AVI per access", baseline), ("cold: first epoch, decode + cache", cold),
                       ("cached: memmap clip slice", warm), ("cached, full video (reader output)", full)):
        print(f"{name:<40}{rate:>12.1f}{rate / baseline:>11.1f}x")
    print(f"cached / baseline ratio: {warm / baseline:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
