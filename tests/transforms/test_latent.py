"""One latent frame with its LV mask (or the null mask), and view names to indices."""

from __future__ import annotations

import pytest
import torch

from echo_monai.transforms import ClassIndexd, RandTracedFramed


def _item(ed=2, es=5, frames=8):
    latent = torch.arange(frames, dtype=torch.float32).reshape(1, frames, 1, 1).expand(4, frames, 3, 3).clone()
    return {
        "latent": latent,  # frame t holds the value t, so the chosen frame is visible in the output
        "ed_frame": ed,
        "es_frame": es,
        "ed_mask": torch.ones(1, 3, 3),
        "es_mask": torch.zeros(3, 3),  # (h, w) masks get their channel
    }


def test_traced_frames_come_with_their_mask():
    t = RandTracedFramed("latent", traced_prob=1.0, frame_key="frame")
    t.set_random_state(0)
    seen = set()
    for _ in range(30):
        out = t(_item())
        frame = out["frame"]
        seen.add(frame)
        assert out["latent"].shape == (4, 3, 3) and torch.all(out["latent"] == frame)
        expected = torch.ones(1, 3, 3) if frame == 2 else torch.zeros(1, 3, 3)
        assert torch.equal(out["lv_mask"], expected)
    assert seen == {2, 5}


def test_untraced_draws_any_frame_with_the_null_mask():
    t = RandTracedFramed("latent", traced_prob=0.0, null_value=-1.0, frame_key="frame")
    t.set_random_state(0)
    frames = {t(_item())["frame"] for _ in range(60)}
    assert frames == set(range(8))
    assert torch.all(t(_item())["lv_mask"] == -1.0)


def test_videos_without_tracings_always_get_the_null_mask():
    t = RandTracedFramed("latent", traced_prob=1.0)
    out = t(_item(ed=-1, es=-1))
    assert out["lv_mask"].shape == (1, 3, 3) and torch.all(out["lv_mask"] == -1.0)
    no_keys = {"latent": torch.randn(4, 6, 3, 3)}
    assert torch.all(t(no_keys)["lv_mask"] == -1.0)


def test_mixed_probability_gives_both_kinds():
    t = RandTracedFramed("latent", traced_prob=0.5)
    t.set_random_state(1)
    nulls = sum(bool(torch.all(t(_item())["lv_mask"] == -1.0)) for _ in range(200))
    assert 60 < nulls < 140


def test_bad_shapes_raise_naming_the_key():
    t = RandTracedFramed("latent", traced_prob=1.0)
    with pytest.raises(ValueError, match="'latent' must be a latent video"):
        t({"latent": torch.randn(4, 3, 3)})
    bad = {**_item(), "ed_mask": torch.ones(1, 6, 6), "es_frame": -1}
    with pytest.raises(ValueError, match="mask 'ed_mask' has shape"):
        t(bad)
    with pytest.raises(ValueError, match="traced_prob"):
        RandTracedFramed(traced_prob=1.5)


def test_class_index():
    t = ClassIndexd("view", ["A4C", "PSAX"], default="A4C")
    assert t({"view": "PSAX"})["view"] == 1
    assert t({})["view"] == 0
    assert t({"view": torch.tensor(1)})["view"] == 1
    with pytest.raises(ValueError, match=r"'view' is 'PLAX'; expected one of \['A4C', 'PSAX'\]"):
        t({"view": "PLAX"})
    with pytest.raises(ValueError, match="'view' is 2"):
        t({"view": 2})
    with pytest.raises(KeyError, match="'view' is missing"):
        ClassIndexd("view", ["A4C"])({})
