"""Factorised spatial/temporal attention: per-frame at initialisation, frame order matters, context used."""

from __future__ import annotations

import pytest
import torch

from echo_monai.networks.blocks import FactorisedAttentionBlock, TemporalTransformer


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module


def test_temporal_transformer_identity_at_init():
    block = TemporalTransformer(8, num_head_channels=4, norm_num_groups=4, cross_attention_dim=3)
    x = torch.randn(2, 8, 5, 3, 3)
    torch.testing.assert_close(block(x, context=torch.randn(2, 1, 3)), x)


def test_temporal_transformer_mixes_frames_per_pixel_and_uses_context():
    block = _randomise(TemporalTransformer(8, num_head_channels=4, norm_num_groups=4, cross_attention_dim=3))
    block.norm = torch.nn.Identity()  # GroupNorm statistics span the clip; check the attention's own locality
    x, context = torch.randn(1, 8, 4, 3, 3), torch.randn(1, 2, 3)
    y = block(x, context)
    x_changed = x.clone()
    x_changed[:, :, 0, 0, 0] += 1.0
    delta = (block(x_changed, context) - y).abs().amax(dim=1)  # (1, T, H, W)
    assert (delta[0, :, 0, 0] > 0).all()  # every frame of the changed pixel
    assert delta[0, :, 1:].max() == 0 and delta[0, :, 0, 1:].max() == 0  # no other pixel
    assert not torch.allclose(block(x, context + 1.0), y)
    # frame positions are embedded: reversing time is not just reversing the output
    assert not torch.allclose(block(x.flip(2), context).flip(2), y, atol=1e-5)


def test_factorised_block_is_per_frame_at_init_and_uses_context():
    block = FactorisedAttentionBlock(8, num_head_channels=4, norm_num_groups=4, cross_attention_dim=1)
    _randomise(block.spatial)
    x, context = torch.randn(2, 8, 3, 4, 4), torch.randn(2, 1, 1)
    y = block(x, context)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :, 2], block.spatial(x[:, :, 2], context), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(block(x, context + 1.0), y, atol=1e-5)


def test_factorised_block_without_context():
    block = _randomise(FactorisedAttentionBlock(8, num_head_channels=8, norm_num_groups=8, use_flash_attention=True))
    assert block(torch.randn(1, 8, 2, 4, 4)).shape == (1, 8, 2, 4, 4)


@pytest.mark.parametrize("cls", [TemporalTransformer, FactorisedAttentionBlock])
@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_head_channels": 3}, "num_head_channels"), ({"norm_num_groups": 3}, "norm_num_groups")],
)
def test_validation(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: .*{match}"):
        cls(**{"channels": 8, "num_head_channels": 4, "norm_num_groups": 4, **kwargs})
