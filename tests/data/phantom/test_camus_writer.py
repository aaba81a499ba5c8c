from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from echo_monai.data.phantom.camus_writer import CAMUSWriter
from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("camus")
    params = CardiacParameters.sample(np.random.default_rng(0), ed_offset_frames=0, fps=20.0)
    views = {}
    for view in ("2CH", "4CH"):
        view_params = CardiacParameters(**{**params.to_dict(), "view": view})
        views[view] = CardiacPhantom(view_params, (48, 40), seed=1).simulate(params.systole_frames + 1)
    with CAMUSWriter(root) as writer:
        writer.add(
            "patient0001",
            views,
            split="training",
            sex="M",
            age=61,
            image_quality="Medium",
            ejection_fraction=params.ejection_fraction,
        )
        writer.add("patient0002", {"4CH": views["4CH"]}, split="testing")
    return root, views, params


def test_layout_file_names_and_cfg(written):
    root, _views, params = written
    folder = root / "database_nifti" / "patient0001"
    expected = {
        f"patient0001_{v}_{p}{g}.nii.gz"
        for v in ("2CH", "4CH")
        for p in ("ED", "ES", "half_sequence")
        for g in ("", "_gt")
    } | {"Info_2CH.cfg", "Info_4CH.cfg"}
    assert {p.name for p in folder.iterdir()} == expected
    info = dict(line.split(": ", 1) for line in (folder / "Info_4CH.cfg").read_text().splitlines())
    assert list(info)[:8] == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"]
    assert info["ED"] == "1" and int(info["ES"]) == int(info["NbFrame"]) == params.systole_frames + 1
    assert float(info["EF"]) == pytest.approx(params.ejection_fraction, abs=0.01)
    assert (info["Sex"], info["Age"], info["ImageQuality"]) == ("M", "61", "Medium")
    assert float(info["FrameRate"]) == pytest.approx(20.0)
    assert (root / "database_split" / "subgroup_training.txt").read_text() == "patient0001\n"
    assert (root / "database_split" / "subgroup_testing.txt").read_text() == "patient0002\n"
    assert (root / "database_split" / "subgroup_validation.txt").read_text() == ""


def test_nifti_arrays_are_stored_in_itk_order(written):
    root, views, _ = written
    folder = root / "database_nifti" / "patient0001"
    image = nib.load(str(folder / "patient0001_4CH_ED.nii.gz"))
    sequence = nib.load(str(folder / "patient0001_4CH_half_sequence_gt.nii.gz"))
    assert image.shape == (40, 48) and sequence.shape == (40, 48, views["4CH"].es_frame + 1)
    np.testing.assert_array_equal(np.asarray(image.dataobj).T, views["4CH"].frames[views["4CH"].ed_frame])
    assert image.header.get_zooms() == pytest.approx((views["4CH"].pixel_spacing_mm,) * 2)


def test_round_trip_through_the_camus_reader(written):
    from echo_monai.data.camus import CAMUS

    root, views, params = written
    dataset = CAMUS(root, views=("2CH", "4CH"), phases=("ED", "ES", "half_sequence"), split="training")
    items = {(item["view"], item["phase"]): item for item in (dataset[i] for i in range(len(dataset)))}
    assert len(items) == 6
    for view, sequence in views.items():
        for phase, frame in (("ED", sequence.ed_frame), ("ES", sequence.es_frame)):
            item = items[(view, phase)]
            np.testing.assert_array_equal(item["image"].numpy()[0], sequence.frames[frame])
            np.testing.assert_array_equal(item["label"].numpy()[0], sequence.labels[frame])
        video = items[(view, "half_sequence")]
        np.testing.assert_array_equal(video["video"].numpy()[0], sequence.frames[: sequence.es_frame + 1])
        np.testing.assert_array_equal(video["label"].numpy()[0], sequence.labels[: sequence.es_frame + 1])
        assert items[(view, "ED")]["ejection_fraction"] == pytest.approx(params.ejection_fraction, abs=0.01)
        assert items[(view, "ED")]["spacing"] == pytest.approx((sequence.pixel_spacing_mm,) * 2)


def test_bad_arguments_raise(tmp_path, written):
    _, views, _ = written
    writer = CAMUSWriter(tmp_path)
    with pytest.raises(ValueError, match="split"):
        writer.add("patient0001", views, split="train")
    with pytest.raises(ValueError, match="image_quality"):
        writer.add("patient0001", views, image_quality="Excellent")
    with pytest.raises(ValueError, match="views"):
        writer.add("patient0001", {"3CH": views["2CH"]})
