"""Latent cache: encode once with the posterior mean, per-channel statistics, fingerprinted, resumable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from echo_monai.data import LatentCacheDataset, LatentCacheError, autoencoder_fingerprint, encode_latent_cache


@pytest.fixture
def autoencoder(make_autoencoder):
    return make_autoencoder(seed=0).eval()


def _items(n=5, video=False):
    g = torch.Generator().manual_seed(0)
    shape = (1, 3, 16, 16) if video else (1, 16, 16)
    return [
        {"image": torch.rand(shape, generator=g) * 2 - 1, "ejection_fraction": 40.0 + 5 * i, "filename": f"v{i}.avi"}
        for i in range(n)
    ]


def _mean_latent(autoencoder, pixels):
    with torch.no_grad():
        if pixels.ndim == 3:
            return autoencoder.encode(pixels[None])[0][0]
        frames = pixels.permute(1, 0, 2, 3)  # (T, C, H, W)
        return autoencoder.encode(frames)[0].permute(1, 0, 2, 3)


@pytest.mark.parametrize("video", [False, True])
def test_round_trip_and_statistics(autoencoder, tmp_path, video):
    items = _items(video=video)
    encode_latent_cache(autoencoder, items, tmp_path, config={"latent_channels": 4})
    dataset = LatentCacheDataset(tmp_path, expected_fingerprint=autoencoder, expected_config={"latent_channels": 4})
    raw = np.stack([_mean_latent(autoencoder, item["image"]).numpy() for item in items])  # (N, C, [T,] h, w)
    axes = tuple(i for i in range(raw.ndim) if i != 1)
    mean, std = raw.astype(np.float64).mean(axis=axes), raw.astype(np.float64).std(axis=axes)
    stats = json.loads((tmp_path / "latent_stats.json").read_text())
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-5)
    assert stats["count"] == raw.size // raw.shape[1]
    assert len(dataset) == len(items)
    shape = (1, 4) + (1,) * (raw.ndim - 2)
    for i, item in enumerate(items):
        out = dataset[i]
        expected = (raw[i][None] - mean.reshape(shape)) / std.reshape(shape)
        assert out["latent"].dtype == torch.float32
        assert out["latent"].shape == ((4, 3, 8, 8) if video else (4, 8, 8))
        np.testing.assert_allclose(out["latent"].numpy(), expected[0], rtol=1e-4, atol=1e-4)
        assert out["ejection_fraction"] == item["ejection_fraction"] and out["filename"] == item["filename"]
    assert isinstance(dataset.load_latent(0), np.memmap)
    assert torch.allclose(
        dataset.scaler.denormalize(dataset[0]["latent"][None])[0], torch.from_numpy(raw[0]), atol=1e-5
    )


def test_loader_input_equals_dataset_input(autoencoder, tmp_path):
    items = _items(5)
    encode_latent_cache(autoencoder, items, tmp_path / "a")
    encode_latent_cache(autoencoder, DataLoader(items, batch_size=2), tmp_path / "b")
    a, b = LatentCacheDataset(tmp_path / "a"), LatentCacheDataset(tmp_path / "b")
    assert len(a) == len(b) == 5
    for i in range(5):
        assert torch.allclose(a[i]["latent"], b[i]["latent"], atol=1e-5)
        assert b[i]["filename"] == f"v{i}.avi" and b[i]["ejection_fraction"] == pytest.approx(40.0 + 5 * i)


def test_resume_skips_finished_items(autoencoder, tmp_path):
    items = _items(4)
    encode_latent_cache(autoencoder, items, tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("0*.npy")}
    stats = json.loads((tmp_path / "latent_stats.json").read_text())
    (tmp_path / "000002.npy").unlink()
    (tmp_path / "latent_stats.json").unlink()
    loaded = []

    class Tracking(list):
        def __getitem__(self, index):
            loaded.append(index)
            return super().__getitem__(index)

    encode_latent_cache(autoencoder, Tracking(items), tmp_path)
    assert loaded == [2]
    for name, mtime in mtimes.items():
        if name != "000002.npy":
            assert (tmp_path / name).stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "latent_stats.json").read_text())["mean"] == pytest.approx(stats["mean"])
    assert not list(tmp_path.glob(".tmp-*"))


def test_fingerprint_depends_on_weights_and_config(autoencoder, make_autoencoder):
    assert autoencoder_fingerprint(autoencoder) == autoencoder_fingerprint(make_autoencoder(seed=0))
    assert autoencoder_fingerprint(autoencoder) != autoencoder_fingerprint(make_autoencoder(seed=1))
    assert autoencoder_fingerprint(autoencoder, {"a": 1}) != autoencoder_fingerprint(autoencoder, {"a": 2})


def test_cache_of_another_autoencoder_raises(autoencoder, make_autoencoder, tmp_path):
    encode_latent_cache(autoencoder, _items(2), tmp_path)
    other = make_autoencoder(seed=1).eval()
    with pytest.raises(LatentCacheError, match=f"{tmp_path}.*built by another autoencoder.*expected.*echo_flow vae"):
        LatentCacheDataset(tmp_path, expected_fingerprint=other, stage="echo_flow vae")
    with pytest.raises(LatentCacheError, match="another autoencoder"):
        LatentCacheDataset(tmp_path, expected_fingerprint="0" * 64)
    with pytest.raises(LatentCacheError, match=f"{tmp_path}.*another autoencoder or key"):
        encode_latent_cache(other, _items(2), tmp_path)
    assert len(LatentCacheDataset(tmp_path, expected_fingerprint=autoencoder_fingerprint(autoencoder))) == 2


def test_missing_or_incomplete_cache_raises(tmp_path, autoencoder):
    with pytest.raises(LatentCacheError, match="does not exist"):
        LatentCacheDataset(tmp_path / "nowhere")
    encode_latent_cache(autoencoder, _items(2), tmp_path)
    (tmp_path / "latent_stats.json").unlink()
    with pytest.raises(LatentCacheError, match="incomplete.*latent_stats.json"):
        LatentCacheDataset(tmp_path)


def test_corrupt_json_raises_naming_the_file(tmp_path, autoencoder):
    encode_latent_cache(autoencoder, _items(2), tmp_path)
    (tmp_path / "latent_index.json").write_text("{not json")
    with pytest.raises(LatentCacheError, match="latent_index.json is corrupt"):
        LatentCacheDataset(tmp_path)


def test_missing_index_raises(tmp_path, autoencoder):
    encode_latent_cache(autoencoder, _items(2), tmp_path)
    (tmp_path / "latent_index.json").unlink()
    with pytest.raises(LatentCacheError, match="latent_index.json is missing"):
        LatentCacheDataset(tmp_path)


def test_index_and_stats_disagreeing_raises(tmp_path, autoencoder):
    encode_latent_cache(autoencoder, _items(2), tmp_path)
    index = json.loads((tmp_path / "latent_index.json").read_text())
    index["items"] = index["items"][:1]
    (tmp_path / "latent_index.json").write_text(json.dumps(index))
    with pytest.raises(LatentCacheError, match="disagree"):
        LatentCacheDataset(tmp_path)


def test_missing_or_corrupt_latent_file_raises_naming_it(tmp_path, autoencoder):
    encode_latent_cache(autoencoder, _items(3), tmp_path)
    dataset = LatentCacheDataset(tmp_path)
    (tmp_path / "000000.npy").unlink()
    with pytest.raises(LatentCacheError, match="000000.npy.*missing"):
        dataset[0]
    path = tmp_path / "000001.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LatentCacheError, match="000001.npy.*corrupt"):
        dataset[1]
    np.save(tmp_path / "000002.npy", np.zeros((4, 2, 2), dtype=np.float32))
    with pytest.raises(LatentCacheError, match="000002.npy.*has shape"):
        dataset[2]


def test_bad_items_raise(tmp_path, autoencoder):
    with pytest.raises(KeyError, match="item 0 has no key 'image'"):
        encode_latent_cache(autoencoder, [{"video": torch.zeros(1, 16, 16)}], tmp_path / "a")
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(C, T, H, W\)"):
        encode_latent_cache(autoencoder, [{"image": torch.zeros(16, 16)}], tmp_path / "b")
    with pytest.raises(ValueError, match="no items"):
        encode_latent_cache(autoencoder, [], tmp_path / "c")
    with pytest.raises(KeyError, match="each batch must be a dict holding 'image'"):
        encode_latent_cache(autoencoder, DataLoader([torch.zeros(1, 16, 16)], batch_size=1), tmp_path / "d")
    assert autoencoder.training is False
    assert not os.path.exists(tmp_path / "b" / "latent_stats.json")


def test_metatensor_items_encode_like_tensors(autoencoder, tmp_path):
    from monai.data import MetaTensor

    items = _items(2)
    meta_items = [{**item, "image": MetaTensor(item["image"])} for item in items]
    encode_latent_cache(autoencoder, items, tmp_path / "a")
    encode_latent_cache(autoencoder, meta_items, tmp_path / "b")
    a, b = LatentCacheDataset(tmp_path / "a"), LatentCacheDataset(tmp_path / "b")
    assert type(b[0]["latent"]) is torch.Tensor and torch.equal(a[1]["latent"], b[1]["latent"])


def test_array_keys_are_kept_with_the_latents(autoencoder, tmp_path):
    items = [{**item, "ed_mask": torch.full((1, 8, 8), float(i)), "ed_frame": 1} for i, item in enumerate(_items(3))]
    encode_latent_cache(autoencoder, items, tmp_path, array_keys=["ed_mask"])
    dataset = LatentCacheDataset(tmp_path, expected_fingerprint=autoencoder)
    for i in range(3):
        item = dataset[i]
        assert item["ed_frame"] == 1 and item["ed_mask"].dtype == torch.float32
        assert torch.equal(item["ed_mask"], torch.full((1, 8, 8), float(i)))
    (tmp_path / "000001_ed_mask.npy").unlink()
    with pytest.raises(LatentCacheError, match="000001_ed_mask.npy' is missing"):
        dataset[1]
    with pytest.raises(KeyError, match="has no 'es_mask'"):
        encode_latent_cache(autoencoder, _items(2), tmp_path / "other", array_keys=["es_mask"])


def test_a_video_autoencoder_encodes_whole_videos_and_keeps_the_first_frame(tmp_path):
    from echo_monai.networks.nets import FirstFrameVideoAutoencoder

    torch.manual_seed(0)
    video_ae = FirstFrameVideoAutoencoder(1, channels=(8, 16), latent_channels=2, num_res_blocks=1, norm_num_groups=4)
    items = [{**item, "first_frame": item["image"][:, 0]} for item in _items(n=3, video=True)]
    items = [{**item, "image": torch.cat([item["image"], item["image"][:, :1]], dim=1)} for item in items]  # 4 frames
    encode_latent_cache(video_ae.eval(), items, tmp_path, array_keys=["first_frame"])
    dataset = LatentCacheDataset(tmp_path, expected_fingerprint=video_ae)
    assert dataset[0]["latent"].shape == (2, 2, 8, 8) and dataset[0]["first_frame"].shape == (1, 16, 16)
    with torch.no_grad():
        raw = video_ae.encode(items[1]["image"][None])[0]
    torch.testing.assert_close(dataset.scaler.denormalize(dataset[1]["latent"][None])[0], raw, atol=1e-5, rtol=1e-5)
