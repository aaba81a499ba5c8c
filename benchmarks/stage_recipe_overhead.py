"""Overhead of the shared training-stage recipe against a bare MONAI ``SupervisedTrainer``.

Both train the same network (the demo's SPADE DDPM at 64 px, label-map conditioned, DDPM v-prediction) on the same
phantom-shaped random batches for the same iterations; the recipe adds what every bundle stage gets: console and
TensorBoard logging of the loss each iteration, the progress bar, periodic (atomic) checkpoints and the final weights
file, and resume. Runs alternate (bare, recipe, bare, recipe, ...) so that machine load hits both alike; the script
prints the seconds per iteration of each and the ratio recipe / bare (baseline: the bare trainer).

    python benchmarks/stage_recipe_overhead.py --iterations 40 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from monai.networks.nets import SPADEDiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from echo_monai.engines import Conditioning, DDPMPrepareBatch, make_training_stage


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return SPADEDiffusionModelUNet(2, 1, 1, label_nc=5, channels=(16, 32, 64), attention_levels=(False, False, True),
                                   num_res_blocks=1, num_head_channels=16, norm_num_groups=8,
                                   spade_intermediate_channels=32)  # fmt: skip


def _items(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (n, 64, 64), generator=g)
    label_maps = torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    return [{"image": torch.rand(1, 64, 64, generator=g) * 2 - 1, "label_map": label_maps[i]} for i in range(n)]


def _run(recipe: bool, iterations: int, workdir: str) -> float:
    network = _network()
    items = _items(8 * iterations)
    prepare = DDPMPrepareBatch(DDPMScheduler(1000, prediction_type="v_prediction"), Conditioning({"seg": "label_map"}))
    optimizer = torch.optim.AdamW(network.parameters(), 5e-4)
    if recipe:
        trainer = make_training_stage(network, items, prepare, torch.nn.MSELoss(), optimizer, 1, workdir,
                                      batch_size=8, log_dir=workdir, save_interval=max(1, iterations // 4))  # fmt: skip
    else:
        loader = torch.utils.data.DataLoader(items, batch_size=8, shuffle=True)
        trainer = SupervisedTrainer(torch.device("cpu"), 1, loader, network, optimizer, torch.nn.MSELoss(),
                                    inferer=SimpleInferer(), prepare_batch=prepare, decollate=False)  # fmt: skip
    start = time.perf_counter()
    trainer.run()
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the console logger's cost stays (handlers format records), its output does not
    times: dict[str, list[float]] = {"bare": [], "recipe": []}
    for _ in range(args.repeats):
        for name in times:
            with tempfile.TemporaryDirectory() as workdir:
                times[name].append(_run(name == "recipe", args.iterations, workdir))
    bare, recipe = (min(times[k]) for k in ("bare", "recipe"))
    print(f"bare SupervisedTrainer: {bare * 1000:.1f} ms/iteration (best of {args.repeats}: {times['bare']})")
    print(f"make_training_stage:    {recipe * 1000:.1f} ms/iteration (best of {args.repeats}: {times['recipe']})")
    print(f"ratio recipe / bare: {recipe / bare:.3f}")


if __name__ == "__main__":
    main()
