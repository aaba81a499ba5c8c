"""A trained denoiser and its sampler as one network from the condition to the sample.

A bundle's ``network_data_format`` describes what its pipeline takes and gives (``echo_seg_ddpm``: a one-hot label
map in, an image out), which is what MONAI Label, MONAI Deploy and ``python -m monai.bundle verify_net_in_out`` read.
The denoiser itself takes more (the noisy image, the timestep, the condition), so the bundle's ``pipeline_network``
is this module: ``forward(condition)`` runs the bundle's sampler from seeded noise and returns the sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from echo_monai.engines.conditioning import Conditioning
from echo_monai.inferers.sampler import Sampler, seeded_noise

__all__ = ["SamplingNetwork"]


class SamplingNetwork(torch.nn.Module):
    """``forward(condition) -> sample``: the sampler integrated from seeded noise, conditioned on the input.

    Args:
        network: the trained denoiser (loaded).
        sampler: the bundle's :class:`~echo_monai.inferers.Sampler`.
        conditioning: the bundle's conditioning; the input is its batch item `key`.
        key: the batch key the input stands for (``label_map``).
        out_channels: channels of the sample; its spatial size is the input's.
        seed: the noise seed (item ``i`` of a batch uses ``seed + i``, as the generation pipeline seeds items).

    Example:
        >>> net = SamplingNetwork(denoiser, sampler, Conditioning({"seg": "label_map"}), "label_map", 1)
        >>> net(one_hot_label_map).shape        # (B, 1, H, W)
    """

    def __init__(
        self,
        network: Callable[..., torch.Tensor],
        sampler: Sampler,
        conditioning: Conditioning,
        key: str,
        out_channels: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(sampler, Sampler):
            raise TypeError(f"SamplingNetwork: sampler must be an echo_monai.inferers.Sampler, got {type(sampler)}.")
        self.network, self.sampler, self.conditioning = network, sampler, conditioning
        self.key, self.out_channels, self.seed = key, int(out_channels), int(seed)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        if condition.ndim < 3:
            raise ValueError(
                f"SamplingNetwork: the input must be (B, C, *spatial), got shape {tuple(condition.shape)}."
            )
        shape = (self.out_channels, *condition.shape[2:])
        noise = torch.stack([seeded_noise(shape, self.seed + i) for i in range(condition.shape[0])])
        noise = noise.to(device=condition.device, dtype=condition.dtype)
        with torch.no_grad():
            return self.sampler(noise, self.network, self.conditioning.extract({self.key: condition}, condition.device))
