from __future__ import annotations

import pytest
import torch
from monai.networks.nets import ResNet
from torch import nn

from echo_monai.metrics.encoders import (
    InputKind,
    NetworkEncoder,
    TorchScriptEncoder,
    i3d_encoder,
    inception_v3_encoder,
    metric_name,
    resnet_encoder,
)

from .threads import single_thread  # noqa: F401 (autouse fixture)


class _MeanFeatures(nn.Module):
    """Stands in for a standard TorchScript feature network: per-channel means, kwargs as the real files take."""

    def forward(self, x: torch.Tensor, return_features: bool = False, rescale: bool = False, resize: bool = False):
        return x.float().flatten(2).mean(dim=2)


@pytest.fixture
def scripted_path(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.script(_MeanFeatures()).save(str(path))
    return path


def test_network_encoder_reads_penultimate_features_by_hook():
    network = ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 16], spatial_dims=2, n_input_channels=1, num_classes=3).eval()
    encoder = NetworkEncoder(network, "toy", layer="fc", capture="input")
    x = torch.randn(3, 1, 32, 32)
    features = encoder.encode(x)
    with torch.no_grad():
        stem = network.maxpool(network.act(network.bn1(network.conv1(x))))
        expected = network.avgpool(network.layer4(network.layer3(network.layer2(network.layer1(stem))))).flatten(1)
    assert features.shape == (3, 16)
    torch.testing.assert_close(features, expected)
    assert not network._forward_pre_hooks and not network.fc._forward_pre_hooks  # hook removed


def test_network_encoder_pools_layer_outputs_and_plain_outputs():
    network = ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 16], spatial_dims=3, n_input_channels=1, num_classes=2)
    assert NetworkEncoder(network, "v", "video", layer="layer2").encode(torch.randn(2, 1, 4, 16, 16)).shape == (2, 8)
    assert NetworkEncoder(network, "v", "video").encode(torch.randn(2, 1, 4, 16, 16)).shape == (2, 2)


def test_resnet_encoder_weights_round_trip(tmp_path):
    first = resnet_encoder("a", block_inplanes=(4, 4, 8, 8))
    path = tmp_path / "weights.pt"
    torch.save(first.network.state_dict(), path)
    second = resnet_encoder("a", block_inplanes=(4, 4, 8, 8), weights_path=path)
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(first.encode(x), second.encode(x))
    assert torch.cat([first.encode(x[:1]), first.encode(x[1:])]).shape == first.encode_batched(x, batch_size=1).shape


def test_network_encoder_rejects_bad_arguments(tmp_path):
    network = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="input_kind"):
        NetworkEncoder(network, "x", input_kind="audio")
    with pytest.raises(ValueError, match="capture"):
        NetworkEncoder(network, "x", capture="both")
    with pytest.raises(ValueError, match="layer 'missing'"):
        NetworkEncoder(network, "x", layer="missing")
    with pytest.raises(FileNotFoundError, match="weights_path"):
        NetworkEncoder(network, "x", weights_path=tmp_path / "none.pt")
    encoder = resnet_encoder("img", block_inplanes=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="must be a image tensor"):
        encoder.encode(torch.randn(2, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        encoder.encode_batched(torch.randn(2, 1, 32, 32), batch_size=0)


def test_torchscript_encoder_maps_model_space_to_the_module_range(scripted_path):
    encoder = TorchScriptEncoder(scripted_path, "mean", input_range=(0.0, 255.0), channels=3)
    features = encoder.encode(torch.full((2, 1, 8, 8), 1.0))  # +1 in model space -> 255, grey -> RGB
    torch.testing.assert_close(features, torch.full((2, 3), 255.0))
    assert not encoder.is_standard and metric_name("FD", encoder) == "FD_mean"


def test_standard_presets_are_named_fid_and_fvd(scripted_path):
    inception = inception_v3_encoder(scripted_path)
    torch.testing.assert_close(inception.encode(torch.full((1, 1, 8, 8), -1.0)), torch.zeros(1, 3))
    assert metric_name("FD", inception) == "FID" and metric_name("KD", inception) == "KID"
    i3d = i3d_encoder(scripted_path)
    assert i3d.input_kind == InputKind.VIDEO and i3d.encode(torch.zeros(2, 1, 4, 8, 8)).shape == (2, 3)
    assert metric_name("FD", i3d) == "FVD" and metric_name("KD", i3d) == "KVD"


def test_torchscript_encoder_rejects_bad_arguments(tmp_path, scripted_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TorchScriptEncoder(tmp_path / "missing.pt", "x")
    with pytest.raises(ValueError, match="input_kind"):
        TorchScriptEncoder(scripted_path, "x", input_kind="audio")
    with pytest.raises(ValueError, match="source_range"):
        TorchScriptEncoder(scripted_path, "x", source_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="kind must be"):
        metric_name("MMD", TorchScriptEncoder(scripted_path, "x"))


def test_a_custom_encoder_plugs_into_the_interface():
    from echo_monai.metrics.encoders import FeatureEncoder

    class FrameMeans(FeatureEncoder):
        name, input_kind = "frame_means", InputKind.VIDEO

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            self.check_input(x)
            return x.mean(dim=(1, 3, 4))

    encoder = FrameMeans()
    assert encoder(torch.ones(2, 1, 5, 4, 4)).shape == (2, 5) and metric_name("FD", encoder) == "FD_frame_means"
    with pytest.raises(TypeError):
        FeatureEncoder()  # abstract
