from __future__ import annotations

import csv

import numpy as np
import pytest

from echo_monai.data.phantom.cardiac import CardiacPhantom
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.discs import ejection_fraction, method_of_discs_volume
from echo_monai.data.phantom.echonet_writer import (
    FILELIST_COLUMNS,
    TRACING_COLUMNS,
    EchoNetDynamicWriter,
)


@pytest.fixture(scope="module")
def sequences():
    out = []
    for seed in range(2):
        params = CardiacParameters.sample(np.random.default_rng(seed), fps=30.0)
        out.append(
            CardiacPhantom(params, (112, 112), seed=seed).simulate(params.ed_offset_frames + params.systole_frames + 3)
        )
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sequences):
    root = tmp_path_factory.mktemp("echonet")
    with EchoNetDynamicWriter(root) as writer:
        writer.add(sequences[0], "0X00000000000000A1", split="TRAIN")
        writer.add(sequences[1], "0X00000000000000B2.avi", split="VAL")
    return root


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_layout_file_names_and_columns(dataset, sequences):
    assert sorted(p.name for p in (dataset / "Videos").iterdir()) == [
        "0X00000000000000A1.avi",
        "0X00000000000000B2.avi",
    ]
    files = _rows(dataset / "FileList.csv")
    assert (
        tuple(files[0])
        == FILELIST_COLUMNS
        == ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
    )
    assert [r[0] for r in files[1:]] == ["0X00000000000000A1", "0X00000000000000B2"]  # no extension
    assert [r[-1] for r in files[1:]] == ["TRAIN", "VAL"]
    first = dict(zip(files[0], files[1], strict=False))
    assert float(first["EF"]) == pytest.approx(sequences[0].ejection_fraction, abs=1e-4)
    assert (first["FrameHeight"], first["FrameWidth"], first["FPS"]) == ("112", "112", "30")
    assert int(first["NumberOfFrames"]) == len(sequences[0].frames)
    tracings = _rows(dataset / "VolumeTracings.csv")
    assert tuple(tracings[0]) == TRACING_COLUMNS == ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
    ours = [r for r in tracings[1:] if r[0] == "0X00000000000000A1.avi"]
    assert len(ours) == 2 * 21  # ED and ES: long axis + 20 chords each
    frames = [int(r[-1]) for r in ours]
    assert frames == [sequences[0].ed_frame] * 21 + [sequences[0].es_frame] * 21


def test_tracings_reproduce_the_ef(dataset, sequences):
    tracings = _rows(dataset / "VolumeTracings.csv")[1:]
    volumes = {}
    for frame in (sequences[0].ed_frame, sequences[0].es_frame):
        rows = np.array(
            [[float(v) for v in r[1:5]] for r in tracings if r[0] == "0X00000000000000A1.avi" and int(r[5]) == frame]
        )
        length = np.hypot(*(rows[0, 2:] - rows[0, :2]))
        diameters = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
        volumes[frame] = np.pi / 4 * np.sum(diameters**2) * length / 20
    ef = ejection_fraction(volumes[sequences[0].ed_frame], volumes[sequences[0].es_frame])
    assert ef == pytest.approx(sequences[0].ejection_fraction, abs=2.0)


def test_round_trip_through_the_echonet_reader(dataset, sequences):
    from echo_monai.data.echonet import EchoNetDynamic

    items = {item["filename"]: item for item in (EchoNetDynamic(dataset, split="ALL")[i] for i in range(2))}
    item, sequence = items["0X00000000000000A1.avi"], sequences[0]
    video = item["video"].numpy()
    assert video.shape == (1, *sequence.frames.shape)
    assert np.abs(video[0] - sequence.frames).mean() < 4.0  # MJPG tolerance
    assert item["ejection_fraction"] == pytest.approx(sequence.ejection_fraction, abs=1e-4)
    assert item["edv"] == pytest.approx(sequence.edv_ml, abs=1e-4)
    assert item["esv"] == pytest.approx(sequence.esv_ml, abs=1e-4)
    assert (item["ed_frame"], item["es_frame"]) == (sequence.ed_frame, sequence.es_frame)
    assert item["fps"] == pytest.approx(sequence.fps)
    volumes = []
    for phase, frame in (("ed", sequence.ed_frame), ("es", sequence.es_frame)):
        mask, truth = item[f"{phase}_mask"].numpy().astype(bool), sequence.labels[frame] == 1
        assert 2 * np.sum(mask & truth) / (mask.sum() + truth.sum()) > 0.9
        volumes.append(method_of_discs_volume(mask, sequence.pixel_spacing_mm))
    assert ejection_fraction(*volumes) == pytest.approx(sequence.ejection_fraction, abs=4.0)
    assert EchoNetDynamic(dataset, split="VAL")[0]["filename"] == "0X00000000000000B2.avi"


def test_bad_arguments_raise(tmp_path, sequences):
    writer = EchoNetDynamicWriter(tmp_path)
    with pytest.raises(ValueError, match="split"):
        writer.add(sequences[0], "x", split="train")
    params = CardiacParameters.sample(np.random.default_rng(0), view="PSAX", fps=30.0)
    psax = CardiacPhantom(params, (32, 32)).simulate(params.ed_offset_frames + params.systole_frames + 1)
    with pytest.raises(ValueError, match="PSAX"):
        writer.add(psax, "x")
