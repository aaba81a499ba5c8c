from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from echo_monai.transforms import ConditionMapd


def test_maps_from_arrays_files_and_the_null_map(tmp_path):
    t = ConditionMapd("lv_mask", (4, 4), null_value=-1.0)
    assert torch.all(t({})["lv_mask"] == -1.0) and torch.all(t({"lv_mask": None})["lv_mask"] == -1.0)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    iio.imwrite(tmp_path / "mask.png", mask)
    from_png = t({"lv_mask": str(tmp_path / "mask.png")})["lv_mask"]
    assert from_png.shape == (1, 4, 4) and from_png[0, :, :2].eq(1).all() and from_png[0, :, 2:].eq(0).all()
    same_size = t({"lv_mask": torch.ones(1, 4, 4) * 0.5})["lv_mask"]
    assert torch.all(same_size == 0.5)
    with pytest.raises(ValueError, match="spatial_size"):
        ConditionMapd("lv_mask", (4,))


def test_mask_outside_sector_follows_each_label_map():
    from echo_monai.transforms import MaskOutsideSector, ModelSized

    label = torch.zeros(5, 4, 4)
    label[0, :, :2] = 1  # left half outside the sector
    label[2, :, 2:] = 1
    samples = torch.zeros(2, 1, 4, 4)
    masked = MaskOutsideSector()(samples, [{"label_map": label}, {"label_map": label.flip(-1)}])
    assert torch.all(masked[0, 0, :, :2] == -1) and torch.all(masked[0, 0, :, 2:] == 0)
    assert torch.all(masked[1, 0, :, 2:] == -1)
    with pytest.raises(KeyError, match="no 'label_map'"):
        MaskOutsideSector()(samples, [{}, {}])
    with pytest.raises(ValueError, match="is 4x4 but the network takes 8x8"):
        ModelSized("label_map", (8, 8))({"label_map": label})
    assert ModelSized("label_map", (8, 8), resize=True)({"label_map": label})["label_map"].shape == (5, 8, 8)
