from __future__ import annotations

import numpy as np
import pytest

from echo_monai.data.phantom.bmode import BModeSimulator, _gaussian_kernel
from echo_monai.data.phantom.geometry import ProbeGeometry


@pytest.fixture
def simulator():
    return BModeSimulator(ProbeGeometry((32, 32), depth_mm=80.0), noise_db=-90.0)


def test_render_shape_dtype_and_zero_outside_sector(simulator):
    scatterers = simulator.random_scatterers(np.random.default_rng(0))
    image = simulator.render(scatterers, None, np.random.default_rng(1))
    assert image.shape == (32, 32) and image.dtype == np.uint8
    assert not image[simulator.geometry.sector_mask == 0].any()
    assert image[simulator.geometry.sector_mask == 1].mean() > 20


def test_render_is_deterministic_for_a_seed(simulator):
    first = simulator.render(simulator.random_scatterers(np.random.default_rng(3)), None, np.random.default_rng(4))
    second = simulator.render(simulator.random_scatterers(np.random.default_rng(3)), None, np.random.default_rng(4))
    np.testing.assert_array_equal(first, second)


def test_brighter_scatterers_and_gain_give_brighter_images():
    geometry = ProbeGeometry((32, 32), depth_mm=80.0)
    base = BModeSimulator(geometry, noise_db=-120.0)
    scatterers = base.random_scatterers(np.random.default_rng(0))
    inside = geometry.sector_mask == 1
    weak = base.render(scatterers * 0.1, None, np.random.default_rng(0))[inside].mean()
    strong = base.render(scatterers, None, np.random.default_rng(0))[inside].mean()
    gained = BModeSimulator(geometry, noise_db=-120.0, gain_db=10.0).render(
        scatterers * 0.1, None, np.random.default_rng(0)
    )
    assert strong > weak + 40  # 20 dB on a 55 dB range
    assert gained[inside].mean() > weak + 20


def test_attenuating_band_shadows_what_lies_beneath(simulator):
    rows, beams = simulator.geometry.beam_shape
    attenuation = np.full((rows, beams), 0.5, np.float32)
    attenuation[rows // 4 : rows // 3, beams // 2 :] = 8.0  # strong absorber in the right half
    scatterers = simulator.random_scatterers(np.random.default_rng(0))
    image = simulator.render(scatterers, attenuation, np.random.default_rng(1)).astype(float)
    inside = simulator.geometry.sector_mask == 1
    left = image[20:30, 8:15][inside[20:30, 8:15]]
    right = image[20:30, 17:24][inside[20:30, 17:24]]
    assert right.mean() < left.mean() - 20


def test_gaussian_kernel_has_unit_energy():
    for sigma in (0.1, 0.8, 2.5):
        kernel = _gaussian_kernel(sigma)
        assert np.sum(kernel.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)


def test_speckle_is_fully_developed(simulator):
    # envelope of white complex scatterers is Rayleigh: SNR = mean / std = 1.91 before log compression
    iq = simulator.beamform(simulator.random_scatterers(np.random.default_rng(0)))
    envelope = np.hypot(iq[..., 0], iq[..., 1])[5:-5, 5:-5]
    assert envelope.mean() / envelope.std() == pytest.approx(1.91, rel=0.15)


def test_invalid_arguments_raise(simulator):
    geometry = simulator.geometry
    with pytest.raises(ValueError, match="center_frequency_mhz"):
        BModeSimulator(geometry, center_frequency_mhz=0.0)
    with pytest.raises(ValueError, match="dynamic_range_db"):
        BModeSimulator(geometry, dynamic_range_db=-1.0)
    with pytest.raises(ValueError, match="axial_resolution_mm"):
        BModeSimulator(geometry, axial_resolution_mm=-1.0)
    with pytest.raises(ValueError, match="scatterers"):
        simulator.render(np.zeros((3, 3, 2), np.float32), None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="attenuation"):
        scatterers = simulator.random_scatterers(np.random.default_rng(0))
        simulator.render(scatterers, np.zeros((3, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="amplitude"):
        simulator.random_scatterers(np.random.default_rng(0), np.ones(geometry.beam_shape), count=4)
