"""Reflow's training set: (noise, teacher sample) couplings of a dataset's conditions, made once and cached on disk."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from echo_monai.data.atomic import atomic_path
from echo_monai.data.latent_cache import autoencoder_fingerprint

__all__ = ["ReflowCouplingDataset"]

logger = logging.getLogger(__name__)


class ReflowCouplingDataset(torch.utils.data.Dataset):
    """The couplings a reflow fine-tune trains on (Liu, Gong and Liu, ICLR 2023): each item of ``dataset`` (after its
    transforms: a random clip, its reference frame, its EF), ``pairs_per_item`` times, with one noise ``eps`` and the
    sample the frozen flow model ``network`` generates from it with ``sampler``
    (:func:`echo_monai.engines.reflow_couplings`); the item's ``image_key`` holds that sample and ``noise_key`` its
    noise, for ``FlowMatchingPrepareBatch(..., noise_key=noise_key)``.

    They are made once, on first use, and saved to ``cache_path`` (temporary name, then rename) with a record of
    what made them: the SHA-256 of the teacher's weights (as a latent cache records its autoencoder's), the
    sampler's steps, solver and guidance, the item count, ``pairs_per_item`` and ``seed``. A later run (a resumed
    training, another epoch count) loads them, so it trains on the same pairs; a cache made by other settings or
    another teacher is made again (logged).

    Every coupling is held in memory and in the one file (the sample and its noise: twice a training clip's size
    each): fine for the phantom and CAMUS-sized sets; for EchoNet-Dynamic at 16 pairs per clip it is too large, and
    the couplings would need one file each, as the latent cache keeps them.

    Raises:
        ValueError: for ``pairs_per_item < 1``, an empty dataset, an item without ``image_key``, or a cache file that
            cannot be read (naming it).
    """

    def __init__(
        self,
        dataset: Sequence[dict[str, Any]],
        sampler: Callable[..., torch.Tensor],
        network: torch.nn.Module,
        conditioning: Any,
        cache_path: str | os.PathLike,
        image_key: str = "image",
        noise_key: str = "noise",
        pairs_per_item: int = 1,
        batch_size: int = 8,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        if int(pairs_per_item) < 1 or len(dataset) == 0:
            raise ValueError(
                f"ReflowCouplingDataset: expected a non-empty dataset and pairs_per_item >= 1, got {len(dataset)} "
                f"items and pairs_per_item={pairs_per_item}."
            )
        self.cache_path = Path(cache_path)
        self.record = {
            "teacher": autoencoder_fingerprint(network),  # any network's weights digest
            "sampler": [type(sampler).__name__]
            + [str(getattr(sampler, name, None)) for name in ("num_inference_steps", "solver", "guidance_scale")],
            "items": len(dataset),
            "pairs_per_item": int(pairs_per_item),
            "seed": int(seed),
            "keys": [image_key, noise_key],
        }
        self.couplings = self._load()
        if self.couplings is None:
            self.couplings = self._make(
                dataset, sampler, network, conditioning, image_key, noise_key, int(pairs_per_item),
                int(batch_size), int(seed), device,
            )  # fmt: skip
            with atomic_path(self.cache_path) as temporary:
                torch.save({"record": self.record, "couplings": self.couplings}, temporary)
            logger.info("reflow: %d couplings written to %s", len(self.couplings), self.cache_path)

    def _load(self) -> list[dict[str, Any]] | None:
        if not self.cache_path.exists():
            return None
        try:
            saved = torch.load(self.cache_path, map_location="cpu", weights_only=False)
            record, couplings = saved["record"], saved["couplings"]
        except Exception as error:  # a truncated or foreign file
            raise ValueError(
                f"ReflowCouplingDataset: {str(self.cache_path)!r} is not a readable couplings file "
                f"({type(error).__name__}); delete it to make the couplings again."
            ) from None
        if record != self.record:
            changed = sorted(key for key in self.record if record.get(key) != self.record[key])
            logger.warning("reflow: %s was made with other %s; making the couplings again", self.cache_path, changed)
            return None
        logger.info("reflow: %d couplings read from %s", len(couplings), self.cache_path)
        return couplings

    @staticmethod
    def _make(dataset, sampler, network, conditioning, image_key, noise_key, pairs, batch_size, seed, device):
        from echo_monai.engines import reflow_couplings

        items = []
        for _ in range(pairs):
            for index in range(len(dataset)):
                item = dict(dataset[index])
                if image_key not in item:
                    raise ValueError(
                        f"ReflowCouplingDataset: item {index} has no key '{image_key}' (the sample whose shape the "
                        f"noise takes); it has {sorted(item)}."
                    )
                items.append(item)
        shape = tuple(torch.as_tensor(items[0][image_key]).shape)
        return reflow_couplings(
            sampler, network, items, shape, conditioning, image_key=image_key, noise_key=noise_key,
            batch_size=batch_size, generator=torch.Generator().manual_seed(seed), device=device,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.couplings)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self.couplings[index])
