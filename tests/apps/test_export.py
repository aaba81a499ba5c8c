from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.apps.export import EchoNetExporter, shard
from echo_monai.data import EchoNetDynamic


def _video(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 6, 32, 32, generator=g) * 2 - 1


def test_shards_cover_the_work_once(monkeypatch):
    items = list(range(7))
    assert sorted(shard(items, 0, 3) + shard(items, 1, 3) + shard(items, 2, 3)) == items
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard(items) == [1, 3, 5]
    with pytest.raises(ValueError, match="rank"):
        shard(items, 2, 2)


def test_two_ranks_export_then_read_back(tmp_path):
    requests = [{"name": f"synthetic_{i:03d}", "ejection_fraction": 30.0 + 5 * i} for i in range(5)]
    for rank in (0, 1):  # each "process" writes its share
        exporter = EchoNetExporter(tmp_path, fps=32)
        for item in exporter.pending(shard(requests, rank, 2)):
            i = int(item["name"][-3:])
            exporter.write(item["name"], _video(i), item["ejection_fraction"], split="TEST" if i == 4 else "TRAIN")
    EchoNetExporter(tmp_path).finalize()
    data = EchoNetDynamic(tmp_path, split="ALL", require_tracings=False)
    assert len(data) == 5
    item = data[2]
    assert item["ejection_fraction"] == pytest.approx(40.0) and item["fps"] == 32
    expected = ((_video(2)[0].clamp(-1, 1) + 1) * 127.5).round()
    assert item["video"].shape == (1, 6, 32, 32)
    assert float((item["video"][0] - expected).abs().mean()) < 20  # MJPG is lossy
    assert len(EchoNetDynamic(tmp_path, split="TEST", require_tracings=False)) == 1


def test_resume_skips_finished_videos(tmp_path):
    exporter = EchoNetExporter(tmp_path)
    requests = [{"name": "a"}, {"name": "b"}]
    exporter.write("a", _video(0), 50.0)
    mtime = (tmp_path / "Videos" / "a.avi").stat().st_mtime_ns
    assert exporter.pending(requests) == [{"name": "b"}]
    (tmp_path / "rows" / "a.json").unlink()  # interrupted between the two files: redone
    assert exporter.pending(requests) == requests
    assert (tmp_path / "Videos" / "a.avi").stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob(".tmp*"))


def test_bad_input_errors(tmp_path):
    exporter = EchoNetExporter(tmp_path)
    with pytest.raises(ValueError, match="v1: ejection_fraction must be in 0-100"):
        exporter.write("v1", _video(0), 120.0)
    with pytest.raises(ValueError, match="v2: split"):
        exporter.write("v2", _video(0), 50.0, split="HOLDOUT")
    with pytest.raises(ValueError, match=r"v3: expected a video"):
        exporter.write("v3", torch.zeros(2, 3, 8, 8), 50.0)
    with pytest.raises(ValueError, match="fps"):
        EchoNetExporter(tmp_path, fps=0)
    (tmp_path / "rows").mkdir(exist_ok=True)
    (tmp_path / "rows" / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        exporter.finalize()


def test_uint8_video_written_as_is(tmp_path):
    frames = np.full((3, 16, 16), 200, np.uint8)
    EchoNetExporter(tmp_path).write("u", frames, 55.0)
    EchoNetExporter(tmp_path).finalize()
    video = EchoNetDynamic(tmp_path, require_tracings=False)[0]["video"]
    assert abs(float(video.mean()) - 200) < 3
