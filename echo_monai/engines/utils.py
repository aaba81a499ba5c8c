"""Small batch helpers used from bundle configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.data import list_data_collate

__all__ = ["first_batch"]


def first_batch(dataset: Sequence[Any], size: int) -> dict:
    """Collate the first ``size`` items of ``dataset`` (all of them when shorter) into one batch dict.

    Used for fixed conditions of sample previews (the first validation label maps, for example).

    Raises:
        ValueError: when ``dataset`` is empty or ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"first_batch: size must be >= 1, got {size}.")
    n = min(size, len(dataset))
    if n == 0:
        raise ValueError("first_batch: the dataset is empty.")
    return list_data_collate([dataset[i] for i in range(n)])
