"""us_image_to_video speed on CPU (or a GPU when one is there), in one run, each figure a ratio against its baseline.

A 16-frame 112 px clip (the bundle's default size), untrained weights (speed does not depend on them), for the
``tiny`` preset's networks at 112 px and the default networks:

1. videos/s end to end (stage-2 sampling with classifier-free guidance + decoding), and the split between the
   two: seconds of sampling and of decoding per video, decoding's share of the total;
2. guidance as one doubled batch (the sampler's path) against guidance 1 (no guidance: half the network work), as
   the ratio of their sampling times;
3. flow matching (Euler) against DDPM (DPM-Solver++, v-prediction) at the same number of steps.

    python benchmarks/image_to_video_speed.py
    python benchmarks/image_to_video_speed.py --batch 4 --steps 16 --presets tiny default --json speed.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml
from timing import best_time

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "us_image_to_video"
NETWORK_KEYS = ("autoencoder_def::", "network_def::")


def bundle_parser(preset: str, image_size: int, num_frames: int, steps: int, device: str, **overrides):
    """The bundle's inference config with a preset's network sizes (not its image size or frame count)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    sizes = {}
    if preset != "default":
        values = yaml.safe_load((BUNDLE / "configs" / "presets" / f"{preset}.yaml").read_text())
        sizes = {k: v for k, v in values.items() if k.startswith(NETWORK_KEYS)}
    settings = {"image_size": image_size, "num_frames": num_frames, "num_inference_steps": steps, **overrides}
    parser.update({**sizes, "bundle_root": str(BUNDLE), "device": f"$torch.device('{device}')", **settings})
    return parser


def measure(preset: str, args: argparse.Namespace, objective: str = "flow", guidance: float = 1.5) -> dict:
    from monai.networks.utils import pixelunshuffle

    from echo_monai.engines import Condition

    parser = bundle_parser(preset, args.image_size, args.num_frames, args.steps, args.device, objective=objective,
                           guidance_scale=guidance)  # fmt: skip
    autoencoder = parser.get_parsed_content("autoencoder").eval()
    network = parser.get_parsed_content("network").eval()
    sampler = parser.get_parsed_content("sampler")
    factor = int(parser.get_parsed_content("factor"))
    shape = [int(s) for s in parser.get_parsed_content("latent_shape")]
    generator = torch.Generator().manual_seed(0)
    frames = (torch.rand(args.batch, 1, args.image_size, args.image_size, generator=generator) * 2 - 1).to(args.device)
    noise = torch.randn(args.batch, *shape, generator=generator).to(args.device)
    condition = Condition(concat=[pixelunshuffle(frames, spatial_dims=2, scale_factor=factor)])
    latents = {}

    @torch.no_grad()
    def sample():
        latents["z"] = sampler(noise, network, condition=condition, clip=False)

    @torch.no_grad()
    def decode():
        autoencoder.decode(latents["z"], first_frame=frames)

    sampling = best_time(sample, args.device)
    decoding = best_time(decode, args.device)
    total = sampling + decoding
    return {
        "preset": preset,
        "objective": objective,
        "guidance": guidance,
        "latent_shape": shape,
        "parameters_M": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
        "videos_per_s": round(args.batch / total, 3),
        "sampling_s_per_video": round(sampling / args.batch, 3),
        "decoding_s_per_video": round(decoding / args.batch, 3),
        "decoding_share": round(decoding / total, 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], help="network sizes: tiny, cpu, default")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    print(f"us_image_to_video speed: {args.num_frames} frames x {args.image_size} px, batch {args.batch}, "
          f"{args.steps} steps, {args.device} ({torch.get_num_threads()} threads)")  # fmt: skip
    for preset in args.presets:
        guided = measure(preset, args)
        plain = measure(preset, args, guidance=1.0)
        ddpm = measure(preset, args, objective="ddpm")
        guided["guidance_cost_vs_none"] = round(guided["sampling_s_per_video"] / plain["sampling_s_per_video"], 2)
        guided["flow_vs_ddpm_sampling"] = round(ddpm["sampling_s_per_video"] / guided["sampling_s_per_video"], 2)
        rows.append(guided)
        print(
            f"  {preset:8s} {guided['parameters_M']:6.2f} M params, latent {guided['latent_shape']}: "
            f"{guided['videos_per_s']:.3f} videos/s (guidance {guided['guidance']}); per video "
            f"{guided['sampling_s_per_video']:.3f} s sampling + {guided['decoding_s_per_video']:.3f} s decoding "
            f"(decoding {100 * guided['decoding_share']:.0f} %); guidance costs {guided['guidance_cost_vs_none']:.2f}x "
            f"no guidance; DDPM (DPM-Solver++) / flow (Euler) sampling time {guided['flow_vs_ddpm_sampling']:.2f}x"
        )
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
