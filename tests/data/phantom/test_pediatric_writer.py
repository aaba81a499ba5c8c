from __future__ import annotations

import csv

import numpy as np
import pytest

from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.pediatric_writer import (
    PEDIATRIC_FILELIST_COLUMNS,
    PEDIATRIC_TRACING_COLUMNS,
    EchoNetPediatricWriter,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("pediatric")
    sequences = {}
    with EchoNetPediatricWriter(root) as writer:
        for index, view in enumerate(("4CH", "PSAX")):
            params = CardiacParameters.sample(np.random.default_rng(index), view=view, pediatric=True, fps=30.0)
            sequence = CardiacPhantom(params, (64, 64), seed=index).simulate(
                params.ed_offset_frames + params.systole_frames + 2
            )
            writer.add(
                sequence, f"CR0000000{index}-000001", fold=index + 3, sex="M", age=6.5, weight=21.0, height=118.0
            )
            sequences[view] = sequence
    return root, sequences


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_layout_file_names_and_columns(written):
    root, sequences = written
    for folder, view, fold in (("A4C", "4CH", "3"), ("PSAX", "PSAX", "4")):
        assert (root / folder / "Videos" / f"CR0000000{'01'[folder == 'PSAX']}-000001.avi").is_file()
        files = _rows(root / folder / "FileList.csv")
        assert (
            tuple(files[0])
            == PEDIATRIC_FILELIST_COLUMNS
            == ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
        )
        row = dict(zip(files[0], files[1], strict=False))
        assert (
            row["Split"] == fold
            and row["Sex"] == "M"
            and float(row["EF"]) == pytest.approx(sequences[view].ejection_fraction, abs=1e-4)
        )
        tracings = _rows(root / folder / "VolumeTracings.csv")
        assert tuple(tracings[0]) == PEDIATRIC_TRACING_COLUMNS == ("FileName", "X", "Y", "Frame")
        assert {int(r[3]) for r in tracings[1:]} == {sequences[view].ed_frame, sequences[view].es_frame}


def test_round_trip_through_the_pediatric_reader(written):
    from echo_monai.data.pediatric import EchoNetPediatric

    root, sequences = written
    for folder, view, fold in (("A4C", "4CH", 3), ("PSAX", "PSAX", 4)):
        dataset = EchoNetPediatric(root, view=folder, split=[fold])
        assert len(dataset) == 1
        item, sequence = dataset[0], sequences[view]
        assert np.abs(item["video"].numpy()[0] - sequence.frames).mean() < 4.0
        assert item["ejection_fraction"] == pytest.approx(sequence.ejection_fraction, abs=1e-4)
        assert (item["ed_frame"], item["es_frame"]) == (sequence.ed_frame, sequence.es_frame)
        mask, truth = item["ed_mask"].numpy().astype(bool), sequence.labels[sequence.ed_frame] == 1
        assert 2 * np.sum(mask & truth) / (mask.sum() + truth.sum()) > 0.85
        assert item["fold"] == fold and item["sex"] == "M"


def test_bad_arguments_raise(tmp_path, written):
    _, sequences = written
    writer = EchoNetPediatricWriter(tmp_path)
    with pytest.raises(ValueError, match="fold"):
        writer.add(sequences["4CH"], "x", fold=10)
    with pytest.raises(ValueError, match="sex"):
        writer.add(sequences["4CH"], "x", fold=0, sex="X")
    params = CardiacParameters.sample(np.random.default_rng(0), view="2CH", fps=30.0)
    two = CardiacPhantom(params, (32, 32)).simulate(params.ed_offset_frames + params.systole_frames + 1)
    with pytest.raises(ValueError, match="view"):
        writer.add(two, "x", fold=0)
