from __future__ import annotations

import cv2
import numpy as np
import pytest

from echo_monai.data import VideoReadError, probe_video, read_video, write_video


def _frames(t: int = 6, h: int = 16, w: int = 24) -> np.ndarray:
    # smooth content so MJPG round trips closely
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([((x * 8 + y * 4 + 10 * i) % 200 + 20).astype(np.uint8) for i in range(t)])


def test_round_trip_grey_rgb_and_probe(tmp_path):
    path = write_video(tmp_path / "sub" / "v.avi", _frames(), fps=25)
    grey = read_video(path)
    assert grey.shape == (6, 16, 24) and grey.dtype == np.uint8
    assert np.abs(grey.astype(int) - _frames()).mean() < 3
    rgb = read_video(path, grayscale=False)
    assert rgb.shape == (6, 16, 24, 3) and np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() <= 3
    assert read_video(path, max_frames=2).shape[0] == 2
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (6, 16, 24) and info.fps == pytest.approx(25)
    assert not list((tmp_path / "sub").glob(".*tmp*"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.avi"):
        read_video(tmp_path / "nothere.avi")
    with pytest.raises(FileNotFoundError, match="nothere.avi"):
        probe_video(tmp_path / "nothere.avi")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.avi"
    path.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(VideoReadError, match="corrupt.avi.*could not be opened"):
        read_video(path)


def test_zero_frame_file(tmp_path):
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (16, 16), True)
    writer.release()
    with pytest.raises(VideoReadError, match="empty.avi"):
        read_video(path)
    with pytest.raises(VideoReadError, match="empty.avi"):
        probe_video(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_frames"):
        read_video(write_video(tmp_path / "v.avi", _frames(), 25), max_frames=0)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        write_video(tmp_path / "w.avi", np.zeros((4, 4), np.uint8), 25)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "w.avi", _frames(), 0)
    with pytest.raises(ValueError, match="codec"):
        write_video(tmp_path / "w.avi", _frames(), 25, codec="MJPEG")


def test_truncated_file_is_an_error(tmp_path):
    # a cut AVI keeps its header: OpenCV opens it and announces every frame, but decodes only the first ones
    path = write_video(tmp_path / "cut.avi", np.random.default_rng(0).integers(0, 255, (12, 32, 32), np.uint8), 25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert probe_video(path).num_frames == 12
    with pytest.raises(VideoReadError, match=r"cut.avi' decodes to \d+ frames but its header announces 12; .*trunc"):
        read_video(path)
    assert 0 < len(read_video(path, check_length=False)) < 12
    assert len(read_video(path, max_frames=1)) == 1  # the frames asked for are all there
