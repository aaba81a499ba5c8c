"""Encode-once latent cache for latent diffusion / flow stages (Rombach et al., CVPR 2022).

Layout of ``cache_dir``::

    latent_index.json      fingerprint + config of the autoencoder, image key, and one entry per item
                           (file, latent shape, metadata such as ejection_fraction or filename)
    latent_stats.json      per-channel mean / std of the raw latents (float64 streaming), count, fingerprint;
                           written last, so its presence means the cache is complete
    000000.npy, ...        raw posterior-mean latents (C, [T,] h, w) float32, memory-mapped on read
    000000.json, ...       the item's entry, written after its .npy (presence = item finished; resume skips it)
    000000_<key>.npy, ...  optional per-item arrays kept next to the latent (``array_keys``: e.g. LV masks already
                           resized to the latent grid), written before the entry

Every file is written atomically (temporary name + ``os.replace``). The fingerprint hashes the autoencoder's state
dict (names, dtypes, shapes and values) and its config, so a cache from another autoencoder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from echo_monai.data.atomic import atomic_path, write_json
from echo_monai.data.latent_autoencoder import as_latent_autoencoder
from echo_monai.data.latents import LatentScaler
from echo_monai.data.reader_base import dataset_name

__all__ = [
    "LatentCacheDataset",
    "LatentCacheError",
    "autoencoder_fingerprint",
    "encode_latent_cache",
    "latent_frames",
]

INDEX_FILE = "latent_index.json"
STATS_FILE = "latent_stats.json"


class LatentCacheError(ValueError):
    """A latent cache that is missing, incomplete, corrupt or built by another autoencoder."""


def autoencoder_fingerprint(autoencoder: torch.nn.Module, config: Mapping[str, Any] | None = None) -> str:
    """SHA-256 of an autoencoder's state dict (names, dtypes, shapes, values) and of its JSON config.

    Args:
        autoencoder: the network whose weights encode the cache.
        config: constructor arguments (or any JSON-serialisable description); None for none.

    Returns:
        hexadecimal digest.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(autoencoder.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")  # 0-d too
    digest.update(json.dumps(config or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _is_metadata(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, np.generic)):
        return True
    return isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0


def _plain(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.item()
    return value


def _items(data: Any, key: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, lazy item)`` pairs; a dataset item is only loaded when the caller asks for it."""
    if isinstance(data, DataLoader) or not hasattr(data, "__getitem__"):
        index = 0
        for batch in data:
            if not isinstance(batch, Mapping) or key not in batch:
                raise KeyError(f"encode_latent_cache: each batch must be a dict holding '{key}'.")
            size = len(batch[key])
            for i in range(size):
                item = {
                    k: (v[i] if isinstance(v, (list, tuple, torch.Tensor, np.ndarray)) else v) for k, v in batch.items()
                }
                yield index, (lambda item=item: item)
                index += 1
    else:
        for index in range(len(data)):
            yield index, (lambda index=index: data[index])


class _RunningStats:
    """Per-channel count / mean / M2 in float64, merged batch by batch (Chan et al. 1979)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, latent: np.ndarray) -> None:
        values = np.asarray(latent, dtype=np.float64).reshape(latent.shape[0], -1)
        n = values.shape[1]
        mean = values.mean(axis=1)
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))  # type: ignore[operator]


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise LatentCacheError(f"latent cache {str(path.parent)!r}: {what} {path.name} is missing.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LatentCacheError(f"latent cache {str(path.parent)!r}: {what} {path.name} is corrupt ({err}).") from err


@torch.no_grad()
def encode_latent_cache(
    autoencoder: torch.nn.Module,
    data: Dataset | DataLoader | Any,
    cache_dir: str | os.PathLike,
    key: str = "image",
    config: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    frame_chunk: int | None = None,
    min_std: float = 1e-6,
    array_keys: Sequence[str] = (),
) -> Path:
    """Encode every item once with the posterior mean and save latents, per-channel statistics and metadata.

    Images ``(C, H, W)`` give latents ``(C', h, w)``; videos ``(C, T, H, W)`` are encoded frame by frame (a 2D
    autoencoder) or whole (a video autoencoder) into ``(C', T', h, w)``. Scalar entries of an item
    (``ejection_fraction``, ``filename``...) are kept as its metadata. Re-running skips finished items (their
    ``.npy`` is only read back for the statistics).

    Args:
        autoencoder: a :class:`echo_monai.data.LatentAutoencoder` (e.g. a video autoencoder), or a MONAI 2D
            ``AutoencoderKL`` (any module whose ``encode`` returns ``(z_mu, z_sigma)`` or ``z_mu``), applied frame by
            frame to videos; the fingerprint is taken of this module.
        data: a map-style dataset of dict items ``{key: (C, [T,] H, W), ...}``, or a loader of collated batches
            (items are numbered in iteration order, so a resumed loader must not shuffle).
        cache_dir: output folder.
        key: item key of the pixels in [-1, 1].
        config: the autoencoder's config, stored and part of the fingerprint.
        device: where the autoencoder runs.
        frame_chunk: frames per encoder call for videos (bounds memory); None for all.
        min_std: floor of the stored std (a constant channel would divide by zero).
        array_keys: item keys of arrays to keep with the latent, unchanged and not normalised (e.g. ``ed_mask`` and
            ``es_mask`` resized to the latent grid, for mask-conditioned latent models); each is saved as
            ``<item>_<key>.npy`` and returned by :class:`LatentCacheDataset` under the same key.

    Returns:
        ``cache_dir`` as a ``Path``.

    Raises:
        LatentCacheError: ``cache_dir`` holds a cache of another autoencoder or image key.
        KeyError: an item lacks ``key`` or one of ``array_keys``.
        ValueError: an item is neither ``(C, H, W)`` nor ``(C, T, H, W)``, or ``data`` is empty.
    """
    folder = Path(cache_dir)
    fingerprint = autoencoder_fingerprint(autoencoder, config)
    header = {"fingerprint": fingerprint, "autoencoder_config": dict(config or {}), "key": key}
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        old = _read_json(index_path, "index")
        if old.get("fingerprint") != fingerprint or old.get("key") != key:
            raise LatentCacheError(
                f"encode_latent_cache: {str(folder)!r} holds a latent cache of another autoencoder or key "
                f"(fingerprint {old.get('fingerprint')}, key {old.get('key')!r}); expected fingerprint {fingerprint}, "
                f"key {key!r}. Use a new cache_dir or delete the old cache."
            )
    write_json(index_path, {**header, "items": None})
    (folder / STATS_FILE).unlink(missing_ok=True)

    was_training = autoencoder.training
    autoencoder.eval()

    latent_autoencoder = as_latent_autoencoder(autoencoder, frame_chunk=frame_chunk)
    stats = _RunningStats()
    entries: list[dict] = []
    try:
        for index, load in _items(data, key):
            name = f"{index:06d}"
            npy, sidecar = folder / f"{name}.npy", folder / f"{name}.json"
            if npy.is_file() and sidecar.is_file():
                entry = _read_json(sidecar, "item entry")
                latent = np.load(npy, mmap_mode="r")
            else:
                item = load()
                if not isinstance(item, Mapping) or key not in item:
                    raise KeyError(f"encode_latent_cache: item {index} has no key '{key}'.")
                pixels = torch.as_tensor(item[key]).as_subclass(torch.Tensor).float()  # MetaTensor -> Tensor
                if pixels.ndim not in (3, 4):
                    raise ValueError(
                        f"encode_latent_cache: item {index} '{key}' must be (C, H, W) or (C, T, H, W), got "
                        f"{tuple(pixels.shape)}."
                    )
                z = latent_autoencoder.encode(pixels[None].to(device))[0]
                latent = z.float().cpu().numpy()
                with atomic_path(npy) as tmp:
                    np.save(tmp, latent)
                metadata = {k: _plain(v) for k, v in item.items() if k != key and _is_metadata(v)}
                arrays = {}
                for array_key in array_keys:
                    if array_key not in item:
                        raise KeyError(
                            f"encode_latent_cache: item {index} has no '{array_key}' (one of array_keys); it has "
                            f"{sorted(map(str, item))}."
                        )
                    array_file = folder / f"{name}_{array_key}.npy"
                    with atomic_path(array_file) as tmp:
                        np.save(tmp, np.asarray(torch.as_tensor(item[array_key]).as_subclass(torch.Tensor).float()))
                    arrays[array_key] = array_file.name
                entry = {"file": npy.name, "shape": list(latent.shape), **metadata}
                if arrays:
                    entry["arrays"] = arrays
                write_json(sidecar, entry)
            stats.update(latent)
            entries.append(entry)
    finally:
        autoencoder.train(was_training)
    if not entries:
        raise ValueError(
            f"encode_latent_cache: {dataset_name(data)} has no items to encode into {str(folder)!r} (an empty split?)."
        )
    write_json(index_path, {**header, "items": entries})
    write_json(
        folder / STATS_FILE,
        {
            "fingerprint": fingerprint,
            "autoencoder_config": dict(config or {}),
            "mean": stats.mean.tolist(),  # type: ignore[union-attr]
            "std": np.maximum(stats.std(), min_std).tolist(),
            "count": int(stats.count),
            "num_items": len(entries),
        },
    )
    return folder


class LatentCacheDataset(Dataset):
    """Items of a cache written by :func:`encode_latent_cache`, normalised with its per-channel statistics.

    Each item is a dict:

    - ``"latent"``: ``(C, h, w)`` or ``(C, T, h, w)`` float32, ``(z - mean_c) / std_c`` (the stored stats through
      ``LatentScaler``), read from a memory-mapped ``.npy``;
    - every metadata entry saved with the item (``ejection_fraction`` in percent, ``filename``, ``view``...);
    - every array saved with ``array_keys`` (float32 tensors, as saved).

    Args:
        cache_dir: the cache folder.
        expected_fingerprint: the fingerprint the cache must carry (a string), or the autoencoder itself (its
            fingerprint is computed with ``expected_config``); None to accept any complete cache.
        expected_config: the config used with an autoencoder ``expected_fingerprint``.
        stage: the bundle stage that builds the cache, named in the error messages (e.g. ``"echo_flow autoencoder"``).

    Raises:
        LatentCacheError: the cache is missing, incomplete or corrupt, or was built by another autoencoder; an item
            file is missing or corrupt (raised when read, naming the file).

    Example:
        >>> train_ds = LatentCacheDataset("cache/latents", expected_fingerprint=autoencoder)
        >>> train_ds[0]["latent"].shape     # (4, 28, 28)
        >>> sampler = LatentSampler(Sampler(...), autoencoder, train_ds.scaler)
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        expected_fingerprint: str | torch.nn.Module | None = None,
        expected_config: Mapping[str, Any] | None = None,
        stage: str = "autoencoder",
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.stage = stage
        if not self.cache_dir.is_dir():
            raise LatentCacheError(
                f"LatentCacheDataset: latent cache {str(self.cache_dir)!r} does not exist; run the {stage} stage's "
                "encode_latent_cache first."
            )
        if not (self.cache_dir / STATS_FILE).is_file():
            raise LatentCacheError(
                f"LatentCacheDataset: latent cache {str(self.cache_dir)!r} is incomplete ({STATS_FILE} is missing); "
                f"re-run the {stage} stage's encode_latent_cache, it resumes."
            )
        self.stats = _read_json(self.cache_dir / STATS_FILE, "statistics")
        index = _read_json(self.cache_dir / INDEX_FILE, "index")
        self.fingerprint = self.stats.get("fingerprint")
        if isinstance(expected_fingerprint, torch.nn.Module):
            expected_fingerprint = autoencoder_fingerprint(expected_fingerprint, expected_config)
        if expected_fingerprint is not None and expected_fingerprint != self.fingerprint:
            built_with = index.get("autoencoder_config") or {}
            differ = sorted(k for k in set(built_with) | set(expected_config or {})
                            if built_with.get(k) != (expected_config or {}).get(k))  # fmt: skip
            what = f" or with another {', '.join(differ)}" if differ else ""
            raise LatentCacheError(
                f"LatentCacheDataset: latent cache {str(self.cache_dir)!r} was built by another autoencoder{what} "
                f"(fingerprint {self.fingerprint}); expected {expected_fingerprint}. Re-encode it with the {stage} "
                "stage's checkpoint (encode_latent_cache into a new cache_dir)."
            )
        items = index.get("items")
        mean, std = self.stats.get("mean"), self.stats.get("std")
        if (
            index.get("fingerprint") != self.fingerprint
            or not isinstance(items, list)
            or not isinstance(mean, list)
            or not isinstance(std, list)
            or len(mean) != len(std)
            or len(items) != self.stats.get("num_items")
        ):
            raise LatentCacheError(
                f"LatentCacheDataset: latent cache {str(self.cache_dir)!r} is corrupt: {INDEX_FILE} and {STATS_FILE} "
                f"disagree; re-run the {stage} stage's encode_latent_cache into a new cache_dir."
            )
        self.items: list[dict] = items
        self.scaler = LatentScaler(scale=[1.0 / s for s in std], shift=mean)

    def __len__(self) -> int:
        return len(self.items)

    def load_latent(self, index: int) -> np.ndarray:
        """The raw (unnormalised) latent of item ``index``, memory-mapped."""
        entry = self.items[index]
        path = self.cache_dir / entry["file"]
        if not path.is_file():
            raise LatentCacheError(
                f"LatentCacheDataset: latent file {str(path)!r} is missing; re-run the {self.stage} stage's "
                "encode_latent_cache."
            )
        try:
            latent = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:
            raise LatentCacheError(f"LatentCacheDataset: latent file {str(path)!r} is corrupt ({err}).") from err
        if list(latent.shape) != list(entry["shape"]):
            raise LatentCacheError(
                f"LatentCacheDataset: latent file {str(path)!r} has shape {list(latent.shape)}, the index says "
                f"{entry['shape']}."
            )
        return latent

    def __getitem__(self, index: int) -> dict:
        latent = torch.from_numpy(np.array(self.load_latent(index), dtype=np.float32))
        normalised = self.scaler.normalize(latent[None])[0]
        entry = self.items[index]
        metadata = {k: v for k, v in entry.items() if k not in ("file", "shape", "arrays")}
        arrays = {key: self._load_array(file) for key, file in entry.get("arrays", {}).items()}
        return {"latent": normalised, **metadata, **arrays}

    def _load_array(self, file: str) -> torch.Tensor:
        path = self.cache_dir / file
        try:
            return torch.from_numpy(np.array(np.load(path), dtype=np.float32))
        except FileNotFoundError as err:
            raise LatentCacheError(
                f"LatentCacheDataset: array file {str(path)!r} is missing; re-run the {self.stage} stage's "
                "encode_latent_cache."
            ) from err
        except (OSError, ValueError, EOFError) as err:
            raise LatentCacheError(f"LatentCacheDataset: array file {str(path)!r} is corrupt ({err}).") from err


def latent_frames(dataset: Sequence[Mapping[str, Any]], frame_stride: int = 1, key: str = "latent") -> torch.Tensor:
    """Every ``frame_stride``-th frame of every cached latent video as one batch ``(N, C, h, w)`` (images as they are).

    The real samples a privacy gate is calibrated on (:class:`echo_monai.metrics.PrivacyGate`): the generator's
    training latents and held-out ones.

    Raises:
        ValueError: for ``frame_stride < 1`` or an empty dataset.
    """
    if frame_stride < 1:
        raise ValueError(f"latent_frames: frame_stride must be >= 1, got {frame_stride}.")
    frames = []
    for index in range(len(dataset)):
        latent = torch.as_tensor(dataset[index][key])
        frames.append(latent[:, ::frame_stride].transpose(0, 1) if latent.ndim == 4 else latent[None])
    if not frames:
        raise ValueError("latent_frames: the dataset is empty.")
    return torch.cat(frames)
