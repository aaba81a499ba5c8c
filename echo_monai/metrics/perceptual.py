"""LPIPS-style perceptual distance on the activations of any network.

After Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018, without the
learned per-channel weights: for each chosen layer ``l`` with activations ``f_l`` of shape `(N, C_l, ...)`::

    d_l(x, y) = mean_over_positions || f_l(x) / |f_l(x)|_C  -  f_l(y) / |f_l(y)|_C ||^2_C
    d(x, y)   = sum_l w_l d_l(x, y) / sum_l w_l

where ``|.|_C`` is the Euclidean norm across channels at each position. Layers are read by forward hooks, so any
encoder network works (an ImageNet/VGG file the user supplies, or this project's classifiers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from echo_monai.metrics.encoders import NetworkEncoder

__all__ = ["PerceptualDistance"]


class PerceptualDistance:
    """Unit-normalised multi-layer feature distance between two batches (LPIPS without learned weights).

    Args:
        network: a ``torch.nn.Module`` or a :class:`NetworkEncoder` (its network is used).
        layers: dotted names of the submodules whose outputs are compared (at least one).
        weights: one non-negative weight per layer (default: equal), normalised to sum 1.
        device: where the network runs.
        eps: guards the channel norm.

    Raises:
        ValueError: when `layers` is empty or names a missing submodule, or `weights` has the wrong length or
            sums to zero.

    Example:
        >>> net = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1)
        >>> lpips = PerceptualDistance(net, layers=["layer1", "layer2", "layer3"])
        >>> lpips(x, y).shape  # (N,)
    """

    def __init__(
        self,
        network: nn.Module | NetworkEncoder,
        layers: Sequence[str],
        weights: Sequence[float] | None = None,
        device: str | torch.device = "cpu",
        eps: float = 1e-10,
    ) -> None:
        module = network.network if isinstance(network, NetworkEncoder) else network
        if len(layers) == 0:
            raise ValueError("PerceptualDistance: layers must name at least one submodule, got an empty sequence.")
        names = dict(module.named_modules())
        missing = [layer for layer in layers if layer not in names]
        if missing:
            raise ValueError(f"PerceptualDistance: layers {missing} are not submodules of {type(module).__name__}.")
        if weights is None:
            weights = [1.0] * len(layers)
        if len(weights) != len(layers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"PerceptualDistance: weights must be {len(layers)} non-negative numbers with a positive sum, "
                f"got {list(weights)}."
            )
        self.network = module.to(device).eval()
        self.layers = list(layers)
        self.weights = [float(w) / float(sum(weights)) for w in weights]
        self.device = torch.device(device)
        self.eps = eps

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance between paired samples.

        Args:
            x: images `(N, C, H, W)` or videos `(N, C, T, H, W)`.
            y: same shape as `x`.

        Returns:
            per-pair distances `(N,)` (0 for identical inputs).

        Raises:
            ValueError: when the shapes of `x` and `y` differ.
        """
        if x.shape != y.shape:
            raise ValueError(
                f"PerceptualDistance: x and y must have the same shape, got {tuple(x.shape)}, {tuple(y.shape)}."
            )
        activations: dict[str, torch.Tensor] = {}
        modules = dict(self.network.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda _m, _a, out, name=name: activations.__setitem__(name, out))
            for name in self.layers
        ]
        try:
            self.network.eval()
            self.network(torch.cat([x, y]).to(self.device, torch.float32))
        finally:
            for handle in handles:
                handle.remove()
        num = x.shape[0]
        distance = torch.zeros(num, dtype=torch.float64, device=self.device)
        for name, weight in zip(self.layers, self.weights, strict=True):
            feature = activations[name].double()
            feature = feature / (feature.norm(dim=1, keepdim=True) + self.eps)
            squared = (feature[:num] - feature[num:]).pow(2).sum(dim=1)  # (N, ...)
            distance += weight * squared.reshape(num, -1).mean(dim=1)
        return distance.float().cpu()
