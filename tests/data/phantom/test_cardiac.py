from __future__ import annotations

import cv2
import numpy as np
import pytest

from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.discs import ejection_fraction, method_of_discs_volume


def _params(seed: int = 0, **overrides) -> CardiacParameters:
    return CardiacParameters.sample(np.random.default_rng(seed), **overrides)


def _short(params: CardiacParameters) -> int:
    return params.ed_offset_frames + params.systole_frames + 2


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _speckle(frame: np.ndarray) -> np.ndarray:
    frame = frame.astype(np.float32)
    return frame - cv2.GaussianBlur(frame, (0, 0), 2.0)


def _eroded(mask: np.ndarray, iterations: int) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=iterations) > 0


def test_sequence_shapes_dtypes_and_ranges():
    params = _params(1, fps=30.0)
    sequence = CardiacPhantom(params, (48, 40), seed=1).simulate(_short(params))
    frames, labels = sequence.frames, sequence.labels
    assert frames.shape == labels.shape == (_short(params), 48, 40)
    assert frames.dtype == labels.dtype == np.uint8 and sequence.sector_mask.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    outside = sequence.sector_mask == 0
    assert not frames[:, outside].any() and not labels[:, outside].any()
    assert sequence.volumes_ml[sequence.ed_frame] == pytest.approx(params.edv_ml)
    assert sequence.volumes_ml[sequence.es_frame] == pytest.approx(params.esv_ml)
    assert sequence.ejection_fraction == pytest.approx(params.ejection_fraction)
    # the LV cavity shrinks from ED to ES
    assert (labels[sequence.es_frame] == 1).sum() < (labels[sequence.ed_frame] == 1).sum()


def test_simulation_is_deterministic_for_a_seed():
    params = _params(2, fps=30.0)
    first = CardiacPhantom(params, (32, 32), seed=7).simulate(_short(params))
    second = CardiacPhantom(params, (32, 32), seed=7).simulate(_short(params))
    other = CardiacPhantom(params, (32, 32), seed=8).simulate(_short(params))
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not np.array_equal(first.frames, other.frames)
    np.testing.assert_array_equal(first.labels, other.labels)  # anatomy comes from the parameters


@pytest.mark.parametrize("view", ["4CH", "2CH"])
@pytest.mark.parametrize("pediatric", [False, True])
def test_method_of_discs_on_masks_recovers_the_prescribed_ef(view, pediatric):
    for seed in range(6):
        params = _params(seed, view=view, pediatric=pediatric)
        phantom = CardiacPhantom(params, (112, 112), seed=seed)
        ed, es = (
            params.ed_offset_frames,
            params.ed_offset_frames + params.systole_frames,
        )
        spacing = phantom.geometry.pixel_spacing
        estimated = [method_of_discs_volume(phantom.labels(f) == 1, spacing) for f in (ed, es)]  # axis from the mask
        traced = []
        for frame in (ed, es):
            axis = phantom.disc_chords(frame)[0]
            traced.append(method_of_discs_volume(phantom.labels(frame) == 1, spacing, axis=(axis[:2], axis[2:])))
        assert ejection_fraction(*estimated) == pytest.approx(params.ejection_fraction, abs=2.0)
        assert ejection_fraction(*traced) == pytest.approx(params.ejection_fraction, abs=2.0)
        assert traced[0] == pytest.approx(params.edv_ml, rel=0.03)
        assert traced[1] == pytest.approx(params.esv_ml, rel=0.03)


def test_disc_chords_follow_the_echonet_layout_and_give_the_ef():
    params = _params(3)
    phantom = CardiacPhantom(params, (112, 112), seed=3)
    volumes = []
    for frame in (
        params.ed_offset_frames,
        params.ed_offset_frames + params.systole_frames,
    ):
        chords = phantom.disc_chords(frame)
        assert chords.shape == (21, 4)
        axis = chords[0, 2:] - chords[0, :2]
        assert axis[1] > 0  # apex first, at the top; mitral plane below
        cross = chords[1:, 2:] - chords[1:, :2]
        np.testing.assert_allclose(cross @ axis, 0.0, atol=1e-6)  # chords perpendicular to the long axis
        assert np.all(chords[1:, 0] < chords[1:, 2])  # left end first
        diameters = np.hypot(cross[:, 0], cross[:, 1])
        volumes.append(np.pi / 4 * np.sum(diameters**2) * np.hypot(*axis) / 20)
        mask = phantom.labels(frame) == 1
        rows, cols = (
            np.round(chords[1:, 1::2].mean(axis=1)).astype(int),
            np.round(chords[1:, ::2].mean(axis=1)).astype(int),
        )
        assert mask[rows, cols].all()  # chord centres inside the cavity
    assert ejection_fraction(*volumes) == pytest.approx(params.ejection_fraction, abs=2.0)


def test_tissue_speckle_is_coherent_and_blood_speckle_is_redrawn():
    params = _params(4, view="2CH")
    phantom = CardiacPhantom(params, (96, 96), seed=4)
    frame = params.ed_offset_frames + 2
    first, labels = phantom.render(frame, np.random.default_rng(0))
    second, _ = phantom.render(frame, np.random.default_rng(1))  # same instant: only blood and noise are redrawn
    tissue = _eroded((labels != 1) & (labels != 3) & (phantom.geometry.sector_mask == 1), 3)
    blood = _eroded(labels == 1, 4)
    assert _correlation(_speckle(first)[tissue], _speckle(second)[tissue]) > 0.9
    assert abs(_correlation(_speckle(first)[blood], _speckle(second)[blood])) < 0.3
    # consecutive frames: tissue moves with its speckle, blood decorrelates
    sequence = phantom.simulate(params.ed_offset_frames + params.systole_frames + 1)
    tissue_corr, blood_corr = [], []
    for t in range(len(sequence.frames) - 1):
        a, b = _speckle(sequence.frames[t]), _speckle(sequence.frames[t + 1])
        both = (sequence.labels[t] == 0) & (sequence.labels[t + 1] == 0) & (sequence.sector_mask == 1)
        tissue_corr.append(_correlation(a[_eroded(both, 3)], b[_eroded(both, 3)]))
        cavity = _eroded((sequence.labels[t] == 1) & (sequence.labels[t + 1] == 1), 4)
        blood_corr.append(_correlation(a[cavity], b[cavity]))
    assert np.mean(tissue_corr) > 0.7
    assert np.mean(np.abs(blood_corr)) < 0.3


def test_parasternal_short_axis_has_cavity_and_myocardium_only():
    params = _params(5, view="PSAX", fps=30.0)
    phantom = CardiacPhantom(params, (48, 48), seed=5)
    sequence = phantom.simulate(_short(params))
    assert set(np.unique(sequence.labels)) == {0, 1, 2}
    assert sequence.chords == {} and set(sequence.outlines) == {
        sequence.ed_frame,
        sequence.es_frame,
    }
    with pytest.raises(ValueError, match="PSAX"):
        phantom.disc_chords(0)


def test_cavity_outline_encloses_the_cavity():
    params = _params(6)
    phantom = CardiacPhantom(params, (112, 112), seed=6)
    outline = phantom.cavity_outline(params.ed_offset_frames)
    mask = np.zeros((112, 112), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    cavity = phantom.labels(params.ed_offset_frames) == 1
    dice = 2 * np.sum(mask.astype(bool) & cavity) / (mask.sum() + cavity.sum())
    assert dice > 0.9


def test_invalid_arguments_raise():
    params = _params(0)
    with pytest.raises(ValueError, match="image_size"):
        CardiacPhantom(params, (8, 8))
    with pytest.raises(ValueError, match="n_frames"):
        CardiacPhantom(params, (32, 32)).simulate(params.ed_offset_frames + params.systole_frames)


def test_coarse_motion_on_large_grids_matches_the_exact_map():
    params = _params(7)
    phantom = CardiacPhantom(params, (176, 176), seed=7)
    assert phantom._motion_stride == 2
    shape = phantom.shape(float(params.volume(params.ed_offset_frames + 4)))
    exact = phantom._inverse_map(*phantom._beam_frame, shape)
    coarse = phantom._inverse_map(*phantom._coarse_frame, shape)
    for full, half in zip(exact, coarse, strict=False):
        upsampled = cv2.remap(
            half.astype(np.float32),
            *phantom._coarse_maps,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        error = np.abs(upsampled - full)
        assert np.median(error) < 0.02 and np.percentile(error, 99) < phantom.geometry.sample_spacing
    image, labels = phantom.render(params.ed_offset_frames, np.random.default_rng(0))
    assert image.shape == labels.shape == (176, 176)


def test_wall_dropout_darkens_the_lateral_wall_only():
    params = _params(2, tilt_deg=0.0, apex_lateral_mm=0.0)
    frames = {}
    for dropout in (0.0, 1.0):
        varied = CardiacParameters(**{**params.to_dict(), "wall_dropout": dropout})
        sequence = CardiacPhantom(varied, (96, 96), seed=4).simulate(_short(params))
        frames[dropout] = sequence.frames[sequence.ed_frame].astype(np.float32)
        labels = sequence.labels[sequence.ed_frame]
    wall = _eroded(labels == 2, 1)
    lateral = np.zeros_like(wall)
    lateral[:, 48 + 4 :] = True  # l > 0 is the image right for an untilted heart centred on the probe
    septal = np.zeros_like(wall)
    septal[:, : 48 - 4] = True
    drop = frames[0.0] - frames[1.0]
    assert drop[wall & lateral].mean() > 20.0  # the mid lateral wall goes dark
    assert abs(drop[wall & septal].mean()) < 3.0  # the septum keeps its echo
    with pytest.raises(ValueError, match="wall_dropout must be in"):
        CardiacParameters(wall_dropout=1.5)
