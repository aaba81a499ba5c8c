"""echo_seg_ddpm samplers: speed and downstream Dice, against the paper's 1000-step ancestral DDPM.

Part 1 (speed, always): the bundle's default network (``configs/inference.yaml``) at 112 and 256 px; for each
sampler the number of network evaluations (NFE), images/s (measured time per network evaluation x NFE; the
sampler adds no other work of note) and the ratio to DDPM-1000; peak resident memory of one sampling step and of
one training step (each measured in a fresh process).

Part 2 (quality, with ``--checkpoint`` and ``--camus``): generate from the phantom's training label maps with each
sampler, train the downstream segmentation network on the synthetic images only, and report Dice on the real
(phantom) test patients, with the difference to DDPM-1000.

    python benchmarks/seg_ddpm_samplers.py                       # speed only
    python benchmarks/seg_ddpm_samplers.py --checkpoint echo_monai_demo/bundle/models/model.pt \
        --camus echo_monai_demo/data/CAMUS --settings demo --limit 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "echo_seg_ddpm"
SAMPLERS = {"ddpm": 1000, "ddim": 50, "dpm_solver": 20}


def bundle_parser(overrides: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **overrides})
    return parser


def time_per_evaluation(image_size: int, batch: int, repeats: int = 3) -> float:
    parser = bundle_parser({"image_size": image_size})
    network = parser.get_parsed_content("network_def").eval()
    x = torch.randn(batch, 1, image_size, image_size)
    seg = torch.nn.functional.one_hot(torch.randint(0, 5, (batch, image_size, image_size)), 5).permute(0, 3, 1, 2)
    t = torch.full((batch,), 500)
    times = []
    with torch.no_grad():
        network(x, t, seg=seg.float())  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            network(x, t, seg=seg.float())
            times.append(time.perf_counter() - start)
    return min(times)


def peak_memory_mb(mode: str, image_size: int, batch: int) -> float:
    """Peak resident memory (MiB) added by one sampling (``infer``) or training (``train``) step, in a fresh process.

    Linux: the peak (``VmHWM``) is reset after the network is built, so the figure is the step's own peak above the
    resident size before it.
    """
    code = f"""
import re, torch, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from seg_ddpm_samplers import bundle_parser
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
net = bundle_parser({{"image_size": {image_size}}}).get_parsed_content("network_def")
x = torch.randn({batch}, 1, {image_size}, {image_size}); seg = torch.rand({batch}, 5, {image_size}, {image_size})
t = torch.full(({batch},), 500)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
base = status("VmRSS")
if "{mode}" == "train":
    net(x, t, seg=seg).square().mean().backward()
else:
    with torch.no_grad():
        net(x, t, seg=seg)
print((status("VmHWM") - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def speed(batch: int) -> dict:
    results = {}
    print(f"Part 1: speed of the default network (batch {batch}, CPU threads {torch.get_num_threads()})")
    print(f"{'sampler':<14}{'NFE':>6}{'NFE ratio':>11}{'img/s 112':>11}{'img/s 256':>11}")
    per_eval = {size: time_per_evaluation(size, batch) for size in (112, 256)}
    for name, nfe in SAMPLERS.items():
        rates = {size: batch / (nfe * t) for size, t in per_eval.items()}
        results[name] = {
            "nfe": nfe,
            "nfe_ratio_vs_ddpm1000": 1000 / nfe,
            **{f"images_per_s_{k}": v for k, v in rates.items()},
        }
        print(f"{name + '-' + str(nfe):<14}{nfe:>6}{1000 / nfe:>10.0f}x{rates[112]:>11.4f}{rates[256]:>11.4f}")
    for size in (112, 256):
        mem = {mode: peak_memory_mb(mode, size, batch) for mode in ("infer", "train")}
        results[f"peak_memory_mb_{size}"] = mem
        print(
            f"peak memory at {size} px, batch {batch}: sampling step {mem['infer']:.0f} MiB, "
            f"training step {mem['train']:.0f} MiB (peak above the resident size before the step)"
        )
    return results


def quality(checkpoint: str, camus: str, settings: dict, limit: int, seg_epochs: int, seed: int) -> dict:
    from monai.data import DataLoader, Dataset

    from echo_monai.apps.segmentation_utility import camus_samples
    from echo_monai.data import CAMUS, label_map_datalist
    from echo_monai.engines import SamplingPrepareBatch
    from echo_monai.inferers import Sampler
    from echo_monai.metrics import SegmentationEvaluator

    parser = bundle_parser(settings)
    network = parser.get_parsed_content("network_def").eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))  # model.pt holds the EMA state dict itself
    conditioning = parser.get_parsed_content("conditioning")
    size = int(parser.get_parsed_content("image_size"))
    items = label_map_datalist(camus, split="training", limit=limit)
    loader = DataLoader(Dataset(items, parser.get_parsed_content("preprocessing")), batch_size=len(items))
    batch = next(iter(loader))
    test = camus_samples(CAMUS(camus, split="testing"), size)
    results = {}
    print(
        f"\nPart 2: downstream Dice (synthetic only, {len(items)} label maps, {size} px, real phantom test set "
        f"of {len(test)} images, {seg_epochs} epochs)"
    )
    columns = ("dice_lv_endo", "dice_lv_epi", "dice_la", "dice_mean")
    print(f"{'sampler':<14}{'NFE':>6}{'s/image':>9}" + "".join(f"{c:>14}" for c in columns) + f"{'vs ddpm':>10}")
    for name, nfe in SAMPLERS.items():
        scheduler = parser.get_parsed_content(f"schedulers#{name}")
        sampler = Sampler(scheduler, nfe, conditioning=conditioning)
        noise, _, _, kwargs = SamplingPrepareBatch(conditioning, like_key="label_map", seed=seed)(batch)
        start = time.perf_counter()
        images = sampler(noise, network, generator=torch.Generator().manual_seed(seed), **kwargs)
        seconds = (time.perf_counter() - start) / len(items)
        labels = (batch["label_map"].argmax(1, keepdim=True) - 1).clamp(min=0)
        synthetic = [{"image": images[i], "label": labels[i]} for i in range(len(items))]
        evaluator = SegmentationEvaluator(
            channels=(16, 32, 64, 128), strides=(2, 2, 2), max_epochs=seg_epochs, batch_size=8, seed=seed
        )
        dice = evaluator.run(test, synthetic=synthetic, mixes=["synthetic"])["synthetic"]
        results[name] = {"nfe": nfe, "seconds_per_image": seconds, **dice}
        delta = 100 * (dice["dice_mean"] - results["ddpm"]["dice_mean"])
        row = "".join(f"{dice[c]:>14.3f}" for c in columns)
        print(f"{name + '-' + str(nfe):<14}{nfe:>6}{seconds:>9.2f}{row}{delta:>+9.1f}p")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--checkpoint", default=None, help="model.pt of a trained echo_seg_ddpm (part 2)")
    parser.add_argument("--camus", default=None, help="CAMUS-layout root with training/testing splits (part 2)")
    parser.add_argument("--settings", default="default", choices=["default", "demo"], help="network settings")
    parser.add_argument("--limit", type=int, default=16, help="label maps to generate from")
    parser.add_argument("--seg-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    results = {} if args.skip_speed else {"speed": speed(args.batch)}
    if args.checkpoint and args.camus:
        import yaml

        from echo_monai.apps.demo import DEMO_PRESET

        preset = BUNDLE / "configs" / "presets" / f"{DEMO_PRESET}.yaml"
        settings = yaml.safe_load(preset.read_text()) if args.settings == "demo" else {}
        results["quality"] = quality(args.checkpoint, args.camus, settings, args.limit, args.seg_epochs, args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
