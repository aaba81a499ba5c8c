from __future__ import annotations

import hashlib

import pytest

from echo_monai.apps.simulate import KINDS, simulate

_SMALL = {
    "echonet": {"n_frames": 24},
    "pediatric": {"image_size": (48, 48), "n_frames": 24},
    "camus": {"image_size": (40, 40)},
    "busi": {"image_size": (32, 40)},
    "busv": {"image_size": (32, 40), "n_frames": 3},
    "dicom": {"image_size": (32, 32), "n_frames": 24},
}


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_writes_its_layout(tmp_path, kind):
    root = simulate(kind, tmp_path / kind, n=2, seed=0, **_SMALL[kind])
    assert root == tmp_path / kind
    names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    expected = {
        "echonet": {"FileList.csv", "VolumeTracings.csv"},
        "pediatric": {"A4C/FileList.csv", "A4C/VolumeTracings.csv", "PSAX/FileList.csv", "PSAX/VolumeTracings.csv"},
        "camus": {"database_split/subgroup_training.txt", "database_nifti/patient0002/Info_4CH.cfg"},
        "busi": {"Dataset_BUSI_with_GT/benign/benign (1).png", "Dataset_BUSI_with_GT/malignant/malignant (1)_mask.png"},
        "busv": {"imagenet_vid_train.json"},
        "dicom": {"cine_0001.dcm", "cine_0002.dcm"},
    }[kind]
    assert expected <= names
    assert not [name for name in names if ".tmp-" in name]


def test_simulate_is_deterministic_for_a_seed(tmp_path):
    first = _digest(simulate("camus", tmp_path / "a", n=1, seed=3, image_size=(32, 32)))
    second = _digest(simulate("camus", tmp_path / "b", n=1, seed=3, image_size=(32, 32)))
    other = _digest(simulate("camus", tmp_path / "c", n=1, seed=4, image_size=(32, 32)))
    assert first == second and first != other


def test_simulated_datasets_load_with_the_readers(tmp_path):
    from echo_monai.data.busv import BUSV
    from echo_monai.data.camus import CAMUS
    from echo_monai.data.echonet import EchoNetDynamic

    echonet = EchoNetDynamic(simulate("echonet", tmp_path / "e", n=1, seed=0, n_frames=24), split="ALL")
    assert echonet[0]["video"].shape[-2:] == (112, 112)
    camus = CAMUS(simulate("camus", tmp_path / "c", n=1, seed=0, image_size=(32, 32)), split="training")
    assert len(camus) == 4
    busv = BUSV(simulate("busv", tmp_path / "b", n=2, seed=0, image_size=(32, 40), n_frames=3))
    assert {item["label"] for item in (busv[0], busv[1])} == {"benign", "malignant"}


def test_bad_arguments_raise(tmp_path):
    allowed = r"\['busi', 'busv', 'camus', 'dicom', 'echonet', 'pediatric'\]"
    with pytest.raises(ValueError, match=rf"kind must be one of {allowed}, got 'ultrasound'"):
        simulate("ultrasound", tmp_path)
    with pytest.raises(ValueError, match="n must be"):
        simulate("busi", tmp_path, n=0)
    with pytest.raises(ValueError, match="n_frames"):
        simulate("busi", tmp_path, n=1, n_frames=3)


def test_hard_camus_phantom_varies_more_and_keeps_its_layout(tmp_path):
    import numpy as np

    from echo_monai.data.camus import CAMUS

    standard = CAMUS(simulate("camus", tmp_path / "s", n=10, seed=0, image_size=(48, 48)))
    hard_root = simulate("camus", tmp_path / "h", n=10, seed=0, image_size=(48, 48), variability="hard")
    hard = CAMUS(hard_root, split="training")
    assert len(hard) == 32  # 8 training patients x (2CH, 4CH) x (ED, ES)
    assert _digest(hard_root) == _digest(
        simulate("camus", tmp_path / "h2", n=10, seed=0, image_size=(48, 48), variability="hard")
    )

    def spread(dataset, label):  # the spread over images of a structure's mean grey level
        return np.std(
            [
                np.asarray(item["image"], np.float32)[np.asarray(item["label"]) == label].mean()
                for item in (dataset[i] for i in range(len(dataset)))
            ]
        )

    assert spread(CAMUS(hard_root), 2) > spread(standard, 2)  # myocardium brightness varies more
    with pytest.raises(ValueError, match=r"variability must be one of \['standard', 'hard'\], got 'easy'"):
        simulate("camus", tmp_path / "x", n=1, variability="easy")
