from __future__ import annotations

import pytest
import torch

from echo_monai.networks.nets.reidentification import ReIdentificationNet


def test_unit_norm_embeddings():
    net = ReIdentificationNet(in_channels=4, channels=(8, 16), embedding_dim=12, norm_num_groups=4)
    out = net(torch.randn(5, 4, 16, 16))
    assert out.shape == (5, 12)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"channels": ()}, "channels"),
        ({"channels": (6,), "norm_num_groups": 4}, "norm_num_groups"),
        ({"embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReIdentificationNet(**{"channels": (8,), "norm_num_groups": 4, **kwargs})


def test_input_channel_error():
    with pytest.raises(ValueError, match=r"expected input \(B, 4, H, W\)"):
        ReIdentificationNet(in_channels=4, channels=(8,), norm_num_groups=4)(torch.randn(2, 3, 8, 8))
