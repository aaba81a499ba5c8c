"""Training the re-identification network with MONAI's ``SupervisedTrainer``: frame pairs of one video as the two
views of a contrastive objective. Its use as a privacy filter is :func:`echo_monai.metrics.privacy_filter`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.losses import ContrastiveLoss
from torch import nn

__all__ = ["ContrastivePairPrepareBatch", "PairContrastiveLoss"]


class ContrastivePairPrepareBatch:
    """Stack the two views so one network call embeds both: input ``(2B, C, H, W)``, no target.

    Args:
        view_keys: batch keys of the two views.
    """

    def __init__(self, view_keys: tuple[str, str] = ("view_a", "view_b")) -> None:
        self.view_keys = view_keys

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [k for k in self.view_keys if k not in batchdata]
        if missing:
            raise KeyError(
                f"ContrastivePairPrepareBatch: batch keys {missing} missing; add echo_monai.transforms.PairedFramesd."
            )
        views = torch.cat([torch.as_tensor(batchdata[k]) for k in self.view_keys], dim=0).float()
        views = views.to(device, non_blocking=non_blocking)
        return views, torch.zeros(views.shape[0], device=views.device)


class PairContrastiveLoss(nn.Module):
    """NT-Xent on the embeddings of ``[views_a; views_b]`` (MONAI's ``ContrastiveLoss``); the target is unused.

    Args:
        temperature: softmax temperature.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.loss = ContrastiveLoss(temperature=temperature)

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings.shape[0] % 2:
            raise ValueError(f"PairContrastiveLoss: expected an even batch [a; b], got {embeddings.shape[0]} rows.")
        first, second = embeddings.chunk(2)
        return self.loss(first, second)
