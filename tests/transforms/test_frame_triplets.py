"""Frame triplets for frame interpolation and OpenCV pseudo flow: rules, indices, flow accuracy and convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from echo_monai.transforms import FrameTripletd, PseudoFlowd


def _cycle_video(num_frames: int = 12, size: int = 16, seed: int = 0) -> torch.Tensor:
    """One heart-cycle-like clip (1, T, H, W): ED pattern at t = 0, ES pattern at t = T / 2, cosine in between."""
    g = torch.Generator().manual_seed(seed)
    ed, es = torch.rand(2, size, size, generator=g)
    phase = [(1 - math.cos(2 * math.pi * t / num_frames)) / 2 for t in range(num_frames)]
    frames = torch.stack([ed + s * (es - ed) for s in phase])
    return (frames + 0.01 * torch.randn(frames.shape, generator=g))[None]


def _texture(size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random texture (size, size) in [-1, 1]: Gaussian-blurred noise."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, size, size, generator=g)
    x = torch.arange(-6, 7, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * 2.0**2))
    kernel = (kernel / kernel.sum())[None, None]
    smooth = F.conv2d(F.conv2d(noise, kernel[..., None, :], padding=(0, 6)), kernel[..., None], padding=(6, 0))[0, 0]
    return (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 2 - 1


def test_random_rule_picks_ordered_frames_within_the_gap():
    video = torch.arange(10.0).reshape(1, 10, 1, 1).expand(1, 10, 4, 4)
    transform = FrameTripletd("video", min_gap=2, max_gap=4)
    transform.set_random_state(0)
    gaps = set()
    for _ in range(30):
        d = transform({"video": video})
        a, mid, b = d["frame_indices"].tolist()
        assert 2 <= b - a <= 4 and mid == (a + b) // 2 and 0 <= a and b < 10
        for key, index in zip(("frame_a", "frame_mid", "frame_b"), (a, mid, b), strict=True):
            assert d[key].shape == (1, 4, 4) and torch.equal(d[key], video[:, index])
        gaps.add(b - a)
    assert gaps == {2, 3, 4}
    first, second = (FrameTripletd("video", min_gap=2, max_gap=4).set_random_state(7) for _ in range(2))
    assert torch.equal(first({"video": video})["frame_indices"], second({"video": video})["frame_indices"])


def test_random_rule_reads_numpy_memory_maps_and_custom_keys():
    video = np.arange(6, dtype=np.uint8).reshape(1, 6, 1, 1).repeat(3, axis=2).repeat(3, axis=3)
    d = FrameTripletd("video", output_keys=("x", "y", "z"), indices_key="idx")({"video": video})
    a, mid, b = d["idx"].tolist()
    assert d["x"].shape == (1, 3, 3) and int(d["x"][0, 0, 0]) == a and int(d["z"][0, 0, 0]) == b


def test_similarity_rule_finds_the_two_extremes_of_a_cycle():
    d = FrameTripletd("video", rule="similarity")({"video": _cycle_video(12)})
    assert d["frame_indices"].tolist() == [0, 3, 6]
    # deterministic, and max_gap keeps b within reach of the first extreme
    d = FrameTripletd("video", rule="similarity", max_gap=3)({"video": _cycle_video(12)})
    a, mid, b = d["frame_indices"].tolist()
    assert b - a == 3 and (a in (0, 6) or b in (0, 6))


def test_ed_es_rule_uses_the_item_indices_in_time_order():
    video = torch.arange(9.0).reshape(1, 9, 1, 1)
    d = FrameTripletd("video", ed_es_keys=("ed_frame", "es_frame"))({"video": video, "ed_frame": 7, "es_frame": 2})
    assert d["frame_indices"].tolist() == [2, 4, 7] and float(d["frame_mid"][0, 0]) == 4.0


def test_frame_triplet_item_errors():
    with pytest.raises(ValueError, match=r"'video' has 2 frames; min_gap = 2 needs at least 3"):
        FrameTripletd("video")({"video": torch.zeros(1, 2, 4, 4)})
    with pytest.raises(ValueError, match=r"'video' must be a video \(C, T, H, W\), got shape \(2, 4, 4\)"):
        FrameTripletd("video")({"video": torch.zeros(2, 4, 4)})
    ed_es = FrameTripletd("video", ed_es_keys=("ed_frame", "es_frame"))
    with pytest.raises(KeyError, match=r"the item lacks \['es_frame'\]"):
        ed_es({"video": torch.zeros(1, 8, 4, 4), "ed_frame": 1})
    with pytest.raises(ValueError, match=r"ED / ES frames \(-1, -1\) must lie in \[0, 8\)"):
        ed_es({"video": torch.zeros(1, 8, 4, 4), "ed_frame": -1, "es_frame": -1})
    with pytest.raises(ValueError, match=r"ED / ES frames \(3, 4\) are 1 apart; min_gap = 2"):
        ed_es({"video": torch.zeros(1, 8, 4, 4), "ed_frame": 3, "es_frame": 4})
    # the extreme is the middle frame of 3: nothing lies 2 frames from it
    common, odd = torch.rand(2, 4, 4)
    video = torch.stack([common, odd, common])[None]
    with pytest.raises(ValueError, match="no frame of the clip is 2 to 2 frames from frame 1"):
        FrameTripletd("video", rule="similarity", max_gap=2)({"video": video})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rule": "farthest"}, "rule must be one of"),
        ({"min_gap": 1}, "min_gap must be >= 2"),
        ({"max_gap": 2, "min_gap": 3}, "max_gap must be None or >= min_gap = 3, got 2"),
        ({"output_keys": ("a", "b")}, "output_keys must name 3 keys"),
        ({"ed_es_keys": ("ed_frame",)}, "ed_es_keys must be"),
    ],
)
def test_frame_triplet_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrameTripletd("video", **kwargs)


@pytest.mark.parametrize("method", ["farneback", "dis"])
@pytest.mark.parametrize(("dx", "dy"), [(2, -1), (-3, 2)])
def test_pseudo_flow_recovers_a_known_shift(method, dx, dy):
    texture, margin, size = _texture(96), 16, 64
    frame_a = texture[margin : margin + size, margin : margin + size]
    frame_b = texture[margin - dy : margin - dy + size, margin - dx : margin - dx + size]  # b(x) = a(x - d)
    assert torch.equal(frame_b[10 + dy, 10 + dx], frame_a[10, 10])
    out = PseudoFlowd(method=method)({"frame_a": frame_a[None], "frame_b": frame_b[None]})
    flow = out["pseudo_flow"]
    assert flow.shape == (2, size, size) and flow.dtype == torch.float32
    inner = flow[:, 12:-12, 12:-12].reshape(2, -1)
    median = inner.median(dim=1).values
    assert abs(float(median[0]) - dx) < 0.5 and abs(float(median[1]) - dy) < 0.5
    # the convention frame_a(x) ~ frame_b(x + flow(x)): backward-warping b by the flow gives a back
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")  # fmt: skip
    grid = torch.stack([(xs + flow[0]) / (size - 1) * 2 - 1, (ys + flow[1]) / (size - 1) * 2 - 1], dim=-1)
    warped = F.grid_sample(frame_b[None, None], grid[None], align_corners=True)[0, 0]
    error = (warped - frame_a)[12:-12, 12:-12].abs().mean()
    assert error < 0.25 * (frame_b - frame_a)[12:-12, 12:-12].abs().mean()


def test_pseudo_flow_value_range_and_params():
    texture = _texture(40)
    frame_a, frame_b = texture[4:36, 4:36], texture[4:36, 3:35]  # dx = 1
    raw = PseudoFlowd(value_range=(0, 255))(
        {"frame_a": (frame_a[None] + 1) * 127.5, "frame_b": (frame_b[None] + 1) * 127.5}
    )
    scaled = PseudoFlowd()({"frame_a": frame_a[None], "frame_b": frame_b[None]})
    torch.testing.assert_close(raw["pseudo_flow"], scaled["pseudo_flow"], atol=1e-3, rtol=0)
    fast = PseudoFlowd(method="dis", flow_params={"preset": "fast"})(
        {"frame_a": frame_a[None], "frame_b": frame_b[None]}
    )
    assert fast["pseudo_flow"].shape == (2, 32, 32)


def test_pseudo_flow_errors():
    frame = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="keys must name two frames"):
        PseudoFlowd(keys=("frame_a",))
    with pytest.raises(ValueError, match="method must be one of"):
        PseudoFlowd(method="lucas-kanade")
    with pytest.raises(ValueError, match=r"value_range must be \(low, high\) with low < high, got \(1, 1\)"):
        PseudoFlowd(value_range=(1, 1))
    with pytest.raises(KeyError, match=r"frame keys \['frame_b'\] missing; add echo_monai.transforms.FrameTripletd"):
        PseudoFlowd()({"frame_a": frame})
    with pytest.raises(ValueError, match=r"'frame_a' must be a frame \(C, H, W\)"):
        PseudoFlowd()({"frame_a": torch.zeros(8, 8), "frame_b": frame})
    with pytest.raises(ValueError, match="must have the same H, W"):
        PseudoFlowd()({"frame_a": frame, "frame_b": torch.zeros(1, 8, 9)})
    with pytest.raises(ValueError, match="DIS preset must be one of"):
        PseudoFlowd(method="dis", flow_params={"preset": "slow"})({"frame_a": frame, "frame_b": frame})
