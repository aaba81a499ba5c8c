from __future__ import annotations

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.utils import pixelshuffle

from echo_monai.transforms import LesionCropd, LetterboxResized, LoadGreyImaged, SpaceToDepthd, read_grey_image


@pytest.fixture
def grey():
    return (np.arange(12 * 20).reshape(12, 20) % 256).astype(np.uint8)


def test_read_grey_image_formats_agree(tmp_path, grey):
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.repeat(grey[:, :, None], 3, axis=2))  # BUSI stores grey as RGB
    cv2.imwrite(str(tmp_path / "rgba.png"), np.concatenate([np.repeat(grey[:, :, None], 3, 2), grey[:, :, None]], 2))
    nib.save(nib.Nifti1Image(grey.T.astype(np.float32), np.eye(4)), str(tmp_path / "grey.nii.gz"))
    for name in ("grey.png", "rgb.png", "rgba.png", "grey.nii.gz"):
        image = read_grey_image(tmp_path / name)
        assert image.dtype == np.float32 and image.shape == (12, 20), name
        np.testing.assert_allclose(image, grey, atol=0.51, err_msg=name)


def test_read_grey_image_dicom(tmp_path, grey):
    from echo_monai.data.phantom.dicom_writer import DicomCineWriter

    path = DicomCineWriter(tmp_path).add(grey[None], "one", fps=30.0, pixel_spacing_mm=0.2, patient_id="P")
    np.testing.assert_allclose(read_grey_image(path), grey)
    cine = DicomCineWriter(tmp_path).add(np.stack([grey, grey]), "cine", fps=30.0, pixel_spacing_mm=0.2,
                                         patient_id="P")  # fmt: skip
    with pytest.raises(ValueError, match=r"cine\.dcm.*DICOM cine of 2 frames; expected one 2D image"):
        read_grey_image(cine)


def test_read_grey_image_errors(tmp_path, grey):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_grey_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png.*could not be decoded"):
        read_grey_image(tmp_path / "broken.png")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "volume.nii.gz"))
    with pytest.raises(ValueError, match=r"volume\.nii\.gz.*expected one 2D image"):
        read_grey_image(tmp_path / "volume.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), str(tmp_path / "two.nii.gz"))
    with pytest.raises(ValueError, match=r"two\.nii\.gz.*expected one 2D image"):
        read_grey_image(tmp_path / "two.nii.gz")
    with pytest.raises(ValueError, match=r"expected an image \(H, W\) or \(1, H, W\), got shape \(2, 4, 4\)"):
        LoadGreyImaged("image")({"image": np.zeros((2, 4, 4))})
    with pytest.raises(ValueError, match="unknown type"):
        (tmp_path / "image.txt").write_text("x")
        read_grey_image(tmp_path / "image.txt")


def test_load_grey_imaged_masks_union_and_none(tmp_path):
    a, b = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[1:3, 1:3], b[5:7, 5:7] = 255, 255
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "b.png"), b)
    out = LoadGreyImaged("mask", binary=True)({"mask": [str(tmp_path / "a.png"), str(tmp_path / "b.png")]})["mask"]
    assert out.shape == (1, 8, 8) and out.sum() == 8 and set(out.unique().tolist()) == {0.0, 1.0}
    assert LoadGreyImaged("mask", binary=True)({"mask": None})["mask"] is None
    array = LoadGreyImaged("image")({"image": np.full((1, 4, 6), 7.0)})["image"]
    assert array.shape == (1, 4, 6) and float(array.max()) == 7.0


def test_lesion_crop_from_boxes_and_mask():
    video = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 1, 40, 60).repeat(1, 3, 1, 1)
    boxes = torch.tensor([[20.0, 10.0, 30.0, 20.0], [float("nan")] * 4, [22.0, 12.0, 34.0, 18.0]])
    out = LesionCropd("video", box_key="boxes", margin=0.5)({"video": video, "boxes": boxes})
    # union box 20-34 x 10-20: side 14 * 2 = 28, centred at (27, 15), moved inside the 40-row frame
    assert out["video"].shape == (1, 3, 28, 28)
    assert out["boxes_crop"].tolist() == [13.0, 1.0, 41.0, 29.0]
    assert torch.equal(out["video"], video[..., 1:29, 13:41])
    mask = torch.zeros(1, 40, 60)
    mask[0, 5:9, 50:58] = 1
    image = video[:, 0]
    cropped = LesionCropd(["image", "mask"], mask_key="mask", margin=0.0)({"image": image, "mask": mask})
    assert cropped["image"].shape == (1, 8, 8) and cropped["mask"].sum() == 32  # the mask's rows padded to a square
    untouched = LesionCropd("image", mask_key="mask")({"image": image, "mask": None})
    assert untouched["image"] is image
    with pytest.raises(ValueError, match="'v1' has no lesion box"):
        LesionCropd("video", box_key="boxes", require=True)({"video": video, "boxes": boxes[1:2], "video_name": "v1"})
    with pytest.raises(ValueError, match="exactly one of box_key and mask_key"):
        LesionCropd("video")


def test_letterbox_keeps_the_aspect_ratio():
    image = torch.ones(1, 20, 40)
    out = LetterboxResized("image", 16)({"image": image})["image"]
    assert out.shape == (1, 16, 16)
    assert torch.all(out[:, :4] == 0) and torch.all(out[:, 12:] == 0) and torch.all(out[:, 4:12] == 1)
    video = torch.ones(1, 3, 40, 20)
    assert LetterboxResized("video", (8, 8))({"video": video})["video"].shape == (1, 3, 8, 8)
    mask = {"mask": None, "image": image}
    assert LetterboxResized(["image", "mask"], 8, mode=["area", "nearest-exact"])(mask)["mask"] is None
    with pytest.raises(ValueError, match="spatial_size"):
        LetterboxResized("image", (0, 4))


def test_space_to_depth_is_lossless():
    image = torch.randn(1, 16, 24)
    folded = SpaceToDepthd("first_frame", 4, names="reference")({"first_frame": image})["reference"]
    assert folded.shape == (16, 4, 6)
    torch.testing.assert_close(pixelshuffle(folded[None], spatial_dims=2, scale_factor=4)[0], image)
    with pytest.raises(ValueError, match="divisible by 4"):
        SpaceToDepthd("first_frame", 4)({"first_frame": torch.randn(1, 10, 12)})
