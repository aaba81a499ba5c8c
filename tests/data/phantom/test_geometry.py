from __future__ import annotations

import math

import numpy as np
import pytest

from echo_monai.data.phantom.geometry import ProbeGeometry


def test_sector_mask_apex_at_top_centre_and_corners_outside():
    geometry = ProbeGeometry((32, 40), depth_mm=100.0, half_angle_deg=40.0)
    mask = geometry.sector_mask
    assert mask.shape == (32, 40) and mask.dtype == np.uint8
    assert mask[1, 19] == 1 and mask[1, 20] == 1
    assert mask[0, 0] == 0 and mask[0, -1] == 0 and mask[-1, 0] == 0 and mask[-1, -1] == 0
    np.testing.assert_array_equal(mask, mask[:, ::-1])  # symmetric about the centre line


def test_pixel_spacing_and_beam_shape():
    geometry = ProbeGeometry((20, 30), depth_mm=60.0, axial_oversampling=1.5, lateral_oversampling=1.0)
    assert geometry.pixel_spacing == pytest.approx(3.0)
    assert geometry.beam_shape == (30, 30)
    x, z = geometry.pixel_coordinates()
    assert x.shape == (20, 30) and z[0, 0] == pytest.approx(1.5) and x[0, 0] == pytest.approx(-43.5)
    col, row = geometry.to_pixels(x, z)
    np.testing.assert_allclose(col[0], np.arange(30), atol=1e-5)
    np.testing.assert_allclose(row[:, 0], np.arange(20), atol=1e-5)


def test_scan_conversion_maps_invert_beam_coordinates():
    geometry = ProbeGeometry((48, 48), depth_mm=120.0, half_angle_deg=35.0)
    map_beam, map_sample = geometry.scan_conversion_maps()
    x, z = geometry.pixel_coordinates()
    inside = geometry.sector_mask.astype(bool)
    radius = np.hypot(x, z)[inside]
    theta = np.arctan2(x, z)[inside]
    np.testing.assert_allclose((map_sample[inside] + 0.5) * geometry.sample_spacing, radius, rtol=1e-4, atol=1e-3)
    expected = (map_beam[inside] + 0.5) * geometry.beam_step - math.radians(35.0)
    np.testing.assert_allclose(expected, theta, atol=1e-4)
    assert np.all(map_beam[~inside] < 0)


def test_linear_probe_covers_the_whole_image():
    geometry = ProbeGeometry((16, 24), depth_mm=40.0, kind="linear")
    assert geometry.sector_mask.all()
    bx, bz = geometry.beam_coordinates()
    assert bx.shape == geometry.beam_shape and np.allclose(bz[:, 0], bz[:, -1])


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"image_size": (2, 2), "depth_mm": 10.0}, "image_size"),
        ({"image_size": (16, 16), "depth_mm": 0.0}, "depth_mm"),
        ({"image_size": (16, 16), "depth_mm": 10.0, "kind": "convex"}, "kind"),
        ({"image_size": (16, 16), "depth_mm": 10.0, "half_angle_deg": 95.0}, "half_angle_deg"),
        ({"image_size": (16, 16), "depth_mm": 10.0, "axial_oversampling": 0.0}, "oversampling"),
    ],
)
def test_invalid_arguments_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ProbeGeometry(**kwargs)
