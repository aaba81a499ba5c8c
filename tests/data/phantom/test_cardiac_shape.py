from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from echo_monai.data.phantom.cardiac_shape import CardiacParameters


def test_volumes_hit_edv_and_esv_exactly_on_frames():
    params = CardiacParameters(edv_ml=120.0, esv_ml=50.0, heart_rate_bpm=72.0, fps=47.0, ed_offset_frames=2)
    ed, es = params.ed_offset_frames, params.ed_offset_frames + params.systole_frames
    assert params.volume(ed) == pytest.approx(120.0, abs=1e-9)
    assert params.volume(es) == pytest.approx(50.0, abs=1e-9)
    volumes = params.volume(np.linspace(0, 200, 2001))
    assert volumes.min() >= 50.0 - 1e-9 and volumes.max() <= 120.0 + 1e-9
    assert params.ejection_fraction == pytest.approx(100.0 * 70.0 / 120.0)


def test_shape_volume_is_the_prescribed_volume():
    params = CardiacParameters(taper=0.64)
    shape_factor, _ = quad(lambda x: 1.0 - ((x - 0.64) / 0.64) ** 2, 0.0, 1.0)
    assert params.shape_factor == pytest.approx(shape_factor, rel=1e-9)
    for volume in (params.esv_ml, 80.0, params.edv_ml):
        shape = params.shape(volume)
        cavity, _ = quad(lambda a, s=shape: math.pi * float(s.inner_half_width(np.array(a))) ** 2, 0.0, shape.length)
        assert cavity / 1000.0 == pytest.approx(volume, rel=1e-6)
    assert params.shape(params.esv_ml).wall > params.shape(params.edv_ml).wall  # systolic thickening


def test_sample_is_deterministic_and_fits_the_sector():
    first = CardiacParameters.sample(np.random.default_rng(5), view="2CH")
    second = CardiacParameters.sample(np.random.default_rng(5), view="2CH")
    assert first == second
    for seed in range(10):
        params = CardiacParameters.sample(np.random.default_rng(seed), pediatric=seed % 2 == 0)
        assert params.fits_sector()
        assert 20.0 <= params.ejection_fraction <= 75.0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"view": "PLAX"}, "view"),
        ({"edv_ml": 50.0, "esv_ml": 60.0}, "esv_ml"),
        ({"taper": 0.95}, "taper"),
        ({"fps": 0.0}, "fps"),
        ({"systole_fraction": 0.9}, "systole_fraction"),
    ],
)
def test_invalid_parameters_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CardiacParameters(**kwargs)
