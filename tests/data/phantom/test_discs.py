from __future__ import annotations

import math

import numpy as np
import pytest

from echo_monai.data.phantom.discs import (
    disc_diameters,
    ejection_fraction,
    long_axis,
    method_of_discs_volume,
)


def _ellipse(shape=(120, 120), centre=(60.0, 60.0), semi=(40.0, 18.0), angle_deg=25.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    angle = math.radians(angle_deg)
    u = (cols - centre[0]) * math.cos(angle) + (rows - centre[1]) * math.sin(angle)
    v = -(cols - centre[0]) * math.sin(angle) + (rows - centre[1]) * math.cos(angle)
    return ((u / semi[0]) ** 2 + (v / semi[1]) ** 2 <= 1.0).astype(np.uint8)


def test_volume_of_a_prolate_spheroid():
    mask = _ellipse()
    expected = 4.0 / 3.0 * math.pi * 40.0 * 18.0**2 / 1000.0  # pixels^3 / 1000
    assert method_of_discs_volume(mask, n_discs=20, chords_per_disc=4) == pytest.approx(expected, rel=0.03)
    # spacing scales as a cube
    assert method_of_discs_volume(mask, pixel_spacing=2.0) == pytest.approx(8 * method_of_discs_volume(mask), rel=1e-9)


def test_long_axis_follows_the_principal_direction():
    start, end = long_axis(_ellipse(angle_deg=25.0))
    direction = (end - start) / np.hypot(*(end - start))
    assert abs(abs(direction @ np.array([math.cos(math.radians(25)), math.sin(math.radians(25))])) - 1) < 1e-3
    assert np.hypot(*(end - start)) == pytest.approx(80.0, abs=2.0)


def test_disc_diameters_of_a_rectangle_are_its_width():
    mask = np.zeros((40, 40), np.uint8)
    mask[5:35, 10:22] = 1  # 12 wide, 30 tall
    diameters = disc_diameters(mask, np.array([15.5, 4.5]), np.array([15.5, 34.5]), n_discs=10)
    assert diameters.shape == (10, 1)
    np.testing.assert_allclose(diameters[:, 0], 12.0, atol=0.15)


def test_ejection_fraction_formula():
    assert ejection_fraction(100.0, 40.0) == pytest.approx(60.0)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="edv"):
        ejection_fraction(0.0, 1.0)
    with pytest.raises(ValueError, match="foreground"):
        long_axis(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        long_axis(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="n_discs"):
        disc_diameters(np.ones((8, 8)), np.zeros(2), np.ones(2), n_discs=0)
    with pytest.raises(ValueError, match="coincide"):
        disc_diameters(np.ones((8, 8)), np.ones(2), np.ones(2))
