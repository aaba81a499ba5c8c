"""echo_motion_video speed on CPU (or a GPU when one is there), in one run, each figure a ratio against its baseline.

The bundle's default networks (112 px frames, 64-frame clips), untrained weights (speed does not depend on them):

1. MAFE training: triplets/s of one optimisation step (forward, the three loss terms, backward) at batch 8, and the
   pseudo-flow labels' cost (OpenCV Farneback on the pair) per triplet, as its share of a step;
2. motion-feature extraction: videos/s of ``motion_tokens`` over a 64-frame clip (63 frame pairs);
3. a 64-frame 112 px video at the default 32 DPM-Solver++ steps vs the paper's 128 DDPM steps: seconds per video and
   the ratio (128-step time measured as the per-step cost times 128; decoding included in both).

    python benchmarks/motion_video_speed.py
    python benchmarks/motion_video_speed.py --frames 32 --steps 32 --paper-steps 128 --json speed.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from timing import best_time

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "echo_motion_video"


def bundle_parser(device: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    parser.update({"bundle_root": str(BUNDLE), "device": f"$torch.device('{device}')", **overrides})
    return parser


def main(argv: list[str] | None = None) -> dict:
    from echo_monai.engines import Condition, FrameTripletPrepareBatch, MAFELoss
    from echo_monai.transforms import PseudoFlowd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--paper-steps", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="MAFE triplets per step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = bundle_parser(args.device, num_frames=args.frames, num_inference_steps=args.steps)
    size = int(config.get_parsed_content("image_size"))
    mafe = config.get_parsed_content("mafe").train()
    reid = config.get_parsed_content("reid_network")
    loss = MAFELoss(reid_network=reid)
    optimizer = torch.optim.AdamW(mafe.parameters(), lr=1e-4)
    frames = torch.rand(args.batch, 3, 1, size, size) * 2 - 1
    flows = PseudoFlowd()
    batch = {"frame_a": frames[:, 0], "frame_mid": frames[:, 1], "frame_b": frames[:, 2]}
    batch["pseudo_flow"] = torch.stack(
        [flows({"frame_a": frames[i, 0], "frame_b": frames[i, 2]})["pseudo_flow"] for i in range(args.batch)]
    )
    prepare = FrameTripletPrepareBatch()
    inputs, targets, _, _ = prepare(batch, torch.device(args.device))

    def mafe_step():
        optimizer.zero_grad()
        value = loss(mafe(inputs), targets)
        value.backward()
        optimizer.step()

    step = best_time(mafe_step, args.device)
    flow_s = best_time(lambda: flows({"frame_a": frames[0, 0], "frame_b": frames[0, 2]}), "cpu", repeats=3)
    mafe.eval()
    clip = torch.rand(1, 1, args.frames, size, size).to(args.device) * 2 - 1
    with torch.no_grad():
        extraction = best_time(lambda: mafe.motion_tokens(clip, 1), args.device)
    # the video model: per-step cost, then default steps vs the paper's
    network = config.get_parsed_content("network").eval()
    autoencoder = config.get_parsed_content("autoencoder").eval()
    sampler = config.get_parsed_content("sampler")
    shape = (1, int(config.get_parsed_content("latent_channels")), args.frames,
             int(config.get_parsed_content("latent_size")), int(config.get_parsed_content("latent_size")))  # fmt: skip
    noise = torch.randn(shape).to(args.device)
    motion = torch.randn(1, 1, int(config.get_parsed_content("motion_dim"))).to(args.device)
    condition = Condition(kwargs={"context": motion}, concat=[torch.randn(1, shape[1], *shape[3:]).to(args.device)])
    with torch.no_grad():
        sampling = best_time(lambda: sampler(noise, network, condition=condition, clip=False), args.device, repeats=1)
        decoding = best_time(lambda: autoencoder.decode(noise[0].transpose(0, 1)), args.device, repeats=1)
    per_step = sampling / args.steps
    default_s, paper_s = sampling + decoding, per_step * args.paper_steps + decoding
    result = {
        "device": args.device,
        "mafe_triplets_per_s": round(args.batch / step, 2),
        "pseudo_flow_share_of_a_step": round(flow_s * args.batch / (step + flow_s * args.batch), 3),
        "feature_extraction_videos_per_s": round(1.0 / extraction, 3),
        "video_s_default_steps": round(default_s, 1),
        "video_s_paper_steps": round(paper_s, 1),
        "paper_over_default": round(paper_s / default_s, 2),
    }
    threads = torch.get_num_threads()
    print(f"echo_motion_video speed ({args.device}, {threads} threads, {size} px, {args.frames} frames)")
    print(
        f"  MAFE training: {result['mafe_triplets_per_s']} triplets/s (batch {args.batch}); Farneback pseudo flow "
        f"{1000 * flow_s:.1f} ms per pair = {100 * result['pseudo_flow_share_of_a_step']:.0f} % of a step with it"
    )
    print(f"  motion features: {result['feature_extraction_videos_per_s']} videos/s ({args.frames - 1} pairs each)")
    print(f"  one video: {result['video_s_default_steps']} s at {args.steps} DPM-Solver++ steps vs "
          f"{result['video_s_paper_steps']} s at the paper's {args.paper_steps} DDPM steps "
          f"({result['paper_over_default']}x; decoding {decoding:.1f} s in both)")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
