from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from echo_monai.handlers import EMA


def _engine_with(model, steps, values):
    """An engine whose iteration i sets every weight to values[i-1]."""

    def step(engine, _):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(values[engine.state.iteration - 1])

    return Engine(step), steps


def test_ema_matches_closed_form():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.0)
    ema = EMA(model, decay=0.9)
    engine, steps = _engine_with(model, 5, [1.0] * 5)
    ema.attach(engine)
    engine.run(range(steps), max_epochs=1)
    # e_k = w + (e_0 - w) * decay^k with w = 1, e_0 = 0
    expected = 1.0 - 0.9**5
    for p in ema.ema_model.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))


def test_start_iteration_copies_then_averages_every_n():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.5, start_iteration=2, update_every=2)
    engine, steps = _engine_with(model, 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ema.attach(engine)
    engine.run(range(steps), max_epochs=1)
    # it 2: copy -> 2; it 4: 0.5*2 + 0.5*4 = 3; it 6: 0.5*3 + 0.5*6 = 4.5
    assert float(ema.ema_model.weight) == pytest.approx(4.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"decay": 1.0}, "decay"), ({"start_iteration": -1}, "start_iteration"), ({"update_every": 0}, "update_every")],
)
def test_ema_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EMA(torch.nn.Linear(1, 1), **kwargs)


def test_frozen_parameters_stay_exact_in_the_average():
    """A ControlNet stage averages a network whose base is frozen: the base must come out bit for bit unchanged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    ema = EMA(model, decay=0.9, start_iteration=0)
    engine = Engine(lambda e, b: None)
    ema.attach(engine)
    frozen = model[0].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)  # the trainable part moves
    engine.run([0] * 5, max_epochs=1)
    assert torch.equal(ema.ema_model[0].weight, frozen)
    assert not torch.equal(ema.ema_model[1].weight, model[1].weight)  # still an average
