"""One speed suite for the bundles' denoisers: JSON and a Markdown table, on the CPU or one GPU.

Per case (a bundle's denoiser built from its ``configs/inference.yaml`` with ``monai.bundle.ConfigParser``, random
weights: speed does not depend on them):

- training it/s: MONAI's ``SupervisedTrainer`` with the bundle's objective (``DDPMPrepareBatch`` /
  ``FlowMatchingPrepareBatch``) over a ``DataLoader`` of random items, after warm-up iterations; the fraction of the
  iteration time spent waiting on data, from Ignite's ``GET_BATCH_STARTED`` / ``GET_BATCH_COMPLETED`` events;
- achieved GFLOP/s of training (the FLOPs of one training step counted by ``torch.utils.flop_counter`` x it/s) and
  its fraction of this machine's measured matmul peak (MFU; the peak is the best of large ``torch.mm`` calls in the
  training dtype);
- peak memory of a training step (CUDA: ``max_memory_allocated``; CPU: Linux's resident-set peak above the size before);
- samples/s (frames/s for video) at the bundle's default sampler and at the seed paper's own setting, and their
  ratio (``nfe x`` the measured time per network evaluation; decoding included for the latent video);
- for the pixel DDPM, the ratio of our denoiser's time per evaluation to diffusers' ``UNet2DModel`` (the peer
  implementation of DiffEcho's pixel model) at matched widths, when ``diffusers`` is installed (optional).

Cases: ``seg_ddpm`` (echo_seg_ddpm), ``flow_video`` (echo_flow's video model), and the latent bundles, each from its
``inference.yaml`` + ``train.yaml`` with its own objective: ``text_controlnet`` (echo_text_controlnet's text UNet,
DDPM objective, DPM-Solver++ with guidance 3 as one doubled batch), ``image_to_video`` (us_image_to_video's stage 2,
flow matching, guidance 1.5, LDDM's first-frame decoder) and ``motion_video`` (echo_motion_video's MCDM UNet, DDPM
v-prediction, against MCDM's 128 DDPM steps). For DiffEcho and LDDM the papers' own sampler settings are not part of
the suite: their seed column is the 1000-step training schedule, and it says so. Each video case also reports the
time of one video in one network evaluation (what a MeanFlow or consistency model would spend), decoding included;
echo_text_controlnet's one step is one plain call (its distilled student has the guidance in its weights).

Profiles: ``toy`` (tiny networks, 32 px, 4 frames: the test suite runs it), ``full`` (the bundles' default networks:
112 px images, a 64-frame 112 px video), and ``--gpu`` = ``full`` on ``cuda`` in bf16 autocast, sized to finish in
well under 8 minutes on one GPU, with the one-step (1 NFE) video time next to the default's:

    python benchmarks/suite.py --profile toy --out suite_toy          # seconds, CPU
    python benchmarks/suite.py --profile full --out suite_cpu         # the default networks on the CPU (slow)
    python benchmarks/suite.py --gpu --out suite_gpu                  # one GPU

Measured (2026-12-03, x86_64, 1 CPU thread (``OMP_NUM_THREADS=1``) while the test suite ran on the other core,
``python benchmarks/suite.py --profile full --cases seg_ddpm --out suite_full_seg``, 558 s): echo_seg_ddpm at 112 px
(41.4 M parameters, batch 8): 0.024 training it/s, 2861 GFLOP a step, 69.8 GFLOP/s = 48 % of the measured 144 GFLOP/s
matmul peak, 0.1 % of the time waiting on data, 6.5 GiB peak; 8.66 s per evaluation, so 0.092 images/s at DPM-Solver++
10 against 0.0009 at the paper's DDPM-1000 (100x). diffusers' ``UNet2DModel`` at the same widths took 3.97 s per
evaluation (0.46x ours), but it is not a matched network: it has no SPADE (26.6 M parameters against 41.4 M), so the
ratio overstates the gap. No GPU was lent: the ``--gpu`` figures are not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo_flow_speed import CONFIGS as FLOW_CONFIGS  # noqa: E402
from timing import best_time  # noqa: E402

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
PROFILES = {
    "toy": {
        "image_size": 32,
        "frames": 4,
        "batch": 2,
        "train_iterations": 3,
        "repeats": 1,
        "seg": {
            "channels": [8, 16],
            "attention_levels": [False, False],
            "num_res_blocks": 1,
            "num_head_channels": 8,
            "norm_num_groups": 8,
            "spade_hidden_channels": 8,
        },
        "flow": FLOW_CONFIGS["tiny"],
        "tiny_presets": True,
    },
    "full": {
        "image_size": 112,
        "frames": 64,
        "batch": 8,
        "train_iterations": 10,
        "repeats": 3,
        "seg": {},
        "flow": {},
        "tiny_presets": False,
    },
}


def _parser(bundle: str, overrides: dict, device: torch.device):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(BUNDLES / bundle), "device": f"$torch.device('{device}')", **overrides})
    return parser


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """The best GFLOP/s of ``size`` x ``size`` matmuls in ``dtype``: this machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = best_time(lambda: torch.mm(a, b), device, repeats=5)
    return 2 * size**3 / seconds / 1e9


def _flops(function) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return float(counter.get_total_flops())


def _resident_kib(key: str) -> int | None:
    try:
        return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def peak_memory(device: torch.device, result: dict):
    """``result["peak_memory_mib"]``: the peak of the block above what was allocated (resident) before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield
        torch.cuda.synchronize(device)
        result["peak_memory_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size (Linux)
        base = _resident_kib("VmRSS")
    except OSError:
        base = None
    yield
    peak = _resident_kib("VmHWM")
    result["peak_memory_mib"] = None if base is None or peak is None else (peak - base) / 1024


def train_speed(network, prepare_batch, items: list[dict], batch: int, iterations: int, device, autocast) -> dict:
    """it/s, data-wait fraction, GFLOP/s and peak memory of MONAI's ``SupervisedTrainer`` on ``items``."""
    from ignite.engine import Events
    from monai.data import DataLoader
    from monai.engines import SupervisedTrainer

    loader = DataLoader(items, batch_size=batch, shuffle=False, num_workers=0)
    optimizer = torch.optim.AdamW(network.parameters(), 1e-4)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
        prepare_batch=prepare_batch,
        amp=autocast and device.type == "cuda",  # MONAI autocasts on CUDA only
        amp_kwargs={"dtype": torch.bfloat16} if autocast else None,
        decollate=False,
    )
    marks: dict[str, list[float]] = {"get_start": [], "get_end": [], "iteration_end": []}

    def mark(name):
        def handler(_):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks[name].append(time.perf_counter())

        return handler

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("get_start"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, mark("get_end"))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark("iteration_end"))
    result: dict = {}
    with peak_memory(device, result):
        trainer.run()
    warm = 1  # the first iteration (allocations, cuDNN autotuning) is left out
    starts, ends, done = marks["get_start"][warm:], marks["get_end"][warm:], marks["iteration_end"]
    total = done[-1] - done[warm - 1]
    data = sum(e - s for s, e in zip(starts, ends, strict=False))
    steps = len(done) - warm
    first = next(iter(loader))
    inputs, target, args, kwargs = prepare_batch(first, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.mse_loss(network(inputs, *args, **kwargs).float(), target)
        loss.backward()

    flops = _flops(step)
    network.zero_grad(set_to_none=True)
    return {
        "iterations_per_s": steps / total,
        "data_wait_fraction": data / total,
        "train_step_gflop": flops / 1e9,
        "train_gflops_per_s": flops * steps / total / 1e9,
        **result,
    }


def seg_ddpm_case(profile: dict, device: torch.device, autocast: bool, peer: bool) -> dict:
    """echo_seg_ddpm's SPADE DDPM: training, images/s at the default sampler (DPM-Solver++ 2M, 10) vs DDPM-1000."""
    from echo_monai.engines import DDPMPrepareBatch

    size, batch = profile["image_size"], profile["batch"]
    parser = _parser("echo_seg_ddpm", {"image_size": size, **profile["seg"]}, device)
    network = parser.get_parsed_content("network")
    classes = int(parser.get_parsed_content("num_classes"))
    generator = torch.Generator().manual_seed(0)

    def item():
        seg = torch.nn.functional.one_hot(torch.randint(0, classes, (size, size), generator=generator), classes)
        return {
            "image": torch.rand(1, size, size, generator=generator) * 2 - 1,
            "label_map": seg.permute(2, 0, 1).float(),
        }

    items = [item() for _ in range(batch * (profile["train_iterations"] + 1))]
    prepare = DDPMPrepareBatch(parser.get_parsed_content("schedulers#ddpm"), parser.get_parsed_content("conditioning"))
    result = {"case": "echo_seg_ddpm", "resolution": f"{size} px", "parameters_m": _parameters(network)}
    result.update(train_speed(network.train(), prepare, items, batch, profile["train_iterations"], device, autocast))
    network.eval()
    x = torch.randn(batch, 1, size, size, device=device)
    seg = torch.stack([item()["label_map"] for _ in range(batch)]).to(device)
    t = torch.full((batch,), 500, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        nfe_seconds = best_time(lambda: network(x, timesteps=t, seg=seg), device, profile["repeats"])
        if peer:
            result["peer"] = _diffusers_ratio(parser, x, t, nfe_seconds, device, profile["repeats"])
    default, seed = 10, 1000
    result.update(
        {
            "seconds_per_nfe": nfe_seconds,
            "default_setting": f"DPM-Solver++ 2M, {default} NFE",
            "seed_setting": f"DDPM, {seed} NFE",
            "samples_per_s_default": batch / (default * nfe_seconds),
            "samples_per_s_seed": batch / (seed * nfe_seconds),
            "speedup_vs_seed": seed / default,
        }
    )
    return result


def _diffusers_ratio(parser, x, t, ours: float, device, repeats: int) -> dict:
    """diffusers' ``UNet2DModel`` with our widths, blocks and attention levels: its time per evaluation / ours."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        return {"status": "diffusers not installed (pip install diffusers): no peer ratio"}
    channels = [int(c) for c in parser.get_parsed_content("channels")]
    attention = [bool(a) for a in parser.get_parsed_content("attention_levels")]
    peer = (
        UNet2DModel(
            sample_size=x.shape[-1],
            in_channels=1,
            out_channels=1,
            block_out_channels=channels,
            layers_per_block=int(parser.get_parsed_content("num_res_blocks")),
            down_block_types=["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
            up_block_types=["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
            attention_head_dim=int(parser.get_parsed_content("num_head_channels")),
            norm_num_groups=int(parser.get_parsed_content("norm_num_groups")),
        )
        .to(device)
        .eval()
    )
    seconds = best_time(lambda: peer(x, t), device, repeats)
    return {
        "status": "measured",
        "peer": "diffusers UNet2DModel (no SPADE)",
        "peer_seconds_per_nfe": seconds,
        "peer_parameters_m": _parameters(peer),
        "peer_time_over_ours": seconds / ours,
    }


def flow_video_case(profile: dict, device: torch.device, autocast: bool) -> dict:
    """echo_flow's EF-conditioned latent video model: training, one video at the default (Euler, 25 NFE), at one
    step (1 NFE, a MeanFlow-distilled model's budget) and at the EchoNet-Synthetic seed's DDPM-64, decoding included."""
    from echo_monai.data.latents import LatentScaler
    from echo_monai.engines import Condition, FlowMatchingPrepareBatch

    frames, size = profile["frames"], profile["image_size"]
    parser = _parser("echo_flow", {"num_frames": frames, "image_size": size, **profile["flow"]}, device)
    network = parser.get_parsed_content("network")
    inferer = parser.get_parsed_content("inferer")
    inferer.scaler = LatentScaler()
    autoencoder = parser.get_parsed_content("autoencoder")
    channels, latent = (int(parser.get_parsed_content(k)) for k in ("latent_channels", "latent_size"))
    conditioning = parser.get_parsed_content("conditioning")
    generator = torch.Generator().manual_seed(0)
    batch = max(1, profile["batch"] // 4)
    items = [
        {
            "latent": torch.randn(channels, frames, latent, latent, generator=generator),
            "reference": torch.randn(channels, latent, latent, generator=generator),
            "ejection_fraction": torch.tensor([55.0]),
        }
        for _ in range(batch * (profile["train_iterations"] + 1))
    ]
    prepare = FlowMatchingPrepareBatch(parser.get_parsed_content("flow_scheduler"), conditioning, image_key="latent")
    result = {
        "case": "echo_flow video",
        "resolution": f"{frames} frames x {size} px",
        "parameters_m": _parameters(network),
        "autoencoder_parameters_m": _parameters(autoencoder),
    }
    result.update(train_speed(network.train(), prepare, items, batch, profile["train_iterations"], device, autocast))
    network.eval()
    noise = torch.randn((1, channels, frames, latent, latent), generator=generator).to(device)
    reference = torch.randn((1, channels, latent, latent), generator=generator).to(device)
    condition = Condition(kwargs={"context": torch.full((1, 1, 1), 55.0, device=device)}, concat=[reference])
    t = torch.tensor(500.0, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        nfe = best_time(lambda: inferer.sampler.predict(network, noise, t, condition), device, profile["repeats"])
        decode = best_time(lambda: inferer.decode(noise), device, profile["repeats"])
    default, seed = int(parser.get_parsed_content("num_inference_steps")), 64
    video = {name: steps * nfe + decode for name, steps in (("default", default), ("one_step", 1), ("seed", seed))}
    result.update(
        {
            "seconds_per_nfe": nfe,
            "seconds_decode": decode,
            "default_setting": f"flow Euler, {default} NFE",
            "seed_setting": f"DDPM, {seed} NFE (EchoNet-Synthetic)",
            **{f"seconds_per_video_{k}": v for k, v in video.items()},
            "frames_per_s_default": frames / video["default"],
            "frames_per_s_one_step": frames / video["one_step"],
            "speedup_vs_seed": video["seed"] / video["default"],
            "speedup_one_step_vs_seed": video["seed"] / video["one_step"],
        }
    )
    return result


def _train_parser(bundle: str, profile: dict, device: torch.device):
    """The bundle's inference + train configs (toy: its ``tiny`` preset's sizes; full: its defaults)."""
    import yaml
    from monai.bundle import ConfigParser

    configs = BUNDLES / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "inference.yaml"), str(configs / "train.yaml")])
    sizes = yaml.safe_load((configs / "presets" / "tiny.yaml").read_text()) if profile["tiny_presets"] else {}
    parser.update({**sizes, "bundle_root": str(BUNDLES / bundle), "device": f"$torch.device('{device}')"})
    return parser


def _text_items(parser, generator: torch.Generator, count: int) -> tuple[list[dict], object]:
    """DiffEcho's latent text UNet: latent images and a prompt's token ids; the DDPM objective of train.yaml."""
    from echo_monai.engines import DDPMPrepareBatch
    from echo_monai.transforms import EchoPrompt

    channels, size = (int(parser.get_parsed_content(k)) for k in ("latent_channels", "latent_size"))
    ids = parser.get_parsed_content("text_encoder").tokenize([EchoPrompt().build("4CH", "ED")])[0]
    latents = [torch.randn(channels, size, size, generator=generator) for _ in range(count)]
    items = [{"latent": latent, "prompt_ids": ids} for latent in latents]
    prepare = DDPMPrepareBatch(
        parser.get_parsed_content("train_scheduler"), parser.get_parsed_content("conditioning"), image_key="latent"
    )
    return items, prepare


def _image_to_video_items(parser, generator: torch.Generator, count: int) -> tuple[list[dict], object]:
    """LDDM's stage 2: latent clips and the seed images' space-to-depth references; the configured objective."""
    shape = [int(s) for s in parser.get_parsed_content("latent_shape")]
    factor, size = int(parser.get_parsed_content("factor")), int(parser.get_parsed_content("latent_size"))
    items = [
        {
            "latent": torch.randn(*shape, generator=generator),
            "reference": torch.randn(factor**2, size, size, generator=generator),
        }
        for _ in range(count)
    ]
    return items, parser.get_parsed_content(f"prepare_batches::{parser.get_parsed_content('objective')}")


def _motion_video_items(parser, generator: torch.Generator, count: int) -> tuple[list[dict], object]:
    """MCDM's latent video UNet: latent clips, their first frames' latents and motion tokens; the objective."""
    shape = [int(s) for s in parser.get_parsed_content("sample_shape")]
    tokens, dim = (int(parser.get_parsed_content(k)) for k in ("num_motion_tokens", "motion_dim"))
    items = [
        {
            "latent": torch.randn(*shape, generator=generator),
            "reference": torch.randn(shape[0], *shape[2:], generator=generator),
            "motion": torch.randn(tokens, dim, generator=generator),
        }
        for _ in range(count)
    ]
    return items, parser.get_parsed_content(f"prepare_batches::{parser.get_parsed_content('objective')}")


# case -> (table name, bundle, training items and objective, the seed paper's sampler: (NFE, description), whether
# the bundle's one-step stage still guides: echo_text_controlnet's distill student has the guidance in its weights
# (one plain call), us_image_to_video's MeanFlow model guides its one call, echo_motion_video samples unguided)
LATENT_CASES = {
    "text_controlnet": ("echo_text_controlnet text", "echo_text_controlnet", _text_items,
                        (1000, "DDPM, 1000 NFE (the training schedule; DiffEcho's own sampler is not benchmarked)"),
                        False),
    "image_to_video": ("us_image_to_video", "us_image_to_video", _image_to_video_items,
                       (1000, "DDPM, 1000 NFE (the training schedule; LDDM's own sampler is not benchmarked)"), True),
    "motion_video": ("echo_motion_video", "echo_motion_video", _motion_video_items, (128, "DDPM, 128 NFE (MCDM)"),
                     True),
}  # fmt: skip


def latent_case(name: str, profile: dict, device: torch.device, autocast: bool) -> dict:
    """A latent bundle's denoiser: training it/s with its objective, samples (frames)/s at its default sampler
    (classifier-free guidance as the sampler runs it, decoding included) vs the seed's setting and one step."""
    from monai.data.utils import list_data_collate

    from echo_monai.data.latents import LatentScaler
    from echo_monai.engines import guided_output

    title, bundle, make_items, (seed_nfe, seed_setting), one_step_guided = LATENT_CASES[name]
    parser = _train_parser(bundle, profile, device)
    network = parser.get_parsed_content("network")
    generator = torch.Generator().manual_seed(0)
    batch = max(1, profile["batch"] // 4) if "video" in name else profile["batch"]
    items, prepare = make_items(parser, generator, batch * (profile["train_iterations"] + 1))
    latent_shape = tuple(items[0]["latent"].shape)
    resolution = f"{int(parser.get_parsed_content('image_size'))} px"
    if len(latent_shape) == 4:
        resolution = f"{int(parser.get_parsed_content('num_frames'))} frames x {resolution}"
    result = {"case": title, "resolution": resolution, "parameters_m": _parameters(network)}
    result.update(train_speed(network.train(), prepare, items, batch, profile["train_iterations"], device, autocast))
    network.eval()
    inferer = parser.get_parsed_content("inferer")
    inferer.scaler = LatentScaler()
    sampler = inferer.sampler
    collated = list_data_collate(items[:batch])
    condition = parser.get_parsed_content("conditioning").extract(collated, device)
    noise = torch.randn((batch, *latent_shape), generator=generator).to(device)
    decoder = {}
    if name == "image_to_video":  # LDDM's decoder takes the seed image
        size = int(parser.get_parsed_content("image_size"))
        decoder["first_frame"] = torch.rand(batch, 1, size, size, generator=generator).to(device) * 2 - 1
    t = torch.tensor(500.0, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        nfe = best_time(lambda: sampler.predict(network, noise, t, condition), device, profile["repeats"])
        decode = best_time(lambda: inferer.decode(noise, **decoder), device, profile["repeats"])
        one_nfe = nfe
        if not one_step_guided and sampler.guidance_scale != 1.0:  # one plain call: the guidance is distilled
            times = t.reshape(1).expand(batch)
            one_nfe = best_time(lambda: guided_output(network, noise, times, condition, sampler.conditioning),
                                device, profile["repeats"])  # fmt: skip
    default = int(parser.get_parsed_content("num_inference_steps"))
    scheduler = type(sampler.scheduler).__name__
    guidance = float(sampler.guidance_scale)
    seconds = {k: steps * nfe + decode for k, steps in (("default", default), ("seed", seed_nfe))}
    seconds["one_step"] = one_nfe + decode
    unit = "frames" if len(latent_shape) == 4 else "samples"
    count = batch * (int(parser.get_parsed_content("num_frames")) if unit == "frames" else 1)
    result.update(
        {
            "seconds_per_nfe": nfe,
            "seconds_decode": decode,
            "default_setting": f"{scheduler}, {default} NFE, guidance {guidance:g}",
            "seed_setting": seed_setting,
            "one_step_setting": "1 NFE, guided" if one_step_guided and guidance != 1.0 else "1 NFE, unguided",
            f"{unit}_per_s_default": count / seconds["default"],
            f"{unit}_per_s_one_step": count / seconds["one_step"],
            "seconds_per_video_one_step" if unit == "frames" else "seconds_per_batch_one_step": seconds["one_step"],
            "speedup_vs_seed": seconds["seed"] / seconds["default"],
            "speedup_one_step_vs_seed": seconds["seed"] / seconds["one_step"],
            "batch": batch,
        }
    )
    return result


def _parameters(network: torch.nn.Module) -> float:
    return sum(p.numel() for p in network.parameters()) / 1e6


def markdown(results: dict) -> str:
    """The suite's table (one row per case) and the machine it ran on."""
    peak = results["matmul_peak_gflops"]
    lines = [
        f"Device: {results['hardware']}; torch {results['torch']}; {results['dtype']}; profile "
        f"{results['profile']}; matmul peak {peak:.1f} GFLOP/s.",
        "",
        "| case | size | params M | train it/s | data wait | train GFLOP/s | MFU | peak MiB | s/NFE | default "
        "| samples (frames)/s default | seed setting | x vs seed | one-step s/video |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in results["cases"]:
        rate = case.get("samples_per_s_default", case.get("frames_per_s_default"))
        gflops = case.get("train_gflops_per_s")
        memory = case.get("peak_memory_mib")
        cells = [
            case["case"],
            case["resolution"],
            f"{case['parameters_m']:.2f}",
            _fmt(case.get("iterations_per_s"), ".2f"),
            _fmt(case.get("data_wait_fraction"), ".1%"),
            _fmt(gflops, ".1f"),
            _fmt(None if gflops is None else gflops / peak, ".1%"),
            _fmt(memory, ".0f"),
            _fmt(case["seconds_per_nfe"], ".4f"),
            case["default_setting"],
            _fmt(rate, ".3f"),
            case["seed_setting"],
            _fmt(case["speedup_vs_seed"], ".1f"),
            _fmt(case.get("seconds_per_video_one_step"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for case in results["cases"]:
        if "peer" in case:
            peer = case["peer"]
            text = (
                f"{peer['peer']}: {peer['peer_seconds_per_nfe']:.4f} s/NFE, {peer['peer_time_over_ours']:.2f}x ours"
                if peer["status"] == "measured"
                else peer["status"]
            )
            lines.append(f"\n{case['case']} peer: {text}")
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="toy")
    parser.add_argument("--gpu", action="store_true", help="the full profile on cuda in bf16 autocast")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda with --gpu, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default with --gpu)")
    cases = ["seg_ddpm", "flow_video", *LATENT_CASES]
    parser.add_argument("--cases", nargs="+", default=cases, choices=cases)
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the diffusers comparison")
    parser.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    profile_name = "full" if args.gpu else args.profile
    profile = PROFILES[profile_name]
    device = torch.device(args.device or ("cuda" if args.gpu else "cpu"))
    autocast = args.bf16 or args.gpu
    torch.manual_seed(0)
    gpu = device.type == "cuda"
    hardware = (
        torch.cuda.get_device_name(device)
        if gpu
        else (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), {torch.get_num_threads()} threads"
        )
    )
    dtype = torch.bfloat16 if autocast else torch.float32
    results = {
        "hardware": hardware,
        "torch": torch.__version__,
        "dtype": "bf16 autocast" if autocast else "float32",
        "profile": profile_name,
        "matmul_peak_gflops": matmul_peak_gflops(device, dtype, 4096 if gpu else 1024),
        "cases": [],
    }
    start = time.perf_counter()
    for case in args.cases:
        if case == "seg_ddpm":
            results["cases"].append(seg_ddpm_case(profile, device, autocast, args.peer))
        elif case == "flow_video":
            results["cases"].append(flow_video_case(profile, device, autocast))
        else:
            results["cases"].append(latent_case(case, profile, device, autocast))
        print(f"{case}: done at {time.perf_counter() - start:.0f} s", flush=True)
    results["seconds"] = time.perf_counter() - start
    table = markdown(results)
    print(table)
    if args.out:
        from echo_monai.data.atomic import write_json, write_text

        write_json(f"{args.out}.json", results)
        write_text(f"{args.out}.md", table)
    return results


if __name__ == "__main__":
    main()
