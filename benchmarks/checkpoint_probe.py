"""Cost of finding the checkpoint to resume from: the memory-mapped probe against reading each checkpoint whole.

A stage checks its newest checkpoints before resuming (:func:`echo_monai.handlers.latest_checkpoint`) and again when
it rotates them at the end of training. The baseline reads every candidate whole (``read_checkpoint``, what the check
did before); the probe (``probe_checkpoint``) opens the archive and its pickle with the tensors memory-mapped. The
script writes ``--n-saved`` checkpoints of ``--megabytes`` each (a network and its AdamW state, as a stage saves),
then times both ways of checking all of them (best of ``--repeats``; the files are in the page cache for both) and
prints the ratio probe / full read.

    python benchmarks/checkpoint_probe.py --megabytes 400 --n-saved 2 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from echo_monai.handlers import probe_checkpoint, read_checkpoint


def _checkpoint(megabytes: int) -> dict:
    """Network weights plus AdamW's two moments (a third each), float32."""
    numel = megabytes * 2**20 // 4 // 3
    weights = {f"layer{i}.weight": torch.randn(numel // 8) for i in range(8)}
    moments = {f"layer{i}": {"exp_avg": torch.zeros(numel // 8), "exp_avg_sq": torch.zeros(numel // 8)}
               for i in range(8)}  # fmt: skip
    return {"model": weights, "optimizer": {"state": moments}, "trainer": {"iteration": 100}}


def _best(check, paths: list[Path], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            check(path)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=400)
    parser.add_argument("--n-saved", dest="n_saved", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"checkpoint_iteration={100 * (i + 1)}.pt" for i in range(args.n_saved)]
        state = _checkpoint(args.megabytes)
        for path in paths:
            torch.save(state, path)
        del state
        size = sum(p.stat().st_size for p in paths) / 2**20
        full = _best(read_checkpoint, paths, args.repeats)
        probe = _best(probe_checkpoint, paths, args.repeats)
    print(f"{args.n_saved} checkpoints, {size:.0f} MiB in all")
    print(f"read whole (baseline): {full * 1000:.1f} ms")
    print(f"probe_checkpoint:      {probe * 1000:.1f} ms")
    print(f"ratio probe / full read: {probe / full:.4f}")


if __name__ == "__main__":
    main()
