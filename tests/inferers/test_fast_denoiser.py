"""The GPU fast paths on the CPU: each falls back to float32 eager there, gives the plain network's numbers when
forced (bf16 within its rounding), and the static batch shows the network one shape for any batch."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SPADEDiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler

from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import FastDenoiser, Sampler


def _unet() -> SPADEDiffusionModelUNet:
    """A tiny SPADE UNet with attention, its zero-initialised output layers made random (so outputs are not 0)."""
    torch.manual_seed(0)
    network = SPADEDiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        label_nc=3,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=8,
        norm_num_groups=8,
        spade_intermediate_channels=8,
        use_flash_attention=True,
    ).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    return network


def _inputs(batch: int):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 16, 16, generator=generator)
    seg = torch.nn.functional.one_hot(torch.randint(0, 3, (batch, 16, 16), generator=generator), 3)
    return x, torch.full((batch,), 7), seg.permute(0, 3, 1, 2).float()


class ShapeRecorder(torch.nn.Module):
    def __init__(self, network):
        super().__init__()
        self.network, self.batches = network, []

    def forward(self, x, timesteps, **kwargs):
        self.batches.append(x.shape[0])
        return self.network(x, timesteps=timesteps, **kwargs)


@torch.no_grad()
def test_on_the_cpu_every_fast_path_falls_back_to_the_plain_network():
    network = _unet()
    x, t, seg = _inputs(3)
    fast = FastDenoiser(network, precision="bf16", compile=True)
    cpu = torch.device("cpu")
    assert not fast.uses_bf16(cpu) and not fast.uses_compile(cpu)
    torch.testing.assert_close(fast(x, timesteps=t, seg=seg), network(x, timesteps=t, seg=seg), rtol=0, atol=0)
    assert fast._compiled is None


@torch.no_grad()
def test_forced_bf16_autocast_is_close_and_returns_float32():
    network = _unet()
    x, t, seg = _inputs(2)
    plain = network(x, timesteps=t, seg=seg)
    fast = FastDenoiser(network, precision="bf16", precision_on_cpu=True)
    assert fast.uses_bf16(torch.device("cpu"))
    out = fast(x, timesteps=t, seg=seg)
    assert out.dtype == torch.float32 and not torch.equal(out, plain)  # it did run in bf16
    torch.testing.assert_close(out, plain, rtol=0.05, atol=0.05 * float(plain.abs().max()))


@torch.no_grad()
def test_channels_last_gives_the_same_numbers():
    network = _unet()
    x, t, seg = _inputs(2)
    plain = network(x, timesteps=t, seg=seg)
    fast = FastDenoiser(network, channels_last=True)
    torch.testing.assert_close(fast(x, timesteps=t, seg=seg), plain, rtol=1e-5, atol=1e-5)
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def test_a_static_batch_pads_and_chunks_to_one_shape_with_the_same_result():
    network = _unet()
    recorder = ShapeRecorder(network)
    fast = FastDenoiser(recorder, static_batch=4)
    for batch in (3, 4, 6):
        x, t, seg = _inputs(batch)
        torch.testing.assert_close(fast(x, timesteps=t, seg=seg), network(x, timesteps=t, seg=seg),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    assert set(recorder.batches) == {4} and len(recorder.batches) == 4  # 3 -> 4; 4; 6 -> 4 + 4


@torch.no_grad()
def test_compile_traces_the_network_once_for_a_sampler_run_with_a_static_batch():
    """``torch.compile`` (the ``eager`` backend: Dynamo's trace without code generation) under a guided sampler whose
    doubled batch and short last batch meet one static shape."""
    network = _unet()
    fast = FastDenoiser(network, compile=True, compile_backend="eager", compile_on_cpu=True, static_batch=4)
    conditioning = Conditioning(network_kwargs={"seg": "label_map"}, null_values={"seg": 0.0})
    sampler = Sampler(DDIMScheduler(10), 3, guidance_scale=2.0, conditioning=conditioning)
    x, _, seg = _inputs(3)
    condition = Condition({"seg": seg})
    fast_images = sampler(x, fast, condition=condition)
    torch.testing.assert_close(fast_images, sampler(x, network, condition=condition), rtol=1e-4, atol=1e-4)
    assert fast._compiled is not None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="precision must be"):
        FastDenoiser(torch.nn.Identity(), precision="fp16")
    with pytest.raises(ValueError, match="static_batch must be"):
        FastDenoiser(torch.nn.Identity(), static_batch=0)
