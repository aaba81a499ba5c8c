from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.networks.schedulers import DDIMScheduler
from torch.utils.tensorboard import SummaryWriter

from echo_monai.engines import Conditioning
from echo_monai.handlers import SamplePreviewWriter, make_grid, write_video
from echo_monai.inferers import Sampler


class Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x, timesteps, class_labels=None):
        return x * 0 + self.scale * 0


def test_make_grid_layout_and_range():
    images = torch.stack([torch.full((1, 4, 6), v) for v in (-1.0, 0.0, 1.0)])
    grid = make_grid(images, nrow=2, padding=1)
    assert grid.shape == (2 * 5 + 1, 2 * 7 + 1) and grid.dtype == np.uint8
    assert grid[1, 1] == 0 and grid[1, 8] == 128 and grid[6, 1] == 255
    with pytest.raises(ValueError, match="expected"):
        make_grid(torch.zeros(4, 4))


def test_image_preview_png_and_tensorboard(tmp_path):
    writer = SummaryWriter(tmp_path / "tb")
    preview = SamplePreviewWriter(
        Sampler(DDIMScheduler(10), 2), Constant(), (1, 8, 8), num_samples=4, output_dir=tmp_path, summary_writer=writer
    )
    engine = Engine(lambda e, b: None)
    preview.attach(engine)
    engine.run([0], max_epochs=2)
    writer.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["samples_epoch=1.png", "samples_epoch=2.png"]
    assert any((tmp_path / "tb").iterdir())


def test_conditional_video_preview_gif(tmp_path):
    conditioning = Conditioning({"class_labels": "view"})
    preview = SamplePreviewWriter(
        Sampler(DDIMScheduler(10), 2),
        Constant(),
        (1, 3, 8, 8),
        conditions={"view": torch.tensor([0, 1])},
        conditioning=conditioning,
        output_dir=tmp_path,
    )
    path = preview(type("E", (), {"state": type("S", (), {"epoch": 3})()})())
    frames = imageio.mimread(path)
    assert path.name == "samples_epoch=3.gif" and len(frames) == 3


def test_write_video_mp4_and_errors(tmp_path):
    path = write_video(tmp_path / "v.mp4", np.zeros((4, 16, 16), np.uint8), fps=4)
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(tmp_path / "v.avi", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="sample_shape"):
        SamplePreviewWriter(None, Constant(), (8, 8))
    with pytest.raises(ValueError, match="conditioning"):
        SamplePreviewWriter(None, Constant(), (1, 8, 8), conditions={"view": torch.zeros(1)})
