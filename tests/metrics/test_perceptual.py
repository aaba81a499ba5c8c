from __future__ import annotations

import pytest
import torch

from echo_monai.metrics.encoders import resnet_encoder
from echo_monai.metrics.perceptual import PerceptualDistance

from .threads import single_thread  # noqa: F401 (autouse fixture)


@pytest.fixture
def distance():
    return PerceptualDistance(
        resnet_encoder("toy", block_inplanes=(4, 8, 8, 16)), layers=["layer1", "layer2", "layer3"]
    )


def test_zero_for_identical_and_growing_with_noise(distance):
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert torch.allclose(distance(x, x), torch.zeros(3))
    small = distance(x, x + 0.05 * torch.randn_like(x))
    large = distance(x, x + 0.5 * torch.randn_like(x))
    assert small.shape == (3,) and torch.all(small > 0) and torch.all(large > small)


def test_symmetric(distance):
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(distance(x, y), distance(y, x))


def test_single_layer_matches_the_formula():
    encoder = resnet_encoder("toy", block_inplanes=(4, 8, 8, 16))
    distance = PerceptualDistance(encoder.network, layers=["conv1"])
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        fx, fy = encoder.network.conv1(x).double(), encoder.network.conv1(y).double()
    fx, fy = fx / (fx.norm(dim=1, keepdim=True) + 1e-10), fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
    expected = (fx - fy).pow(2).sum(dim=1).mean(dim=(1, 2)).float()
    torch.testing.assert_close(distance(x, y), expected)


def test_perceptual_distance_rejects_bad_arguments(distance):
    network = resnet_encoder("toy", block_inplanes=(4, 4, 4, 4)).network
    with pytest.raises(ValueError, match="at least one"):
        PerceptualDistance(network, layers=[])
    with pytest.raises(ValueError, match="not submodules"):
        PerceptualDistance(network, layers=["nope"])
    with pytest.raises(ValueError, match="weights must be 1"):
        PerceptualDistance(network, layers=["layer1"], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="same shape"):
        distance(torch.rand(1, 1, 32, 32), torch.rand(2, 1, 32, 32))
