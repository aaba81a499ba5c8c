"""Sampler accuracy against network evaluations, on data whose exact denoiser is known: DDPM, DDIM, DPM-Solver++.

Every pixel is an independent Gaussian, x_0 ~ N(mu, s^2), with mu and s varying over the pixels (s from
``--std-min`` to ``--std-max``: a small s stands for fine detail, whose ODE trajectories bend late). Under
x_t = alpha_t x_0 + sigma_t eps the exact noise prediction is

    eps*(x_t, t) = sigma_t (x_t - alpha_t mu) / (alpha_t^2 s^2 + sigma_t^2),

so every error below is the sampler's own (discretisation, and for DDPM the Monte Carlo noise of its steps). The
first row draws from the data distribution itself: the Monte Carlo floor of the moment estimates for that many
samples. All deterministic samplers start from the same noise; computations are in float64.

Columns: NFE (network evaluations per sample), NFE / 1000 (cost relative to DDPM-1000), mean error (largest
|mean - mu| over pixels), std error (mean and largest |std / s - 1| over pixels, in percent) and wall time.

Usage:
    python benchmarks/sampler_accuracy.py --schedule cosine --samples 4000 --size 8 --std-min 0.1 --std-max 0.6
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, Scheduler

from echo_monai.inferers import Sampler
from echo_monai.networks.schedulers import DPMSolverScheduler


class GaussianDenoiser(torch.nn.Module):
    """The exact eps-prediction network for x_0 ~ N(mean, std^2) per pixel under ``scheduler``'s noise schedule."""

    def __init__(self, scheduler: Scheduler, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
        self.mean, self.std = mean, std
        self.calls = 0

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        abar = self.alphas_cumprod[timesteps.long().cpu()].reshape(-1, *[1] * (x.ndim - 1)).to(x)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        return sigma * (x - alpha * self.mean) / (alpha**2 * self.std**2 + sigma**2)


def errors(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[float, float, float]:
    """(largest |mean error|, mean and largest |std / s - 1|) over pixels of samples (N, 1, H, W)."""
    relative = (samples.std(0) / std[0] - 1).abs()
    return (samples.mean(0) - mean[0]).abs().max().item(), relative.mean().item(), relative.max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedule", default="cosine", help="MONAI noise schedule (cosine, linear_beta, ...)")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--size", type=int, default=8, help="frame side: size x size pixels, each its own Gaussian")
    parser.add_argument("--std-min", type=float, default=0.1)
    parser.add_argument("--std-max", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the tensors are small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    T, pixels = args.train_steps, args.size * args.size
    shape = (1, 1, args.size, args.size)
    mean = torch.linspace(-0.5, 0.5, pixels, dtype=torch.float64).reshape(shape)
    std = torch.linspace(args.std_min, args.std_max, pixels, dtype=torch.float64).reshape(shape)
    generator = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(args.samples, *shape[1:], dtype=torch.float64, generator=generator)
    data = mean + std * torch.randn(noise.shape, dtype=torch.float64, generator=generator)

    common = {"schedule": args.schedule, "clip_sample": False}
    runs: list[tuple[str, Scheduler, int]] = [("DDPM-1000 (ancestral)", DDPMScheduler(T, **common), T)]
    runs += [(f"DDIM-{n} (MONAI)", DDIMScheduler(T, **common), n) for n in (10, 20, 50)]
    runs += [
        (f"DPM-Solver++1-{n} (DDIM, quadratic)", DPMSolverScheduler(T, solver_order=1, **common), n) for n in (10, 20)
    ]
    runs += [(f"DPM-Solver++2M-{n}", DPMSolverScheduler(T, solver_order=2, **common), n) for n in (5, 10, 20, 50)]

    print(
        f"schedule={args.schedule} T={T} samples={args.samples} pixels={pixels} "
        f"mu in [-0.5, 0.5], s in [{args.std_min}, {args.std_max}]"
    )
    columns = ("NFE", 5), ("NFE/1000", 9), ("mean err", 9), ("std err mean", 13), ("std err max", 12), ("time s", 7)
    header = f"{'sampler':36s} " + " ".join(f"{name:>{width}s}" for name, width in columns)
    print(header)
    print("-" * len(header))
    mean_err, std_err, std_err_max = errors(data, mean, std)
    print(
        f"{'data (exact samples)':36s} {'-':>5s} {'-':>9s} {mean_err:9.4f} {100 * std_err:12.2f}% "
        f"{100 * std_err_max:11.2f}% {'-':>7s}"
    )
    for name, scheduler, steps in runs:
        network = GaussianDenoiser(scheduler, mean, std)
        sampler = Sampler(scheduler, num_inference_steps=steps, clip_range=None)
        start = time.perf_counter()
        samples = sampler(noise, network, generator=torch.Generator().manual_seed(args.seed + 1))
        seconds = time.perf_counter() - start
        mean_err, std_err, std_err_max = errors(samples, mean, std)
        print(
            f"{name:36s} {network.calls:5d} {network.calls / T:9.3f} {mean_err:9.4f} {100 * std_err:12.2f}% "
            f"{100 * std_err_max:11.2f}% {seconds:7.2f}"
        )


if __name__ == "__main__":
    main()
