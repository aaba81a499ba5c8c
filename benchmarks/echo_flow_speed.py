"""echo_flow: video generation speed (frames/s) of the EF-conditioned latent video model, against DDPM-64.

The video denoiser (``network_def``), the autoencoder (``autoencoder_def``) and the latent sampler (``inferer``) are
built from ``bundles/echo_flow/configs/inference.yaml`` with ``monai.bundle.ConfigParser`` (random weights: speed does
not depend on them), for the bundle's default settings and for a tiny config (the test suite's widths). One video is a
64-frame 112 px clip, i.e. a latent of ``(4, 64, 28, 28)`` with its reference-frame latent on channels and the EF as
one token (guidance scale 1, so one network evaluation (NFE) per step, as in the bundle).

Reported per config: seconds per NFE (``Sampler.predict``, the sampler's own call), seconds to decode the 64 frames
with the ``AutoencoderKL``, the pipeline cost of EchoFlow (25 Euler steps + decoding) and of the EchoNet-Synthetic
setting (same network, 64 NFE + decoding), frames/s of each and their ratio.

On CPU (default, float32) the NFE is measured ``--repeats`` times after one warm-up and the decoder on
``--decode-frames`` frames, and the pipeline cost is extrapolated (NFE x steps + decode x 64 / decode frames): the
sampler does no other work of note. With ``--end-to-end`` (default on CUDA) the whole ``LatentSampler`` call (25 Euler
steps and decoding all 64 frames) is also timed as one wall time, after a warm-up call; this is the figure to hold
against the <= 2 s goal for a 64-frame 112 px video on an H100 in bf16:

    python benchmarks/echo_flow_speed.py                                    # CPU, float32, extrapolated
    python benchmarks/echo_flow_speed.py --device cuda --bf16               # GPU, bf16 autocast, end to end

Measured on x86_64, 2 shared CPU cores (contended: another job's tests and echo_flow_steps.py ran at the same time,
so these are pessimistic), float32, command ``nice -n 15 python benchmarks/echo_flow_speed.py``: default network
(38.85 M) 33.4 s/NFE, decode 89.6 s (8 frames x 8), FM-25 924 s (0.07 frames/s) vs DDPM-64 2226 s, ratio 2.41x;
tiny (0.40 M) 8.8 s/NFE, FM-25 232 s vs DDPM-64 575 s, 2.48x. Not measured on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
from pathlib import Path

import torch
from timing import best_time

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "echo_flow"
NUM_FRAMES = 64
IMAGE_SIZE = 112
FM_STEPS = 25
DDPM_STEPS = 64
CONFIGS = {
    "default": {},
    "tiny": {  # the test suite's widths (keys as in configs/presets/tiny.yaml)
        "network_def::denoiser::channels": [16, 32],
        "network_def::denoiser::attention_levels": [False, True],
        "network_def::denoiser::num_res_blocks": 1,
        "network_def::denoiser::num_head_channels": 16,
        "network_def::denoiser::norm_num_groups": 8,
        "ef_embedding_dim": 16,
        "autoencoder_def::channels": [16, 32, 32],
        "autoencoder_def::num_res_blocks": 1,
        "autoencoder_def::norm_num_groups": 8,
    },
}


def build(overrides: dict, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, object, int, int]:
    """``(network, autoencoder, inferer, latent_channels, latent_size)`` parsed from the bundle's ``inference.yaml``."""
    from monai.bundle import ConfigParser

    from echo_monai.data.latents import LatentScaler

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    parser.update(
        {
            "bundle_root": str(BUNDLE),
            "device": f"$torch.device('{device}')",
            "num_frames": NUM_FRAMES,
            "image_size": IMAGE_SIZE,
            "num_inference_steps": FM_STEPS,
            **overrides,
        }
    )
    network = parser.get_parsed_content("network").eval()
    inferer = parser.get_parsed_content("inferer")
    inferer.scaler = LatentScaler()  # identity normalisation instead of the training cache's (no effect on the time)
    autoencoder = parser.get_parsed_content("autoencoder").eval()
    channels, size = (int(parser.get_parsed_content(k)) for k in ("latent_channels", "latent_size"))
    return network, autoencoder, inferer, channels, size


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    from echo_monai.engines import Condition

    network, autoencoder, inferer, channels, size = build(CONFIGS[name], device)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((1, channels, NUM_FRAMES, size, size), generator=generator).to(device)
    reference = torch.randn((1, channels, size, size), generator=generator).to(device)
    condition = Condition(kwargs={"context": torch.full((1, 1, 1), 55.0, device=device)}, concat=[reference])
    t = torch.tensor(500.0, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    decode_frames = min(args.decode_frames, NUM_FRAMES)
    with torch.no_grad(), autocast:
        nfe = best_time(lambda: inferer.sampler.predict(network, noise, t, condition), device, args.repeats)
        decode_part = best_time(lambda: inferer.decode(noise[:, :, :decode_frames]), device, args.repeats)
        end_to_end = None
        if args.end_to_end:
            end_to_end = best_time(lambda: inferer(noise, network, condition=condition), device, args.repeats)
    decode = decode_part * NUM_FRAMES / decode_frames
    flow = FM_STEPS * nfe + decode
    ddpm = DDPM_STEPS * nfe + decode
    return {
        "network_parameters_m": sum(p.numel() for p in network.parameters()) / 1e6,
        "autoencoder_parameters_m": sum(p.numel() for p in autoencoder.parameters()) / 1e6,
        "seconds_per_nfe": nfe,
        "seconds_decode_64_frames": decode,
        "decode_frames_measured": decode_frames,
        "seconds_flow_matching_25": flow,
        "seconds_ddpm_64": ddpm,
        "frames_per_s_flow_matching_25": NUM_FRAMES / flow,
        "frames_per_s_ddpm_64": NUM_FRAMES / ddpm,
        "speedup_vs_ddpm_64": ddpm / flow,
        "seconds_end_to_end_flow_matching_25": end_to_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU); default float32")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up (CPU 1, GPU 5)")
    parser.add_argument("--decode-frames", type=int, default=None, help="frames decoded and timed (CPU 8, GPU 64)")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=None, help="default: on GPU")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.repeats = args.repeats if args.repeats is not None else (5 if gpu else 1)
    args.decode_frames = args.decode_frames if args.decode_frames is not None else (NUM_FRAMES if gpu else 8)
    args.end_to_end = args.end_to_end if args.end_to_end is not None else gpu
    hardware = (
        torch.cuda.get_device_name(device)
        if gpu
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), {torch.get_num_threads()} threads"
    )
    dtype = "bf16 autocast" if args.bf16 else "float32"
    print(f"device: {hardware}; torch {torch.__version__}; {dtype}")
    print(
        f"one video: {NUM_FRAMES} frames of {IMAGE_SIZE} px (latent 4x{NUM_FRAMES}x28x28), batch 1, guidance 1; "
        f"best of {args.repeats} after a warm-up; decoding timed on {args.decode_frames} frames"
        + ("" if args.decode_frames == NUM_FRAMES else f" and scaled to {NUM_FRAMES}")
    )
    results = {}
    header = (
        f"{'config':<9}{'params M':>9}{'s/NFE':>9}{'decode s':>10}{'FM-25 s':>10}{'FM fr/s':>9}"
        f"{'DDPM-64 s':>11}{'DDPM fr/s':>11}{'ratio':>7}"
    )
    rows = []
    for name in args.configs:
        r = measure(name, args, device)
        results[name] = r
        print(f"{name}: done ({r['seconds_per_nfe']:.2f} s/NFE)", flush=True)
        rows.append(
            f"{name:<9}{r['network_parameters_m']:>9.2f}{r['seconds_per_nfe']:>9.3f}{r['seconds_decode_64_frames']:>10.2f}"
            f"{r['seconds_flow_matching_25']:>10.2f}{r['frames_per_s_flow_matching_25']:>9.2f}"
            f"{r['seconds_ddpm_64']:>11.2f}{r['frames_per_s_ddpm_64']:>11.2f}{r['speedup_vs_ddpm_64']:>6.2f}x"
        )
    print(header)
    print("\n".join(rows))
    print(
        f"FM-25 = {FM_STEPS} Euler steps + decoding {NUM_FRAMES} frames; DDPM-64 = {DDPM_STEPS} NFE + the same "
        "decoding (EchoNet-Synthetic setting); ratio = DDPM-64 s / FM-25 s. Pipeline times are NFE x steps + decode "
        "(no other sampler work of note)."
    )
    for name, r in results.items():
        if r["seconds_end_to_end_flow_matching_25"] is not None:
            seconds = r["seconds_end_to_end_flow_matching_25"]
            goal = f" (goal <= 2 s on an H100: {'met' if seconds <= 2.0 else 'missed'})" if name == "default" else ""
            print(f"{name}: measured end to end (LatentSampler, 25 Euler steps + decoding): {seconds:.2f} s{goal}")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "hardware": hardware, "results": results}, indent=1))


if __name__ == "__main__":
    main()
