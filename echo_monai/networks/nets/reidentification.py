"""Re-identification network: do two (latent) images come from the same patient or video?

EchoNet-Synthetic (Reynaud et al., MICCAI 2024) and EchoFlow (Reynaud et al., 2025) train such a network on the real
training latents and use it as a privacy filter: a synthetic sample whose embedding is closer to a training sample
than the 95th percentile of real train↔held-out best matches is discarded (see
:class:`echo_monai.metrics.MemorisationAudit` and :func:`echo_monai.engines.privacy_filter`).

Here the embedding is learnt contrastively (SimCLR's NT-Xent, MONAI's ``ContrastiveLoss``): the two views of a pair
are two frames of the same video, every other sample of the batch is a negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["ReIdentificationNet"]


class ReIdentificationNet(nn.Module):
    """A small convolutional encoder with a projection head giving unit-norm embeddings ``(B, embedding_dim)``.

    Args:
        in_channels: channels of the input (4 for SD-style latents, 1 for grey images).
        channels: channels per stage; each stage after the first halves the spatial size.
        embedding_dim: size of the unit-norm embedding.
        norm_num_groups: groups of the GroupNorm layers (must divide every entry of ``channels``).
        spatial_dims: 2 for images/latents; frames of a video are embedded one by one.

    Example:
        >>> net = ReIdentificationNet(in_channels=4, channels=(32, 64, 128), embedding_dim=64)
        >>> net(torch.randn(8, 4, 28, 28)).shape
        torch.Size([8, 64])
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: Sequence[int] = (32, 64, 128),
        embedding_dim: int = 128,
        norm_num_groups: int = 8,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"ReIdentificationNet: in_channels must be >= 1, got {in_channels}.")
        if not channels:
            raise ValueError("ReIdentificationNet: channels must list at least one stage.")
        if any(c % norm_num_groups for c in channels):
            raise ValueError(
                f"ReIdentificationNet: norm_num_groups {norm_num_groups} must divide every channel count "
                f"{list(channels)}."
            )
        if embedding_dim < 1:
            raise ValueError(f"ReIdentificationNet: embedding_dim must be >= 1, got {embedding_dim}.")
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(channels):
            layers.append(
                Convolution(
                    spatial_dims,
                    previous,
                    width,
                    strides=1 if i == 0 else 2,
                    kernel_size=3,
                    act="SWISH",
                    norm=("GROUP", {"num_groups": norm_num_groups, "num_channels": width}),
                )
            )
            previous = width
        self.encoder = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.head = nn.Sequential(nn.Linear(previous, previous), nn.SiLU(), nn.Linear(previous, embedding_dim))
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(B, embedding_dim)`` of ``x`` ``(B, C, H, W)``."""
        if x.ndim < 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ReIdentificationNet: expected input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}."
            )
        features = self.pool(self.encoder(x)).flatten(1)
        return F.normalize(self.head(features), dim=1)
