from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from echo_monai.metrics.figures import bar_chart, sample_grid, scatter_plot, write_png

from .threads import single_thread  # noqa: F401 (autouse fixture)


def test_sample_grid_lays_out_real_over_synthetic():
    real = -torch.ones(3, 1, 16, 16)  # black tiles
    synthetic = torch.ones(2, 1, 4, 16, 16)  # white tiles (videos show their middle frame)
    grid = sample_grid(real, synthetic, gap=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 16 + 6, 80 + 3 * 18 + 2, 3)
    assert grid[2:18, 82:98].max() == 0 and grid[20:36, 82:98].min() == 255


def test_bar_chart_and_scatter_plot_are_rgb_images():
    chart = bar_chart({"real": 0.9, "synthetic": -0.2, "missing": float("nan")}, "dice")
    assert chart.dtype == np.uint8 and chart.ndim == 3 and chart.shape[1] == 480
    plot = scatter_plot([10, 50, 80], [12, 45, 90], "EF", identity_line=False)
    assert plot.dtype == np.uint8 and (plot != 255).any()


def test_write_png_round_trips(tmp_path):
    image = np.zeros((5, 7, 3), np.uint8)
    image[..., 0] = 200  # red
    path = write_png(tmp_path / "x.png", image)
    assert cv2.imread(path)[0, 0].tolist() == [0, 0, 200]  # OpenCV reads BGR
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_figures_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="share \\(H, W\\)"):
        sample_grid(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 9, 9))
    with pytest.raises(ValueError, match="must be \\(N, C, H, W\\)"):
        sample_grid(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="at least one entry"):
        bar_chart({})
    with pytest.raises(ValueError, match="equally long"):
        scatter_plot([1, 2], [1])
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "y.png", np.zeros((4, 4), np.float32))


def test_write_png_reports_an_encoder_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "imencode", lambda *args: (False, None))
    with pytest.raises(ValueError, match="could not encode"):
        write_png(tmp_path / "z.png", np.zeros((4, 4), np.uint8))
