from __future__ import annotations

import cv2
import numpy as np
import pytest

from echo_monai.data.atomic import (
    atomic_path,
    write_avi,
    write_csv,
    write_json,
    write_png,
)


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("file.txt") and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "broken.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_writers_produce_readable_files(tmp_path):
    write_csv(tmp_path / "a.csv", ["A", "B"], [(1, 2), (3, 4)])
    assert (tmp_path / "a.csv").read_text() == "A,B\n1,2\n3,4\n"
    write_json(tmp_path / "a.json", {"k": [1]})
    image = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED), image)
    frames = np.full((4, 16, 16), 120, np.uint8)
    write_avi(tmp_path / "a.avi", frames, fps=25.0)
    capture = cv2.VideoCapture(str(tmp_path / "a.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    capture.release()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_bad_arrays_raise(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="T >= 1"):
        write_avi(tmp_path / "x.avi", np.zeros((0, 4, 4), np.uint8), fps=10)
