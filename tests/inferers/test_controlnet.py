"""ControlNetDenoiser inside the shared Sampler against MONAI's ControlNetDiffusionInferer.sample."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import ControlNetDiffusionInferer
from monai.networks.nets import ControlNet, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler

from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import ControlNetDenoiser, Sampler, copy_encoder_weights

ARCH = {
    "spatial_dims": 2,
    "in_channels": 1,
    "channels": (8, 16),
    "attention_levels": (False, True),
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "num_head_channels": 8,
    "with_conditioning": True,
    "cross_attention_dim": 4,
}


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Move the zero-initialised outputs (ControlNet's zero convs, the UNet's output conv) off zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


@pytest.fixture
def networks():
    torch.manual_seed(0)
    unet = _randomise(DiffusionModelUNet(out_channels=1, **ARCH))
    controlnet = ControlNet(conditioning_embedding_in_channels=3, conditioning_embedding_num_channels=(8,), **ARCH)
    copy_encoder_weights(controlnet, unet)
    return unet, _randomise(controlnet)


def _inputs():
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 1, 16, 16, generator=generator)
    control = torch.rand(2, 3, 16, 16, generator=generator)
    context = torch.randn(2, 1, 4, generator=generator)
    return noise, control, context


@pytest.mark.parametrize("guidance_scale", [None, 3.0])
def test_same_noise_gives_monai_controlnet_inferer_sample(networks, guidance_scale):
    unet, controlnet = networks
    noise, control, context = _inputs()
    scheduler = DDIMScheduler(10)
    scheduler.set_timesteps(4)
    expected = ControlNetDiffusionInferer(scheduler).sample(
        noise, unet, controlnet, control, conditioning=context, verbose=False, cfg=guidance_scale, cfg_fill_value=-1.0
    )
    # the text tokens are guided (null = -1 as MONAI fills them); the control image stays in both halves
    conditioning = Conditioning(
        {"context": "text", "controlnet_cond": "label_map"}, droppable=["context"], null_values={"context": -1.0}
    )
    sampler = Sampler(DDIMScheduler(10), 4, guidance_scale=guidance_scale or 1.0, conditioning=conditioning)
    sampler.clip_range = None
    got = sampler(
        noise,
        ControlNetDenoiser(unet, controlnet),
        condition=Condition({"context": context, "controlnet_cond": control}),
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if guidance_scale is not None:  # guidance changes the sample, so the test above is not vacuous
        plain = Sampler(DDIMScheduler(10), 4, conditioning=conditioning, clip_range=None)
        unguided = plain(
            noise, ControlNetDenoiser(unet, controlnet), Condition({"context": context, "controlnet_cond": control})
        )
        assert (unguided - got).abs().max() > 1e-3


def test_conditioning_scale_zero_is_the_base_network(networks):
    unet, controlnet = networks
    noise, control, context = _inputs()
    t = torch.tensor([5, 5])
    base = unet(noise, t, context=context)
    assert torch.allclose(ControlNetDenoiser(unet, controlnet, 0.0)(noise, t, control, context=context), base)
    assert not torch.allclose(ControlNetDenoiser(unet, controlnet, 1.0)(noise, t, control, context=context), base)


def test_missing_control_image_and_bad_scale_raise(networks):
    unet, controlnet = networks
    with pytest.raises(ValueError, match="controlnet_cond is missing"):
        ControlNetDenoiser(unet, controlnet)(torch.zeros(1, 1, 16, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="conditioning_scale"):
        ControlNetDenoiser(unet, controlnet, -1.0)


def test_frozen_base_trains_the_control_branch_only(networks):
    unet, controlnet = networks
    denoiser = ControlNetDenoiser(unet, controlnet, freeze_network=True)
    noise, control, context = _inputs()
    denoiser(noise, torch.tensor([3, 7]), control, context=context).square().mean().backward()
    assert all(p.grad is None for p in unet.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in controlnet.parameters())


def test_copy_encoder_weights_copies_the_shared_encoder():
    torch.manual_seed(1)
    unet = DiffusionModelUNet(out_channels=1, **ARCH)
    controlnet = ControlNet(conditioning_embedding_in_channels=3, conditioning_embedding_num_channels=(8,), **ARCH)
    copied = copy_encoder_weights(controlnet, unet)
    assert "conv_in.conv.weight" in copied and any(name.startswith("down_blocks.") for name in copied)
    torch.testing.assert_close(controlnet.conv_in.conv.weight, unet.conv_in.conv.weight)
    with pytest.raises(ValueError, match="no parameter"):
        copy_encoder_weights(controlnet, torch.nn.Linear(2, 2))


def test_a_video_controlnet_drives_the_spatiotemporal_unet_inside_the_sampler(make_video_unet):
    from echo_monai.networks.nets import SpatioTemporalControlNet

    unet = make_video_unet(seed=0, in_channels=1)
    controlnet = SpatioTemporalControlNet.from_unet(unet, conditioning_embedding_in_channels=2,
                                                    conditioning_embedding_num_channels=(8,))  # fmt: skip
    denoiser = ControlNetDenoiser(_randomise(unet), controlnet.eval())
    noise = torch.randn(1, 1, 3, 16, 16)
    control = torch.rand(1, 2, 3, 16, 16)
    sampler = Sampler(DDIMScheduler(10), 2, conditioning=Conditioning({"controlnet_cond": "motion"}), clip_range=None)
    fresh = sampler(noise, denoiser, condition=Condition({"controlnet_cond": control}))
    torch.testing.assert_close(fresh, Sampler(DDIMScheduler(10), 2, clip_range=None)(noise, unet))  # zero convs
    _randomise(controlnet)
    driven = sampler(noise, denoiser, condition=Condition({"controlnet_cond": control}))
    assert driven.shape == noise.shape and (driven - fresh).abs().max() > 1e-4
