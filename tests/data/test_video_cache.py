from __future__ import annotations

import os

import numpy as np
import pytest

from echo_monai.data import VideoCache, VideoReadError, read_video, write_video
from echo_monai.data import video_cache as video_cache_module


def _video(tmp_path, name: str = "v.avi", seed: int = 0):
    frames = np.random.default_rng(seed).integers(0, 255, (8, 16, 16), np.uint8)
    return write_video(tmp_path / name, frames, fps=30)


def test_load_matches_decode_and_is_memory_mapped(tmp_path):
    path = _video(tmp_path)
    cache = VideoCache(tmp_path / "cache")
    assert not cache.contains(path)
    frames = cache.load(path)
    assert isinstance(frames, np.memmap) and not frames.flags.writeable
    np.testing.assert_array_equal(frames, read_video(path))
    assert cache.contains(path) and len(list((tmp_path / "cache").iterdir())) == 1


def test_decodes_once(tmp_path, monkeypatch):
    path = _video(tmp_path)
    calls = []
    original = video_cache_module.read_video
    monkeypatch.setattr(video_cache_module, "read_video", lambda *a, **k: calls.append(a) or original(*a, **k))
    cache = VideoCache(tmp_path / "cache")
    for _ in range(3):
        cache.load(path)
    assert len(calls) == 1
    assert len(VideoCache(tmp_path / "cache").load(path)) == 8 and len(calls) == 1  # a new instance reuses entries


def test_key_changes_when_the_source_changes(tmp_path):
    path = _video(tmp_path)
    cache = VideoCache(tmp_path / "cache")
    first = np.array(cache.load(path))
    _video(tmp_path, seed=1)
    os.utime(path, ns=(1, 1))
    second = np.array(cache.load(path))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, read_video(path))
    assert VideoCache(tmp_path / "cache", grayscale=False).load(path).shape == (8, 16, 16, 3)


def test_errors_name_the_file(tmp_path):
    cache = VideoCache(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="absent.avi"):
        cache.load(tmp_path / "absent.avi")
    (tmp_path / "bad.avi").write_bytes(b"xx" * 50)
    with pytest.raises(VideoReadError, match="bad.avi"):
        cache.load(tmp_path / "bad.avi")
    assert not [p for p in (tmp_path / "cache").iterdir()]  # no partial entry left behind
    with pytest.raises(ValueError, match="cache_dir"):
        VideoCache("")
