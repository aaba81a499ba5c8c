from __future__ import annotations

import pytest
import torch

from echo_monai.networks.blocks import ScalarTokenEmbedding


def test_token_shapes_and_sensitivity():
    embed = ScalarTokenEmbedding(dim=16, scale=100.0)
    a = embed(torch.tensor([30.0, 60.0]))
    assert a.shape == (2, 1, 16)
    assert embed(torch.tensor([[30.0, 60.0, 45.0]])).shape == (1, 3, 16)
    torch.testing.assert_close(embed(torch.tensor([[[30.0]], [[60.0]]])), a)  # (B, 1, 1) tokens from Conditioning
    assert not torch.allclose(a[0], a[1])


def test_null_value_gets_the_learnt_null_token():
    embed = ScalarTokenEmbedding(dim=8, scale=100.0, null_value=-1.0)
    with torch.no_grad():
        embed.null_token.fill_(3.0)
    tokens = embed(torch.tensor([50.0, -1.0]))
    assert torch.all(tokens[1] == 3.0) and not torch.all(tokens[0] == 3.0)


@pytest.mark.parametrize(
    "kwargs, match", [({"dim": 0}, "dim"), ({"scale": 0.0}, "scale"), ({"num_frequencies": 0}, "num_frequencies")]
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScalarTokenEmbedding(**{"dim": 4, **kwargs})
    with pytest.raises(ValueError, match="expected"):
        ScalarTokenEmbedding(4)(torch.zeros(1, 2, 3, 4))
