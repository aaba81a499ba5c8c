from __future__ import annotations

import numpy as np
import pytest

from echo_monai.data.tracings import (
    outline_area,
    outline_mask,
    read_chord_tracings,
    read_csv_rows,
    read_polygon_tracings,
    select_ed_es,
    tracing_outline,
    video_key,
)


def test_chord_outline_skips_the_long_axis_and_closes_the_polygon():
    chords = np.array([[5, 0, 5, 10], [2, 2, 8, 2], [1, 5, 9, 5], [3, 8, 7, 8]], dtype=float)
    outline = tracing_outline(chords)
    assert outline.tolist() == [[2, 2], [1, 5], [3, 8], [7, 8], [9, 5], [8, 2]]
    # trapezoids between the chords: (6 + 8) / 2 * 3 + (8 + 4) / 2 * 3
    assert outline_area(outline) == pytest.approx(39.0)
    mask = outline_mask(outline, (12, 12))
    assert mask.dtype == np.uint8 and mask[5, 5] == 1 and mask[0, 0] == 0
    assert 39 <= int(mask.sum()) <= 60  # boundary pixels are filled too


def test_outline_shape_error():
    with pytest.raises(ValueError, match=r"\(N, 4\) chords or \(N, 2\) vertices"):
        tracing_outline(np.zeros((3, 3)))


def test_select_ed_es_needs_two_frames():
    square = {
        0: np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float),
        9: np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float),
    }
    assert select_ed_es(square) == (0, 9)
    with pytest.raises(ValueError, match=r"two frames.*\[0\]"):
        select_ed_es({0: square[0]})


def test_csv_parsing_and_errors(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    path.write_text("FileName,X1,Y1,X2,Y2,Frame\na.avi,1,2,3,4,7\na.avi,1,2,3,4,7\nb,0,0,1,1,3\n")
    tracings = read_chord_tracings(path)
    assert set(tracings) == {"a", "b"} and tracings["a"][7].shape == (2, 4) and video_key("x.AVI") == "x"
    path.write_text("FileName,X,Y,Frame\na.avi,1,2,x\n")
    with pytest.raises(ValueError, match="line 2: expected numeric Frame"):
        read_polygon_tracings(path)
    with pytest.raises(ValueError, match="lacks column"):
        read_chord_tracings(path)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_csv_rows(tmp_path / "missing.csv", ())
