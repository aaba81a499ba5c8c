"""The pieces of the downstream report: intensity statistics per structure and the readings of distribution metrics."""

from __future__ import annotations

import torch

from echo_monai.apps.segmentation_utility import distribution_readings, intensity_statistics


def _sample(value_inside: float, value_outside: float) -> dict:
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[:, 2:6, 2:6] = 1
    label[:, 3:5, 3:5] = 2
    image = torch.full((1, 8, 8), value_inside)
    image[:, :, :2] = value_outside  # the left columns: outside the sector
    image[label == 2] = 0.5
    return {"image": image, "label": label}


def test_intensity_per_structure_and_outside_the_sector():
    real = [_sample(0.0, -1.0) for _ in range(4)]
    synthetic = [_sample(0.0, -0.2) for _ in range(3)]
    stats = intensity_statistics(real, synthetic)
    assert stats["outside_sector_pixels"] == 16  # 2 columns x 8 rows black in every real image
    assert stats["real"]["outside_sector_mean"] == 0.0
    assert abs(stats["synthetic"]["outside_sector_mean"] - 0.8 * 127.5) < 1e-3
    assert abs(stats["real"]["myocardium_mean"] - 1.5 * 127.5) < 1e-3
    assert stats["real"]["myocardium_vs_cavity_contrast"] > 0


def test_readings_compare_with_the_real_vs_real_value():
    readings = distribution_readings(
        {"FD_enc": 40.0, "KD_enc": 0.2, "precision_enc": 0.1, "KD_enc_std": 0.0, "diversity_enc_real": 1.0},
        {"FD_enc": 10.0, "KD_enc": -0.01, "precision_enc": 0.8},
    )
    assert readings["FD_enc"].endswith("(4.0x real vs real)") and "Frechet" in readings["FD_enc"]
    assert readings["KD_enc"].endswith("(real vs real is about 0)")
    assert readings["precision_enc"].endswith("(below real vs real)")
    assert set(readings) == {"FD_enc", "KD_enc", "precision_enc"}


def test_paired_grid_puts_the_real_image_of_each_source_label_map_below_its_synthetic(tmp_path):
    """Column 0 comes from patient0002's 4CH ED label map: its bottom tile is that real image; an unknown source
    is blank."""
    from echo_monai.apps.segmentation_utility import _paired_grid, camus_samples
    from echo_monai.apps.simulate import simulate
    from echo_monai.data import CAMUS

    root = simulate("camus", tmp_path / "camus", n=3, seed=0)
    real = CAMUS(root, ("4CH",), ("ED",))
    samples = camus_samples(real, 16)
    sources = [("patient0002c01", "4CH", "ED"), ("nobody", "4CH", "ED")]
    grid = _paired_grid(samples[:2], sources, root, ("4CH",), ("ED",), tile=16)
    assert grid.shape == (3 * 18 + 2, 2 * 18 + 2)
    index = real.item_keys().index(("patient0002", "4CH", "ED"))
    expected = ((samples[index]["image"][0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    bottom = slice(2 + 2 * 18, 2 + 2 * 18 + 16)
    assert (grid[bottom, 2:18] == expected).all()
    assert (grid[bottom, 20:36] == 0).all()
