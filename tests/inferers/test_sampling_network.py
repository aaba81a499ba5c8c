"""SamplingNetwork: the bundle's denoiser and sampler as one condition -> sample network (network_data_format)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SPADEDiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler

from echo_monai.engines import Conditioning
from echo_monai.inferers import Sampler, SamplingNetwork, seeded_noise


def _pipeline(seed: int = 0) -> tuple[SamplingNetwork, torch.nn.Module, Sampler]:
    torch.manual_seed(0)
    denoiser = SPADEDiffusionModelUNet(
        spatial_dims=2, in_channels=1, out_channels=1, label_nc=5, channels=(8, 8), attention_levels=(False, False),
        num_res_blocks=1, norm_num_groups=4, spade_intermediate_channels=8,
    ).eval()  # fmt: skip
    with torch.no_grad():  # MONAI zero-initialises the output layers: weights that make the output depend on the input
        for parameter in denoiser.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    conditioning = Conditioning({"seg": "label_map"})
    sampler = Sampler(DDIMScheduler(10), 3, conditioning=conditioning)
    return SamplingNetwork(denoiser, sampler, conditioning, "label_map", 1, seed=seed), denoiser, sampler


def test_the_condition_goes_in_and_the_sample_comes_out():
    net, denoiser, sampler = _pipeline(seed=7)
    label = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 16, 16)), 5).permute(0, 3, 1, 2).float()
    out = net(label)
    assert out.shape == (2, 1, 16, 16) and out.dtype == torch.float32 and not out.requires_grad
    # the same as the sampler run by hand from the per-item seeded noise (seed + i), conditioned on the label map
    noise = torch.stack([seeded_noise((1, 16, 16), 7), seeded_noise((1, 16, 16), 8)])
    with torch.no_grad():
        expected = sampler(noise, denoiser, Conditioning({"seg": "label_map"}).extract({"label_map": label}))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(net(label[:1]), out[:1])  # an item does not depend on its batch
    assert not torch.equal(net(label.flip(-1))[0], out[0])  # the label map guides the sample


def test_bad_arguments():
    net, denoiser, _ = _pipeline()
    with pytest.raises(ValueError, match=r"must be \(B, C, \*spatial\), got shape \(16, 16\)"):
        net(torch.zeros(16, 16))
    with pytest.raises(TypeError, match="sampler must be an echo_monai.inferers.Sampler"):
        SamplingNetwork(denoiser, object(), Conditioning(), "label_map")
