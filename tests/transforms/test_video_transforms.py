from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from echo_monai.data import read_video, write_video
from echo_monai.transforms import CenterClipd, LoadVideod, PickFramesd, RandClipd, ResampleFPSd, ResizeVideod


def _ramp(frames: int = 20) -> torch.Tensor:
    """(1, T, 2, 3) video whose frame t holds the value t."""
    return torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1).expand(1, frames, 2, 3).clone()


@pytest.fixture
def avi(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (10, 16, 16), np.uint8)
    return write_video(tmp_path / "v.avi", frames, fps=40)


def test_load_video_tensor_lazy_and_fps(avi, tmp_path):
    out = LoadVideod("video", fps_key="fps")({"video": str(avi)})
    assert out["video"].shape == (1, 10, 16, 16) and out["video"].dtype == torch.float32
    assert out["fps"] == pytest.approx(40.0)
    assert LoadVideod("video", fps_key="fps")({"video": avi, "fps": 50.0})["fps"] == 50.0  # reader's value wins
    lazy = LoadVideod("video", cache_dir=tmp_path / "cache", lazy=True)({"video": avi})["video"]
    assert isinstance(lazy, np.memmap) and lazy.shape == (1, 10, 16, 16) and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy[0], read_video(avi))
    rgb = LoadVideod("video", grayscale=False)({"video": avi})["video"]
    assert rgb.shape == (3, 10, 16, 16)


def test_resample_fps_halves_frames_and_remaps_indices():
    out = ResampleFPSd("video", target_fps=25, frame_keys=("ed_frame", "es_frame"))(
        {"video": _ramp(20), "fps": 50.0, "ed_frame": 4, "es_frame": 7}
    )
    assert out["video"][0, :, 0, 0].tolist() == list(range(0, 20, 2)) and out["fps"] == 25.0
    assert (out["ed_frame"], out["es_frame"]) == (2, 3)
    up = ResampleFPSd("video", target_fps=100)({"video": _ramp(5).numpy(), "fps": 50.0})
    assert up["video"].shape[1] == 10 and isinstance(up["video"], np.ndarray)


def test_resample_fps_errors():
    with pytest.raises(ValueError, match="target_fps"):
        ResampleFPSd("video", target_fps=0)
    with pytest.raises(ValueError, match="'fps'.*positive"):
        ResampleFPSd("video", target_fps=25)({"video": _ramp(), "fps": float("nan")})


def test_center_clip_with_period_and_frame_keys():
    out = CenterClipd("video", num_frames=4, period=3, frame_keys=("ed_frame", "es_frame"), start_key="start")(
        {"video": _ramp(20), "ed_frame": 10, "es_frame": 11}
    )
    # span 10, start (20 - 10) // 2 = 5 -> frames 5, 8, 11, 14
    assert out["video"][0, :, 0, 0].tolist() == [5, 8, 11, 14] and out["start"] == 5
    assert (out["ed_frame"], out["es_frame"]) == (-1, 2)


def test_random_clip_is_seeded_and_shares_start_between_keys():
    data = {"video": _ramp(50), "label": _ramp(50).to(torch.uint8)}
    first = RandClipd(("video", "label"), num_frames=8, period=2, start_key="start").set_random_state(3)(data)
    again = RandClipd(("video", "label"), num_frames=8, period=2, start_key="start").set_random_state(3)(data)
    start = first["start"]
    assert start == again["start"] and 0 <= start <= 50 - 15
    assert first["video"][0, :, 0, 0].tolist() == list(range(start, start + 16, 2))
    assert torch.equal(first["label"].float(), first["video"]) and first["label"].dtype == torch.uint8
    starts = {
        RandClipd("video", num_frames=8).set_random_state(s)({"video": _ramp(50)})["video"][0, 0, 0, 0].item()
        for s in range(10)
    }
    assert len(starts) > 3


def test_clip_pads_short_videos_and_reads_memmaps(avi, tmp_path):
    edge = RandClipd("video", num_frames=6, period=2, pad_mode="edge")({"video": _ramp(5)})["video"]
    assert edge[0, :, 0, 0].tolist() == [0, 2, 4, 4, 4, 4]
    zeros = CenterClipd("video", num_frames=4, pad_mode="zeros", dtype=torch.float32)({"video": _ramp(2)})["video"]
    assert zeros[0, :, 0, 0].tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError, match=r"video 'v7' has 5 frames; a clip of 6 frames 2 apart needs at least 11"):
        RandClipd("video", num_frames=6, period=2, pad_mode="error")({"video": _ramp(5), "video_name": "v7"})
    exact = CenterClipd("video", num_frames=5, pad_mode="error")({"video": _ramp(5)})["video"]
    assert exact[0, :, 0, 0].tolist() == [0, 1, 2, 3, 4]
    lazy = LoadVideod("video", cache_dir=tmp_path / "c", lazy=True)({"video": avi})
    clip = CenterClipd("video", num_frames=3, period=2, dtype=torch.float32)(lazy)["video"]
    assert isinstance(clip, torch.Tensor) and clip.dtype == torch.float32 and clip.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(clip[0].numpy(), read_video(avi)[2:8:2])


def test_clip_argument_and_shape_errors():
    with pytest.raises(ValueError, match="num_frames"):
        RandClipd("video", num_frames=0)
    with pytest.raises(ValueError, match="period"):
        CenterClipd("video", num_frames=2, period=0)
    with pytest.raises(ValueError, match="pad_mode"):
        CenterClipd("video", num_frames=2, pad_mode="reflect")
    with pytest.raises(ValueError, match=r"'video'.*\(C, T, H, W\)"):
        CenterClipd("video", num_frames=2)({"video": torch.zeros(3, 4, 4)})
    with pytest.raises(ValueError, match="same number of frames"):
        CenterClipd(("video", "label"), num_frames=2)({"video": _ramp(5), "label": _ramp(6)})


def test_resize_video_keeps_time_and_label_values():
    label = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    label[:, :, 2:6, 2:6] = 3
    out = ResizeVideod(("video", "label"), (16, 12), mode=("bilinear", "nearest-exact"))(
        {"video": torch.rand(1, 3, 8, 8), "label": label}
    )
    assert out["video"].shape == (1, 3, 16, 12) and out["video"].dtype == torch.float32
    assert out["label"].shape == (1, 3, 16, 12) and out["label"].dtype == torch.uint8
    assert set(out["label"].unique().tolist()) == {0, 3}
    constant = ResizeVideod("video", 4)({"video": torch.full((2, 5, 8, 8), 7.0)})["video"]
    assert constant.shape == (2, 5, 4, 4) and torch.allclose(constant, torch.tensor(7.0))
    with pytest.raises(ValueError, match="spatial_size"):
        ResizeVideod("video", (0, 4))


def test_pick_frames():
    out = PickFramesd(("video", "label"))({"video": _ramp(10), "label": _ramp(10), "ed_frame": 2, "es_frame": 7})
    assert out["ed_image"].shape == (1, 2, 3) and float(out["ed_image"][0, 0, 0]) == 2.0
    assert float(out["es_label"][0, 0, 0]) == 7.0
    with pytest.raises(ValueError, match="es_frame=12.*10 frames"):
        PickFramesd("video")({"video": _ramp(10), "ed_frame": 0, "es_frame": 12})
    with pytest.raises(KeyError, match="ed_frame"):
        PickFramesd("video")({"video": _ramp(10)})
    with pytest.raises(ValueError, match="frame_keys"):
        PickFramesd("video", frame_keys=())


def test_chain_with_compose_is_reproducible(avi, tmp_path):
    def chain():
        return Compose(
            [
                LoadVideod("video", cache_dir=tmp_path / "cache", lazy=True, fps_key="fps"),
                RandClipd("video", num_frames=4, period=2, dtype=torch.float32),
                ResizeVideod("video", (8, 8)),
            ]
        ).set_random_state(7)

    first, second = chain()({"video": str(avi)}), chain()({"video": str(avi)})
    assert first["video"].shape == (1, 4, 8, 8) and torch.equal(first["video"], second["video"])
