"""Sample previews during training: a PNG grid for images, a GIF or MP4 for videos, and TensorBoard."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import imageio.v2 as imageio
import numpy as np
import torch
from ignite.engine import Engine, Events

from echo_monai.data.atomic import atomic_path, write_png
from echo_monai.engines.conditioning import Condition, Conditioning

__all__ = ["SamplePreviewWriter", "make_grid", "write_video"]


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [-1, 1] into one uint8 ``(H', W')`` (C = 1) or ``(H', W', 3)`` grid."""
    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim != 4:
        raise ValueError(f"make_grid: expected (N, C, H, W), got shape {tuple(x.shape)}.")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    grid = np.zeros((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = x[i]
    return grid[0] if c == 1 else np.moveaxis(grid[:3], 0, -1)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write uint8 frames ``(T, H, W)`` or ``(T, H, W, 3)`` as a GIF or MP4 (by suffix) through a temporary name."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"write_video: {path} must end in .gif or .mp4.")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        else:
            h, w = frames.shape[1:3]
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame[..., ::-1])
            writer.release()
    return path


class SamplePreviewWriter:
    """Generate a fixed, seeded batch of samples every ``interval`` epochs and save them for a look.

    Images ``(B, C, H, W)`` become ``<output_dir>/<prefix>_epoch=N.png``; videos ``(B, C, T, H, W)`` become a GIF
    or MP4 of the frame grids. With a ``summary_writer``, the grid (the first frame grid for videos, plus the
    frames of the first video as a strip) also goes to TensorBoard.

    Args:
        sampler: an :class:`echo_monai.inferers.Sampler` or ``LatentSampler``.
        network: the network to sample from (usually ``EMA.ema_model``).
        sample_shape: ``(C, H, W)`` or ``(C, T, H, W)`` of one sample (latent shape for a ``LatentSampler``).
        num_samples: samples per preview; with ``conditions``, their batch size.
        conditions: a fixed batch dict of conditions (label maps, classes, reference frames...) and the
            ``conditioning`` that places them.
        conditioning: see :class:`echo_monai.engines.Conditioning`.
        output_dir: folder of the preview files.
        interval: epochs between previews.
        video_format: ``"gif"`` or ``"mp4"``.
        fps: video frame rate.
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter`` or None.
        seed: noise seed, the same at every preview so they are comparable.
        prefix: file name prefix.

    Example:
        >>> SamplePreviewWriter(sampler, ema.ema_model, (1, 64, 64), 16, output_dir="runs/previews").attach(trainer)
    """

    def __init__(
        self,
        sampler: Any,
        network: torch.nn.Module,
        sample_shape: tuple[int, ...] | list[int],
        num_samples: int = 16,
        conditions: Mapping[str, Any] | None = None,
        conditioning: Conditioning | None = None,
        output_dir: str | os.PathLike = "previews",
        interval: int = 1,
        video_format: str = "gif",
        fps: float = 8.0,
        summary_writer: Any | None = None,
        seed: int = 0,
        prefix: str = "samples",
    ) -> None:
        if len(sample_shape) not in (3, 4):
            raise ValueError(
                f"SamplePreviewWriter: sample_shape must be (C, H, W) or (C, T, H, W), got {sample_shape}."
            )
        if interval < 1:
            raise ValueError(f"SamplePreviewWriter: interval must be >= 1, got {interval}.")
        if video_format not in ("gif", "mp4"):
            raise ValueError(f"SamplePreviewWriter: video_format must be 'gif' or 'mp4', got '{video_format}'.")
        if conditions is not None and conditioning is None:
            raise ValueError("SamplePreviewWriter: conditions need the conditioning that places them.")
        self.sampler, self.network = sampler, network
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.num_samples = int(num_samples)
        self.conditions, self.conditioning = conditions, conditioning
        self.output_dir = Path(output_dir)
        self.interval, self.video_format, self.fps = int(interval), video_format, float(fps)
        self.summary_writer, self.seed, self.prefix = summary_writer, int(seed), prefix

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    @torch.no_grad()
    def generate(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The preview batch, ``(B, C, H, W)`` or ``(B, C, T, H, W)`` in [-1, 1]."""
        condition = Condition()
        batch = self.num_samples
        if self.conditions is not None:
            condition = self.conditioning.extract(self.conditions, device)  # type: ignore[union-attr]
            tensors = list(condition.kwargs.values()) + condition.concat
            batch = int(tensors[0].shape[0]) if tensors else batch
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((batch, *self.sample_shape), generator=generator).to(device)
        was_training = self.network.training
        self.network.eval()
        try:
            return self.sampler(noise, self.network, condition=condition)
        finally:
            self.network.train(was_training)

    def __call__(self, engine: Engine) -> Path:
        device = next(self.network.parameters()).device
        samples = self.generate(device).float().cpu()
        step = engine.state.epoch
        if samples.ndim == 4:
            grid = make_grid(samples)
            path = write_png(
                self.output_dir / f"{self.prefix}_epoch={step}.png", grid if grid.ndim == 2 else grid[..., ::-1].copy()
            )
            frames_for_tb = None
        else:
            grids = np.stack([make_grid(samples[:, :, t]) for t in range(samples.shape[2])])
            path = write_video(self.output_dir / f"{self.prefix}_epoch={step}.{self.video_format}", grids, self.fps)
            grid = grids[0]
            frames_for_tb = make_grid(samples[0].permute(1, 0, 2, 3), nrow=samples.shape[2])
        if self.summary_writer is not None:
            self.summary_writer.add_image(self.prefix, grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")
            if frames_for_tb is not None:
                fmt = "HW" if frames_for_tb.ndim == 2 else "HWC"
                self.summary_writer.add_image(f"{self.prefix}_frames", frames_for_tb, step, dataformats=fmt)
        return path
