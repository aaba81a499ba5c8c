from __future__ import annotations

import numpy as np
import pytest

from echo_monai.data.phantom.breast import BreastParameters, BreastPhantom


def _phantom(label: str, seed: int = 0, size=(64, 80), **overrides) -> BreastPhantom:
    return BreastPhantom(BreastParameters.sample(np.random.default_rng(seed), label, **overrides), size, seed=seed)


def test_still_image_shapes_labels_and_determinism():
    first = _phantom("benign", 1).simulate(1)
    second = _phantom("benign", 1).simulate(1)
    assert first.frames.shape == first.masks.shape == (1, 64, 80)
    assert first.frames.dtype == first.masks.dtype == np.uint8
    assert set(np.unique(first.masks)) == {0, 1}
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert first.boxes.shape == (1, 4) and first.boxes[0, 2] > 0


def test_normal_scan_has_no_lesion():
    video = _phantom("normal", 2).simulate(3)
    assert not video.masks.any() and not video.boxes.any() and video.label == "normal"


def test_benign_is_wider_than_tall_and_malignant_taller_than_wide():
    for seed in range(4):
        benign = _phantom("benign", seed, motion="none").simulate(1)
        malignant = _phantom("malignant", seed, motion="none").simulate(1)
        _x, _y, w, h = benign.boxes[0]
        assert w > h
        half_w, half_h = malignant.parameters.lesions[0][2:]
        assert half_h > half_w
        assert malignant.parameters.spicules[0] and not benign.parameters.spicules[0]


def _posterior_contrast(video) -> float:
    """Mean intensity below the lesion minus beside it, at the same depths."""
    x, y, w, h = video.boxes[0].astype(int)
    image = video.frames[0].astype(float)
    below = image[y + h + 2 :, x + w // 4 : x + 3 * w // 4]
    beside = np.concatenate([image[y + h + 2 :, : max(x - 4, 1)], image[y + h + 2 :, x + w + 4 :]], axis=1)
    return float(below.mean() - beside.mean())


def test_posterior_enhancement_for_benign_and_shadowing_for_malignant():
    kwargs = {
        "motion": "none",
        "lesions": ((0.0, 12.0, 5.0, 4.0),),
        "depth_mm": 40.0,
        "layers_mm": (1.8, 6.0, 30.0, 36.0),
        "harmonics": ((),),
        "spicules": ((),),
    }
    size = (80, 100)
    benign = _phantom("benign", 3, size, lesion_attenuation=0.05, **kwargs).simulate(1)
    malignant = _phantom("malignant", 3, size, lesion_attenuation=3.0, **kwargs).simulate(1)
    assert _posterior_contrast(benign) > 5.0
    assert _posterior_contrast(malignant) < -15.0


def test_two_lesions_are_separate_instances():
    video = _phantom("benign", 4, n_lesions=2, motion="none").simulate(1)
    assert len(video.parameters.lesions) == 2
    assert 2 in np.unique(video.masks) or video.masks.max() == 1  # the second may leave the field of view
    assert video.masks.max() <= 2


@pytest.mark.parametrize("motion", ["sweep", "tilt", "compression"])
def test_probe_motion_moves_the_lesion_and_keeps_speckle(motion):
    amplitude = {"sweep": 8.0, "tilt": 8.0, "compression": 0.15}[motion]
    video = _phantom("benign", 5, motion=motion, motion_amplitude=amplitude).simulate(5)
    assert video.frames.shape == (5, 64, 80)
    assert not np.array_equal(video.masks[0], video.masks[1])
    if motion == "sweep":
        assert video.boxes[-1, 0] < video.boxes[0, 0]  # the probe slides right, the lesion moves left
    if motion == "compression":
        assert video.boxes[2, 3] < video.boxes[0, 3]  # flattened at peak compression
    a, b = video.frames[0].astype(float), video.frames[1].astype(float)
    still = (video.masks[0] == 0) & (video.masks[1] == 0)
    assert np.corrcoef(a[still], b[still])[0, 1] > 0.2


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="label"):
        BreastParameters(label="cyst")
    with pytest.raises(ValueError, match="motion"):
        BreastParameters(motion="spin")
    with pytest.raises(ValueError, match="normal"):
        BreastParameters(label="normal")
    with pytest.raises(ValueError, match="label"):
        BreastParameters.sample(np.random.default_rng(0), "cyst")
    params = BreastParameters.sample(np.random.default_rng(0), "benign")
    with pytest.raises(ValueError, match="image_size"):
        BreastPhantom(params, (8, 8))
    with pytest.raises(ValueError, match="n_frames"):
        BreastPhantom(params, (32, 32)).simulate(0)
