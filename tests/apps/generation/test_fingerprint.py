"""The generation job's fingerprint of networks: every parameter counts, a 0-dim one (MeanFlowDenoiser's gate) too."""

from __future__ import annotations

import torch

from echo_monai.apps.generation.fingerprint import describe, module_fingerprint


class WithScalar(torch.nn.Module):
    def __init__(self, gate: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.gate = torch.nn.Parameter(torch.tensor(gate))


def test_a_scalar_parameter_is_fingerprinted_by_its_value():
    torch.manual_seed(0)
    a = WithScalar(0.0)
    b = WithScalar(0.0)
    b.load_state_dict(a.state_dict())
    assert module_fingerprint(a) == module_fingerprint(b)
    with torch.no_grad():
        b.gate.fill_(0.5)
    assert module_fingerprint(a) != module_fingerprint(b)
    assert describe(torch.tensor(0.5)) == 0.5 and isinstance(describe(torch.zeros(())), float)
    assert describe(a)["weights"] == module_fingerprint(a)
