"""A flow-matching denoiser that also takes the start of the interval its velocity is averaged over (MeanFlow).

MeanFlow (Geng, Deng, Bai, Kolter, He 2025, "Mean Flows for One-step Generative Modeling") learns the average
velocity ``u(z, r, t)`` over ``[r, t]`` instead of the instantaneous one, so that one step ``z_r = z_t + (t - r) u``
(in MONAI's ``RFlowScheduler`` convention, velocities pointing towards the data) jumps from noise to data. The network
needs the second time; here it enters through the network's own timestep embedding, so any of the project's UNets
(and MONAI's) becomes a MeanFlow network without a new architecture.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

__all__ = ["MeanFlowDenoiser"]


class MeanFlowDenoiser(nn.Module):
    """``forward(x, timesteps, r_timesteps=None, **kwargs) -> u(x, r, t)``: a denoiser given the interval ``t - r``.

    Every ``time_embed`` MLP inside ``network`` (MONAI's ``DiffusionModelUNet``, ``SPADEDiffusionModelUNet`` and
    ``ControlNet``; echo_monai's ``SpatioTemporalUNet``; those inside ``ContextEmbeddingDenoiser`` or
    ``ControlNetDenoiser``) gives ``emb(t) + gate * emb(t - r)``: the same sinusoidal features and the same MLP for
    both times, and one learnt scalar ``gate``. With ``gate_init=0`` a trained flow-matching model starts as itself,
    ``u(x, r, t) = v(x, t)`` (the right limit at ``r = t``), and fine-tuning with
    :class:`echo_monai.engines.MeanFlowPrepareBatch` learns the rest; from scratch, ``gate_init=1``.
    ``r_timesteps=None`` means ``r = t``: the network is then the plain flow model and an ordinary flow sampler works.

    Args:
        network: the denoiser, called as ``network(x, timesteps=t, **kwargs)``.
        gate_init: the initial ``gate``.

    Raises:
        TypeError: ``network`` has no ``time_embed`` MLP (an ``nn.Sequential`` starting with an ``nn.Linear``), or is
            wrapped in ``DistributedDataParallel`` (wrap the ``MeanFlowDenoiser`` instead).

    Example:
        >>> net = MeanFlowDenoiser(DiffusionModelUNet(spatial_dims=2, in_channels=4, out_channels=4, ...))
        >>> u = net(z, timesteps=torch.full((B,), 1000.0), r_timesteps=torch.zeros(B))   # one step: z + u
    """

    def __init__(self, network: nn.Module, gate_init: float = 0.0) -> None:
        super().__init__()
        if isinstance(network, nn.parallel.DistributedDataParallel):  # the gate would then train apart on each rank
            raise TypeError(
                "MeanFlowDenoiser: the network is wrapped in DistributedDataParallel; wrap the MeanFlowDenoiser in "
                "it instead, so that the gate is synchronised too."
            )
        self.network = network
        self.gate = nn.Parameter(torch.tensor(float(gate_init)))
        embeds = [m for name, m in network.named_modules() if name.rsplit(".", 1)[-1] == "time_embed"]
        usable = [m for m in embeds if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Linear)]
        if not usable:
            raise TypeError(
                f"MeanFlowDenoiser: {type(network).__name__} has no time_embed MLP (nn.Sequential starting with "
                "nn.Linear) to embed the interval t - r with."
            )
        self._interval: torch.Tensor | None = None
        for module in usable:
            module.register_forward_hook(self._add_interval)

    def _add_interval(self, module: nn.Sequential, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._interval is None:
            return output
        interval = self._interval.to(output.device)
        if interval.shape[0] != output.shape[0]:  # a network that embeds a batch of another size than its input
            raise ValueError(f"MeanFlowDenoiser: {interval.shape[0]} intervals for {output.shape[0]} time embeddings.")
        hidden = get_timestep_embedding(interval, module[0].in_features).to(output.dtype)
        for layer in module:  # the MLP's layers (not the module itself, whose hook this is)
            hidden = layer(hidden)
        return output + self.gate.to(output.dtype) * hidden

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, r_timesteps: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        if r_timesteps is not None:
            t, r = (torch.as_tensor(v, device=x.device).reshape(-1) for v in (timesteps, r_timesteps))
            for name, value in (("timesteps", t), ("r_timesteps", r)):
                if value.shape[0] not in (1, x.shape[0]):
                    raise ValueError(
                        f"MeanFlowDenoiser: {name} has {value.shape[0]} values for a batch of {x.shape[0]}."
                    )
            self._interval = t.expand(x.shape[0]) - r.expand(x.shape[0])
        try:
            return self.network(x, timesteps=timesteps, **kwargs)
        finally:
            self._interval = None
