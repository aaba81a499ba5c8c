"""SpatioTemporalControlNet: residual shapes, zero initialisation, weight copy from the UNet, validation."""

from __future__ import annotations

import pytest
import torch

from echo_monai.networks.nets import SpatioTemporalControlNet, SpatioTemporalUNet

TINY = {
    "channels": (8, 16),
    "attention_levels": (False, True),
    "num_res_blocks": 1,
    "num_head_channels": 8,
    "norm_num_groups": 4,
    "with_conditioning": True,
    "cross_attention_dim": 3,
    "num_class_embeds": 3,
}


def _perturb(net: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Randomise every parameter, the zero-initialised ones included (a "trained" network)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def unet() -> SpatioTemporalUNet:
    torch.manual_seed(0)
    return _perturb(SpatioTemporalUNet(2, 1, **TINY)).eval()


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "x": torch.randn(2, 2, 3, 16, 16, generator=g),
        "timesteps": torch.tensor([10, 800]),
        "context": torch.randn(2, 1, 3, generator=g),
        "class_labels": torch.tensor([0, 2]),
    }


def _control(batch: int = 2, frames: int = 3, size: int = 16, channels: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, frames, size, size, generator=torch.Generator().manual_seed(2))


def test_residual_shapes_match_the_unet_skips(unet, inputs):
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,)).eval()
    with torch.no_grad():
        down, mid = controlnet(**inputs, controlnet_cond=_control())
    assert tuple(r.shape[1] for r in down) == unet.down_block_residual_channels == (8, 8, 8, 16)
    assert [tuple(r.shape) for r in down] == [(2, 8, 3, 16, 16), (2, 8, 3, 16, 16), (2, 8, 3, 8, 8), (2, 16, 3, 8, 8)]
    assert mid.shape == (2, 16, 3, 8, 8)


def test_fresh_controlnet_leaves_the_unet_output_unchanged(unet, inputs):
    """Zero convolutions: every residual is exactly zero, so the guided UNet is the base UNet."""
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,)).eval()
    with torch.no_grad():
        down, mid = controlnet(**inputs, controlnet_cond=_control())
        y = unet(**inputs)
        y_guided = unet(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    assert all(torch.count_nonzero(r) == 0 for r in [*down, mid])
    torch.testing.assert_close(y_guided, y, atol=0.0, rtol=0.0)


def test_zero_convolutions_still_learn(unet, inputs):
    """The zero convolutions get gradients from the UNet's loss at initialisation (Zhang & Agrawala 2023, Sec. 3)."""
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,))
    down, mid = controlnet(**inputs, controlnet_cond=_control())
    unet(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid).square().mean().backward()
    assert controlnet.controlnet_mid_block.conv.weight.grad.abs().sum() > 0
    assert all(block.conv.weight.grad.abs().sum() > 0 for block in controlnet.controlnet_down_blocks)


def test_trained_controlnet_changes_the_output_with_the_control(unet, inputs):
    controlnet = _perturb(SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,))).eval()
    with torch.no_grad():
        down, mid = controlnet(**inputs, controlnet_cond=_control())
        down_other, mid_other = controlnet(**inputs, controlnet_cond=1.0 - _control())
        half_down, half_mid = controlnet(**inputs, controlnet_cond=_control(), conditioning_scale=0.5)
        y = unet(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        y_other = unet(**inputs, down_block_additional_residuals=down_other, mid_block_additional_residual=mid_other)
    assert not torch.allclose(y, unet(**inputs).detach(), atol=1e-4)
    assert not torch.allclose(y, y_other, atol=1e-4)
    for full, half in zip([*down, mid], [*half_down, half_mid], strict=True):
        torch.testing.assert_close(half, 0.5 * full)


def test_from_unet_copies_the_encoder_weights(unet):
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_in_channels=2)
    theirs, ours = unet.state_dict(), controlnet.state_dict()
    for name in [
        "conv_in.weight",
        "time_embed.2.weight",
        "class_embedding.weight",
        "down_blocks.0.resnets.0.spatial.conv1.conv.weight",
        "down_blocks.0.downsampler.op.conv.weight",
        "down_blocks.1.attentions.0.temporal.proj_out.weight",
        "middle_block.attention.spatial.proj_out.conv.weight",
        "middle_block.resnet_2.temporal.conv2.weight",
    ]:
        torch.testing.assert_close(ours[name], theirs[name], atol=0.0, rtol=0.0, msg=name)
    assert not any(name.startswith(("up_blocks", "out.")) for name in ours)
    assert all(torch.count_nonzero(p) == 0 for p in controlnet.controlnet_mid_block.parameters())
    assert (controlnet.with_conditioning, controlnet.num_class_embeds) == (True, 3)
    # without the copy the encoder is freshly initialised
    fresh = SpatioTemporalControlNet.from_unet(unet, copy_weights=False)
    assert not torch.equal(fresh.state_dict()["conv_in.weight"], theirs["conv_in.weight"])


def test_copy_weights_from_another_architecture_raises(unet):
    controlnet = SpatioTemporalControlNet(2, **{**TINY, "channels": (8, 8)})
    with pytest.raises(ValueError, match=r"SpatioTemporalControlNet: \d+ encoder weights have no match"):
        controlnet.copy_weights_from(unet)


def test_control_video_at_a_higher_resolution(unet, inputs):
    """Two embedding levels: the control video is at twice the latent resolution."""
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(4, 8))
    assert controlnet.conditioning_downsampling == 2
    with torch.no_grad():
        down, mid = controlnet(**inputs, controlnet_cond=_control(size=32))
    assert down[0].shape == (2, 8, 3, 16, 16) and mid.shape == (2, 16, 3, 8, 8)


@pytest.mark.parametrize("control_shape", [(2, 1, 3, 16, 16), (2, 2, 3, 32, 32), (2, 1, 2, 32, 32), (1, 1, 3, 32, 32)])
def test_wrong_control_shape_raises(unet, inputs, control_shape):
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(4, 8))
    with pytest.raises(ValueError, match=r"controlnet_cond must have shape \(2, 1, 3, 32, 32\)"):
        controlnet(**inputs, controlnet_cond=torch.zeros(control_shape))


def test_gradient_checkpointing_matches(unet, inputs):
    torch.manual_seed(0)
    controlnet = _perturb(SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,)))
    controlnet_ckpt = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,))
    controlnet_ckpt.load_state_dict(controlnet.state_dict())
    controlnet_ckpt.use_checkpointing = True
    for net in (controlnet, controlnet_ckpt):
        down, mid = net.train()(**inputs, controlnet_cond=_control())
        (sum(r.square().sum() for r in down) + mid.square().sum()).backward()
    for (name, p), q in zip(controlnet.named_parameters(), controlnet_ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conditioning_embedding_in_channels": 0}, "conditioning_embedding_in_channels"),
        ({"conditioning_embedding_num_channels": ()}, "conditioning_embedding_num_channels"),
        ({"norm_num_groups": 3}, "norm_num_groups"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=f"SpatioTemporalControlNet: .*{match}"):
        SpatioTemporalControlNet(**{"in_channels": 2, **TINY, **kwargs})


def test_checks_inputs_like_the_unet(unet, inputs):
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_num_channels=(8,))
    with pytest.raises(ValueError, match=r"SpatioTemporalControlNet: .*needs class_labels"):
        controlnet(**{**inputs, "class_labels": None}, controlnet_cond=_control())
