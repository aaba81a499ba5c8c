from __future__ import annotations

import pytest
import torch

from echo_monai.transforms import ScaleIntensityToModelRanged


def test_maps_source_range_to_minus_one_one():
    video = torch.tensor([0.0, 63.75, 127.5, 255.0, 300.0]).view(1, 5, 1, 1)
    out = ScaleIntensityToModelRanged("video")({"video": video})["video"]
    assert out.dtype == torch.float32 and out.shape == (1, 5, 1, 1)
    assert out.flatten().tolist() == pytest.approx([-1.0, -0.5, 0.0, 1.0, 1.0])
    unclipped = ScaleIntensityToModelRanged("video", clip=False)({"video": video})["video"]
    assert float(unclipped.max()) > 1.0


def test_uint8_input_and_custom_range():
    out = ScaleIntensityToModelRanged("image", source_min=10, source_max=20)(
        {"image": torch.tensor([10, 15, 20], dtype=torch.uint8)}
    )
    assert out["image"].tolist() == pytest.approx([-1.0, 0.0, 1.0])


def test_rejects_empty_range():
    with pytest.raises(ValueError, match="source_max"):
        ScaleIntensityToModelRanged("image", source_min=5, source_max=5)
