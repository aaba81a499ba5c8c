"""Tiny seeded phantom tasks for the downstream evaluator tests (CPU, seconds)."""

from __future__ import annotations

import math

import torch


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")


def segmentation_samples(count: int, seed: int, size: int = 32) -> list[dict]:
    """Noisy images of a bright cavity (1) in a ring (2) with a separate small blob (3), CAMUS-style labels."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size)
    samples = []
    for _ in range(count):
        cy, cx = torch.randint(10, 16, (2,), generator=generator).float()
        radius = 4 + 2 * torch.rand(1, generator=generator)
        distance = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        label = torch.zeros(size, size, dtype=torch.long)
        label[distance < radius + 2] = 2
        label[distance < radius] = 1
        label[((yy - cy - 10) ** 2 + (xx - cx - 8) ** 2).sqrt() < 3] = 3
        image = label.float() * 0.4 - 0.8 + 0.3 * torch.randn(size, size, generator=generator)
        image[label == 2] += 0.3
        samples.append({"image": image[None], "label": label[None]})
    return samples


def brightness_samples(count: int, seed: int, video: bool = False, size: int = 16) -> list[dict]:
    """Bright (class 1) vs dark (class 0) noise images `(1, H, W)` or videos `(1, 4, H, W)`."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 4, size, size) if video else (1, size, size)
    samples = []
    for _ in range(count):
        label = int(torch.randint(0, 2, (1,), generator=generator))
        x = 0.5 * torch.randn(shape, generator=generator) + (0.5 if label else -0.5)
        samples.append({"video" if video else "image": x, "label": label})
    return samples


def oscillation_samples(count: int, seed: int, frames: int = 8, size: int = 16) -> list[dict]:
    """A disc whose radius oscillates; the target "ejection_fraction" is 100 x its amplitude (20-80 %)."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size)
    distance = ((yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2).sqrt()
    samples = []
    for _ in range(count):
        amplitude = 0.2 + 0.6 * float(torch.rand(1, generator=generator))
        radii = [3 + 3 * amplitude * (1 + math.cos(2 * math.pi * k / frames)) for k in range(frames)]
        video = torch.stack([(distance < r).float() * 1.6 - 0.8 for r in radii])[None]
        video = video + 0.1 * torch.randn(video.shape, generator=generator)
        samples.append({"video": video, "ejection_fraction": 100.0 * amplitude})
    return samples
