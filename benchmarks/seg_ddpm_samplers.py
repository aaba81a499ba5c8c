"""echo_seg_ddpm samplers: speed, and downstream Dice with its spread, against the paper's 1000-step ancestral DDPM.

Part 1 (speed, unless ``--skip-speed``): the bundle's default network (``configs/inference.yaml``) at 112 and 256 px;
for each sampler the number of network evaluations (NFE), images/s (measured time per network evaluation x NFE; the
sampler adds no other work of note) and the ratio to DDPM-1000; peak resident memory of one sampling step and of
one training step (each measured in a fresh process).

Part 2 (fidelity, ``--phantom demo hard`` or ``--checkpoint``/``--camus``/``--test-camus``): generate from training
label maps with each sampler, train the downstream segmentation network on the synthetic images only, and score it on
held-out real (phantom) test patients. Every sampler runs on the same runs: ``--generation-seeds`` x
``--downstream-seeds``; run ``(g, d)`` uses the same label maps and initial noise (seed ``g``) and the same downstream
initialisation and batch order (seed ``d``) for every sampler, and every downstream network takes exactly
``--seg-steps`` optimisation steps. It prints, per sampler, the mean Dice over the runs with its standard error and a
95 % bootstrap interval, the paired difference to DDPM-1000 (same runs) with its interval, and the grey-level
statistics of the synthetic images (mean of LV cavity, myocardium, LA, outside the sector; myocardium-LV contrast)
next to the real test images'.

The phantoms (simulated, trained with the bundle's ``cpu`` preset through ``monai.bundle run``, then cached under
``--workdir``): ``demo``, the demo's 20 standard patients (16 train the generator), held-out test phantom of 12
patients; ``hard`` (``echo-monai simulate camus --variability hard``): 10 patients (8 train the generator: more
shape, pose, gain, attenuation and wall-dropout variability), held-out test phantom of 30 patients. The generator
takes 280 optimisation steps on both. Generated images are cached per (sampler name, label maps, seed), so a rerun
with more samplers only generates the new ones; the cache does not notice a changed scheduler config or model, so
delete ``<workdir>/<phantom>/generated`` after changing either.

``--distill`` adds the consistency-distilled student (``train --stage distill`` on the phantom's trained model for
``--distill-epochs``, then ``models/student.pt``) at 1, 2 and 4 evaluations, and the undistilled teacher with
DPM-Solver++ at 4.

    python benchmarks/seg_ddpm_samplers.py                                   # speed only
    python benchmarks/seg_ddpm_samplers.py --skip-speed --phantom hard demo --workdir bench_samplers
    python benchmarks/seg_ddpm_samplers.py --skip-speed --phantom hard --ablation --workdir bench_samplers
    python benchmarks/seg_ddpm_samplers.py --skip-speed --phantom demo --distill --variants cd-1 cd-2 cd-4 dpm2m-4
    python benchmarks/seg_ddpm_samplers.py --skip-speed --checkpoint model.pt --camus CAMUS --test-camus CAMUS_test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "echo_seg_ddpm"
SAMPLERS = {"ddpm": 1000, "ddim": 50, "dpm_solver": 10}


class Variant(NamedTuple):
    """A sampler setting: the bundle's scheduler id, the steps, and the scheduler and ``Sampler`` arguments changed."""

    scheduler: str
    steps: int
    scheduler_args: dict = {}
    sampler_args: dict = {}
    weights: str = "model.pt"  # the file beside the teacher's model.pt the variant samples from


#: the reference (first), DDIM-50 and the default few-step sampler (DPM-Solver++ 2M, 10 steps)
VARIANTS = {
    "ddpm-1000": Variant("ddpm", 1000),
    "ddim-50": Variant("ddim", 50),
    "dpm2m-10": Variant("dpm_solver", 10),
}
#: the ablation around the default few-step sampler (--ablation)
ABLATION = {
    "dpm2m-5": Variant("dpm_solver", 5),
    "dpm2m-20": Variant("dpm_solver", 20),
    "dpm2m-50": Variant("dpm_solver", 50),
    "dpm2m-20-trailing": Variant("dpm_solver", 20, {"timestep_spacing": "trailing"}),
    "dpm2m-20-linspace": Variant("dpm_solver", 20, {"timestep_spacing": "linspace"}),
    "dpm2m-20-noclip": Variant("dpm_solver", 20, {"clip_sample": False}),
    "dpm1-20": Variant("dpm_solver", 20, {"solver_order": 1}),
    "ddim-50-eta1": Variant("ddim", 50, {}, {"eta": 1.0}),
    # DDIM's own settings against DPM-Solver++1 (the same update, eta = 0) on our grids
    "ddim-50-noclip": Variant("ddim", 50, {"clip_sample": False}),
    "ddim-50-consistent": Variant("ddim", 50, {"_target_": "echo_monai.networks.schedulers.DDIMScheduler"}),
    "ddim-50-monai": Variant("ddim", 50, {"_target_": "monai.networks.schedulers.DDIMScheduler"}),
    "dpm1-50": Variant("dpm_solver", 50, {"solver_order": 1}),
    "dpm1-50-linspace": Variant("dpm_solver", 50, {"solver_order": 1, "timestep_spacing": "linspace"}),
}
#: the consistency-distilled student (--distill: `train --stage distill`, models/student.pt) at 1, 2 and 4 evaluations,
#: and the teacher with DPM-Solver++ at 4 (what the same budget gives without distillation)
DISTILLED = {
    "cd-1": Variant("consistency", 1, weights="student.pt"),
    "cd-2": Variant("consistency", 2, weights="student.pt"),
    "cd-4": Variant("consistency", 4, weights="student.pt"),
    "dpm2m-4": Variant("dpm_solver", 4),
}
#: phantom: (patients, variability, generator epochs (280 optimisation steps at batch 8), held-out test patients)
PHANTOMS = {"demo": (20, "standard", 35, 12), "hard": (10, "hard", 70, 30)}
REFERENCE = "ddpm-1000"


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


def load_network(parser, checkpoint: str) -> torch.nn.Module:
    network = parser.get_parsed_content("network_def").eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))  # model.pt holds the EMA state dict itself
    return network


def make_sampler(settings: dict, variant: Variant):
    """The bundle's sampler for one setting: its scheduler (with ``scheduler_args`` changed) and ``sampler_args``."""
    from echo_monai.inferers import Sampler

    changes = {f"schedulers#{variant.scheduler}#{key}": value for key, value in variant.scheduler_args.items()}
    parser = bundle_parser({**settings, **changes})
    scheduler = parser.get_parsed_content(f"schedulers#{variant.scheduler}")
    steps = min(variant.steps, int(scheduler.num_train_timesteps))  # a small test preset trains fewer timesteps
    return Sampler(scheduler, steps, conditioning=parser.get_parsed_content("conditioning"), **variant.sampler_args)


def generate(sampler, network, batch: dict, seed: int, chunk: int = 32) -> tuple[torch.Tensor, float]:
    """Images from ``batch``'s label maps, black outside each sector as the bundle writes them; the initial noise and
    the stochastic steps are seeded by ``seed``. Returns (images, seconds per image)."""
    from echo_monai.engines import SamplingPrepareBatch
    from echo_monai.transforms import MaskOutsideSector

    prepare = SamplingPrepareBatch(sampler.conditioning, like_key="label_map", seed=seed)  # one noise stream
    generator = torch.Generator().manual_seed(seed)
    count = len(batch["label_map"])
    start, images = time.perf_counter(), []
    for first in range(0, count, chunk):
        noise, _, _, kwargs = prepare({"label_map": batch["label_map"][first : first + chunk]})
        images.append(sampler(noise, network, generator=generator, **kwargs))
    seconds = (time.perf_counter() - start) / count
    items = [{"label_map": label_map} for label_map in batch["label_map"]]
    return MaskOutsideSector()(torch.cat(images), items), seconds


def label_map_batch(parser, camus: str, count: int, seed: int = 0) -> dict:
    """``count`` training label maps drawn at random (``seed``) from the training split, collated."""
    import numpy as np
    from monai.data import DataLoader, Dataset

    from echo_monai.data import label_map_datalist

    items = label_map_datalist(camus, split="training")
    if count < len(items):
        chosen = sorted(np.random.default_rng(seed).choice(len(items), size=count, replace=False).tolist())
        items = [items[i] for i in chosen]
    loader = DataLoader(Dataset(items, parser.get_parsed_content("preprocessing")), batch_size=len(items))
    return next(iter(loader))


def downstream_dice(synthetic: list, test: list, seed: int, steps: int, batch_size: int) -> dict:
    """Train the downstream UNet on ``synthetic`` for exactly ``steps`` steps (initialisation and batch order from
    ``seed``) and return its Dice on ``test``."""
    from echo_monai.metrics import SegmentationEvaluator

    evaluator = SegmentationEvaluator(
        channels=(16, 32, 64, 128), strides=(2, 2, 2), max_steps=steps, batch_size=batch_size, seed=seed
    )
    evaluator.fit(synthetic)
    return evaluator.evaluate(test)


DICE = ("dice_lv_endo", "dice_lv_epi", "dice_la", "dice_mean")
#: grey-level statistic -> column title
GREY = {
    "lv_cavity_mean": "LV cavity",
    "myocardium_mean": "myocardium",
    "left_atrium_mean": "LA",
    "outside_sector_mean": "outside",
    "myocardium_vs_cavity_contrast": "myo - LV",
}


def quality(
    checkpoint: str,
    camus: str,
    test_camus: str,
    settings: dict,
    variants: dict[str, Variant],
    label_maps: int,
    generation_seeds: int,
    downstream_seeds: int,
    seg_steps: int,
    seg_batch: int,
    cache: Path | None = None,
    title: str = "",
) -> dict:
    """Part 2 on one dataset; ``variants`` starts with the reference. Returns per variant the runs and summaries."""
    from echo_monai.apps.segmentation_utility import camus_samples, intensity_statistics
    from echo_monai.data import CAMUS
    from echo_monai.metrics import paired_difference, summarise_runs

    parser = bundle_parser(settings)
    networks = {weights: load_network(parser, str(Path(checkpoint).with_name(weights)))
                for weights in {variant.weights for variant in variants.values()}}  # fmt: skip
    size = int(parser.get_parsed_content("image_size"))
    batch = label_map_batch(parser, camus, label_maps)
    labels = (batch["label_map"].argmax(1, keepdim=True) - 1).clamp(min=0)  # EchoLabelMapd classes -> CAMUS labels
    test = camus_samples(CAMUS(test_camus), size)
    real_grey = intensity_statistics(test, test)["real"]
    runs = [(g, d) for g in range(generation_seeds) for d in range(downstream_seeds)]
    print(
        f"\nPart 2{title}: synthetic-only segmentation; {len(labels)} label maps x {generation_seeds} generation seeds "
        f"x {downstream_seeds} downstream seeds = {len(runs)} paired runs per sampler, {seg_steps} steps of batch "
        f"{seg_batch} each; {size} px; held-out real test set of {len(test)} images"
    )
    results: dict = {}
    for name, variant in variants.items():
        sampler = make_sampler(settings, variant)
        per_run, pooled, seconds = [], [], []
        for g in range(generation_seeds):
            path = None if cache is None else cache / f"{name}_maps{len(labels)}_seed{g}.pt"
            if path is not None and path.is_file():
                saved = torch.load(path, weights_only=True)
                images, spent = saved["images"], float(saved["seconds_per_image"])
            else:
                images, spent = generate(sampler, networks[variant.weights], batch, seed=g)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"images": images, "seconds_per_image": spent}, path.with_suffix(".tmp"))
                    path.with_suffix(".tmp").replace(path)
            seconds.append(spent)
            synthetic = [{"image": images[i], "label": labels[i]} for i in range(len(labels))]
            pooled += synthetic
            for d in range(downstream_seeds):
                per_run.append(downstream_dice(synthetic, test, d, seg_steps, seg_batch))
        entry = {
            "nfe": sampler.network_evaluations,
            "seconds_per_image": sum(seconds) / len(seconds),
            "runs": per_run,
            "dice": {key: summarise_runs([run[key] for run in per_run]).to_dict() for key in DICE},
            "grey": intensity_statistics(test, pooled)["synthetic"],
        }
        if name != REFERENCE and REFERENCE in results:
            reference = [run["dice_mean"] for run in results[REFERENCE]["runs"]]
            entry["vs_reference"] = paired_difference([run["dice_mean"] for run in per_run], reference).to_dict()
        results[name] = entry
        print_row(name, entry, first=len(results) == 1)
    print_grey(results, real_grey)
    results["real_test_grey"] = real_grey
    return results


def print_row(name: str, entry: dict, first: bool) -> None:
    if first:
        print(
            f"{'sampler':<20}{'NFE':>5}{'s/img':>7}  {'Dice mean ± se [95% CI]':<27}"
            f"{'LV endo':>8}{'LV epi':>8}{'LA':>8}  vs DDPM-1000, points (paired) [95% CI]"
        )
    dice = entry["dice"]
    mean = dice["dice_mean"]
    summary = f"{mean['mean']:.3f} ± {mean['standard_error']:.3f} [{mean['low']:.3f}, {mean['high']:.3f}]"
    parts = "".join(f"{dice[key]['mean']:>8.3f}" for key in DICE[:3])
    delta = entry.get("vs_reference")
    versus = (
        f"{100 * delta['mean']:+.1f} ± {100 * delta['standard_error']:.1f} [{100 * delta['low']:+.1f}, "
        f"{100 * delta['high']:+.1f}]"
        if delta
        else "reference"
    )
    print(f"{name:<20}{entry['nfe']:>5}{entry['seconds_per_image']:>7.2f}  {summary:<27}{parts}  {versus}", flush=True)


def print_grey(results: dict, real: dict) -> None:
    print("grey levels (0-255) of the synthetic images, own labels; real = the held-out test images")
    print(f"{'images':<20}" + "".join(f"{title:>12}" for title in GREY.values()))
    rows = [("real", real)] + [(name, entry["grey"]) for name, entry in results.items() if "grey" in entry]
    for name, grey in rows:
        print(f"{name:<20}" + "".join(f"{grey[key]:>12.1f}" for key in GREY))


def phantom_dataset(
    name: str, workdir: Path, preset: str, epochs: int | None = None, distill_epochs: int | None = None
) -> tuple[str, str, str]:
    """Simulate and train once (cached under ``workdir/name``): returns (model.pt, training CAMUS, test CAMUS); with
    ``distill_epochs`` also distil the student (models/student.pt) from it."""
    from echo_monai.apps.demo import run_bundle
    from echo_monai.apps.simulate import simulate

    patients, variability, phantom_epochs, test_patients = PHANTOMS[name]
    epochs = phantom_epochs if epochs is None else epochs
    root = workdir / name
    train, test = root / "CAMUS", root / "CAMUS_test"
    for folder, count, seed in ((train, patients, 0), (test, test_patients, 1000)):
        if not (folder / "database_split" / "subgroup_testing.txt").is_file():
            simulate("camus", folder, n=count, seed=seed, image_size=(128, 128), variability=variability)
    model = root / "bundle" / "models" / "model.pt"
    if not model.is_file():
        start = time.perf_counter()
        print(f"training echo_seg_ddpm on the {name} phantom ({epochs} epochs, {preset} preset) ...", flush=True)
        overrides = {"bundle_root": str(root / "bundle"), "dataset_dir": str(train), "seed": 0, "epochs": epochs}
        run_bundle("train", BUNDLE, {**overrides, "preview_interval": epochs, "val_interval": epochs}, preset=preset)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    if distill_epochs and not model.with_name("student.pt").is_file():
        start = time.perf_counter()
        print(f"distilling the student on the {name} phantom ({distill_epochs} epochs) ...", flush=True)
        overrides = {
            "bundle_root": str(root / "bundle"),
            "dataset_dir": str(train),
            "seed": 0,
            "epochs": distill_epochs,
            "preview_interval": distill_epochs,
            "val_interval": distill_epochs,
        }
        run_bundle("train", BUNDLE, overrides, stage="distill", preset=preset)
        print(f"distilled in {time.perf_counter() - start:.0f} s", flush=True)
    return str(model), str(train), str(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="part 1 batch")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--phantom", nargs="*", default=[], choices=sorted(PHANTOMS), help="part 2 on these phantoms")
    parser.add_argument("--workdir", default="bench_seg_ddpm_samplers", help="phantoms, models and generated images")
    parser.add_argument("--checkpoint", default=None, help="model.pt of a trained echo_seg_ddpm (part 2, own data)")
    parser.add_argument("--camus", default=None, help="CAMUS-layout root whose training split gives the label maps")
    parser.add_argument("--test-camus", dest="test_camus", default=None, help="CAMUS-layout root of the test images")
    parser.add_argument("--preset", default=None, help="bundle preset of the networks (default: the demo's, cpu)")
    parser.add_argument("--generator-epochs", dest="generator_epochs", type=int, default=None, help="phantom training")
    parser.add_argument("--ablation", action="store_true", help="also run the ablation samplers")
    parser.add_argument("--distill", action="store_true", help="also distil the student and run it at 1, 2, 4 steps")
    parser.add_argument("--distill-epochs", dest="distill_epochs", type=int, default=60, help="student training")
    parser.add_argument("--variants", nargs="*", default=None, help="run only these samplers (the reference first)")
    parser.add_argument("--label-maps", dest="label_maps", type=int, default=24)
    parser.add_argument("--generation-seeds", dest="generation_seeds", type=int, default=2)
    parser.add_argument("--downstream-seeds", dest="downstream_seeds", type=int, default=3)
    parser.add_argument("--seg-steps", dest="seg_steps", type=int, default=300)
    parser.add_argument("--seg-batch", dest="seg_batch", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    import logging

    import yaml

    logging.getLogger("ignite").setLevel(logging.WARNING)  # one line per sampler, not per downstream epoch

    from echo_monai.apps.demo import DEMO_PRESET

    known = {**VARIANTS, **ABLATION, **DISTILLED}
    variants = dict(VARIANTS, **(ABLATION if args.ablation else {}), **(DISTILLED if args.distill else {}))
    if args.variants:
        unknown = sorted(set(args.variants) - set(known))
        if unknown:
            parser.error(f"--variants: unknown sampler(s) {unknown}; known: {sorted(known)}")
        variants = {name: known[name] for name in [REFERENCE, *args.variants]}
    distill = args.distill or any(variant.weights == "student.pt" for variant in variants.values())
    preset = args.preset or DEMO_PRESET
    settings = yaml.safe_load((BUNDLE / "configs" / "presets" / f"{preset}.yaml").read_text())
    common = {
        "variants": variants,
        "label_maps": args.label_maps,
        "generation_seeds": args.generation_seeds,
        "downstream_seeds": args.downstream_seeds,
        "seg_steps": args.seg_steps,
        "seg_batch": args.seg_batch,
    }
    results = {} if args.skip_speed else {"speed": speed(args.batch)}
    workdir = Path(args.workdir)
    for name in args.phantom:
        start = time.perf_counter()
        checkpoint, camus, test = phantom_dataset(
            name, workdir, preset, args.generator_epochs, args.distill_epochs if distill else None
        )
        results[name] = quality(
            checkpoint, camus, test, settings, cache=workdir / name / "generated", title=f" ({name} phantom)", **common
        )
        print(f"{name} phantom: {time.perf_counter() - start:.0f} s", flush=True)
    if args.checkpoint:
        if not (args.camus and args.test_camus):
            parser.error("--checkpoint needs --camus (label maps) and --test-camus (real test images)")
        results["own"] = quality(args.checkpoint, args.camus, args.test_camus, settings, **common)
    if args.json:
        from echo_monai.data.atomic import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
