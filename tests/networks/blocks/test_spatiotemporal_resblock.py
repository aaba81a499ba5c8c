"""(2+1)D residual block: per-frame application, identity temporal half at initialisation, validation."""

from __future__ import annotations

import pytest
import torch

from echo_monai.networks.blocks import SpatioTemporalResBlock, TemporalConvBlock, apply_per_frame


def test_apply_per_frame_matches_a_loop_over_frames():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 4, 8, 8)
    expected = torch.stack([conv(x[:, :, t]) for t in range(4)], dim=2)
    torch.testing.assert_close(apply_per_frame(conv, x), expected)


def test_temporal_conv_is_identity_at_init_and_mixes_frames_after():
    block = TemporalConvBlock(8, temb_channels=16, norm_num_groups=4)
    x, emb = torch.randn(2, 8, 5, 4, 4), torch.randn(2, 16)
    torch.testing.assert_close(block(x, emb), x)
    torch.nn.init.normal_(block.conv2.weight)
    x_changed = x.clone()
    x_changed[:, :, 2] += 1.0
    delta = (block(x_changed, emb) - block(x, emb)).abs().amax(dim=(0, 1, 3, 4))
    assert (delta[1:4] > 0).all()  # kernel 3 reaches the neighbours
    # apart from GroupNorm statistics (which span the clip), a pixel's output depends on no other pixel
    block.norm1 = block.norm2 = torch.nn.Identity()
    x_pixel = x.clone()
    x_pixel[..., 0, 0] += 1.0
    torch.testing.assert_close(block(x_pixel, emb)[..., 1:, :], block(x, emb)[..., 1:, :])


def test_resblock_shape_and_per_frame_at_init():
    block = SpatioTemporalResBlock(8, 16, temb_channels=32, norm_num_groups=4)
    with torch.no_grad():
        for p in block.spatial.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, emb = torch.randn(2, 8, 3, 8, 8), torch.randn(2, 32)
    y = block(x, emb)
    assert y.shape == (2, 16, 3, 8, 8)
    frame = block.spatial(x[:, :, 1], emb)
    torch.testing.assert_close(y[:, :, 1], frame, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"channels": 6}, "norm_num_groups"), ({"kernel_size": 2}, "kernel_size"), ({"kernel_size": 0}, "kernel_size")],
)
def test_temporal_conv_validation(kwargs, match):
    with pytest.raises(ValueError, match=f"TemporalConvBlock: .*{match}"):
        TemporalConvBlock(**{"channels": 8, "norm_num_groups": 4, **kwargs})


def test_resblock_validation():
    with pytest.raises(ValueError, match="SpatioTemporalResBlock: in_channels"):
        SpatioTemporalResBlock(6, 8, temb_channels=8, norm_num_groups=4)
