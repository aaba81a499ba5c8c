from __future__ import annotations

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch

from echo_monai.data.camus import read_camus_image, save_camus_nifti
from echo_monai.transforms import (
    EchoLabelMapd,
    LoadLabelMapd,
    SectorMaskd,
    check_label_values,
    fan_sector_mask,
    sector_from_image,
)


@pytest.fixture
def item():
    """A 32x32 image whose cone is a triangle, with a CAMUS label inside it."""
    image = np.zeros((32, 32), np.float32)
    cv2.fillConvexPoly(image, np.array([[16, 0], [0, 31], [31, 31]]), 100.0)
    label = np.zeros((32, 32), np.uint8)
    label[10:20, 12:20] = 1
    label[20:24, 12:20] = 3
    label[10:20, 10:12] = 2
    return {"image": torch.from_numpy(image[None]), "label": torch.from_numpy(label[None]), "filename": "p1_gt.png"}


def test_sector_from_image_is_the_convex_cone(item):
    mask = sector_from_image(item["image"][0].numpy())
    assert mask[31, 16] and mask[5, 16] and not mask[2, 2] and not mask[31 - 20, 0]
    with pytest.raises(ValueError, match="cannot find the ultrasound sector"):
        sector_from_image(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"expected an \(H, W\) image"):
        sector_from_image(np.zeros((1, 8, 8)))


def test_fan_sector_mask_geometry():
    mask = fan_sector_mask(40, 40, opening_deg=60)
    assert mask[39, 20] and not mask[39, 0] and not mask[0, 0]
    with pytest.raises(ValueError, match="opening_deg"):
        fan_sector_mask(8, 8, opening_deg=190)


def test_echo_label_map_classes(item):
    d = EchoLabelMapd("label", sector_key="sector", output_key="label_map")(SectorMaskd("image")(item))
    label_map = d["label_map"][0].numpy()
    assert d["label_map"].shape == (1, 32, 32) and d["label_map"].dtype == torch.int64
    assert label_map[15, 15] == 2 and label_map[15, 10] == 3 and label_map[22, 15] == 4  # LV, myocardium, LA
    assert label_map[28, 16] == 1 and label_map[2, 2] == 0  # in-sector background, outside the sector


def test_default_fan_when_the_image_is_missing(item):
    d = SectorMaskd("image", label_key="label")({"label": item["label"]})
    assert d["sector"].shape == (1, 32, 32) and d["sector"][0, 31, 16] == 1


def test_label_errors_name_the_file(item):
    bad = dict(item, label=item["label"] * 0 + 5)
    with pytest.raises(ValueError, match=r"p1_gt.png: label values \[5\] are outside the classes 0..3"):
        EchoLabelMapd("label")(SectorMaskd("image")(bad))
    with pytest.raises(ValueError, match=r"expected a label of shape \(1, H, W\)"):
        EchoLabelMapd("label")(dict(SectorMaskd("image")(item), label=item["label"][0]))
    with pytest.raises(ValueError, match="needs a sector mask of the same size"):
        EchoLabelMapd("label")(dict(item, sector=torch.ones(1, 16, 16)))
    with pytest.raises(KeyError, match="add SectorMaskd first"):
        EchoLabelMapd("label")(item)
    with pytest.raises(ValueError, match="input_classes"):
        EchoLabelMapd("label", input_classes=3)
    with pytest.raises(ValueError, match="need a sector_key"):
        EchoLabelMapd("label", sector_key=None)
    with pytest.raises(KeyError, match="neither the image"):
        SectorMaskd("image", label_key="label")({})
    with pytest.raises(ValueError, match=r"label values \[0.5\]"):
        check_label_values(np.array([0, 0.5]), 4)


def test_five_class_input_passes_through():
    label = torch.tensor([[[0, 4], [1, 2]]])
    out = EchoLabelMapd("label", sector_key=None, input_classes=5)({"label": label})["label_map"]
    assert torch.equal(out, label.long())


def test_load_label_maps_png_and_nifti_with_image(tmp_path):
    label = np.array([[0, 1, 2, 3]] * 4, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), label)
    save_camus_nifti(tmp_path / "p_gt.nii.gz", label)
    save_camus_nifti(tmp_path / "p.nii.gz", label * 50)
    d = LoadLabelMapd("label", image_keys=["image"])(
        {"label": str(tmp_path / "p_gt.nii.gz"), "image": str(tmp_path / "p.nii.gz")}
    )
    assert torch.equal(d["label"][0], torch.from_numpy(label).long()) and d["image"].dtype == torch.float32
    assert d["image"][0, 0, 3] == 150 and d["filename"].endswith("p_gt.nii.gz")
    assert torch.equal(
        LoadLabelMapd("label")({"label": str(tmp_path / "a.png")})["label"][0], torch.from_numpy(label).long()
    )


def test_load_label_map_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        LoadLabelMapd("label")({"label": str(tmp_path / "missing.png")})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png' is not a readable PNG"):
        LoadLabelMapd("label")({"label": str(tmp_path / "broken.png")})
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.uint8), np.eye(4)), str(tmp_path / "v.nii.gz"))
    with pytest.raises(ValueError, match="must be a 2D image"):
        LoadLabelMapd("label")({"label": str(tmp_path / "v.nii.gz")})
    save_camus_nifti(tmp_path / "l_gt.nii.gz", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"has size \(4, 4\); expected \(8, 8\)"):
        LoadLabelMapd("label", expected_size=(8, 8))({"label": str(tmp_path / "l_gt.nii.gz")})
    save_camus_nifti(tmp_path / "l.nii.gz", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="but its label map"):
        LoadLabelMapd("label", image_keys="image")(
            {"label": str(tmp_path / "l_gt.nii.gz"), "image": str(tmp_path / "l.nii.gz")}
        )


def test_save_camus_nifti_round_trip_and_error(tmp_path):
    video = np.random.default_rng(0).integers(0, 255, (3, 6, 5), dtype=np.uint8)
    array, _ = read_camus_image(save_camus_nifti(tmp_path / "v.nii.gz", video, spacing=0.3))
    np.testing.assert_array_equal(array, video)
    with pytest.raises(ValueError, match="expected"):
        save_camus_nifti(tmp_path / "x.nii.gz", np.zeros(4, np.uint8))


def test_label_map_condition_gives_the_image_and_latent_grid_maps(tmp_path):
    import imageio.v3 as iio
    from monai.transforms import Compose

    from echo_monai.transforms import label_map_condition

    label = np.zeros((32, 32), np.uint8)
    label[8:24, 10:22] = 1
    label[4:8, 10:22] = 3
    iio.imwrite(tmp_path / "map.png", label)
    item = Compose(label_map_condition(32, control_size=8))({"label": str(tmp_path / "map.png")})
    assert item["label_map"].shape == (5, 32, 32) and item["control_map"].shape == (5, 8, 8)
    assert torch.allclose(item["control_map"].sum(0), torch.ones(8, 8))  # area-averaged one-hot
    assert torch.allclose(item["control_map"][2].sum() * 16, item["label_map"][2].sum())  # LV area kept
    assert "control_map" not in Compose(label_map_condition(32))({"label": str(tmp_path / "map.png")})
    with pytest.raises(RuntimeError) as error:  # another size without resize: refused, naming both sizes
        Compose(label_map_condition(64))({"label": str(tmp_path / "map.png")})
    assert "32x32 but the network takes 64x64" in str(error.value.__cause__)
