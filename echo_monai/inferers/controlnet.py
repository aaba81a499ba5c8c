"""ControlNet as a denoiser wrapper: the control network runs on ``x_t`` at every step and feeds the base network.

Zhang & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023 (arXiv:2302.05543);
for echocardiography, DiffEcho (Ashrafian et al. 2024) guides a text-conditioned latent UNet with label maps.

The residuals depend on ``x_t`` and ``t``, so they cannot be computed once before sampling: wrapping both networks
into one denoiser ``net(x, timesteps, controlnet_cond=..., **cond)`` lets :class:`echo_monai.inferers.Sampler`,
the training ``PrepareBatch`` objectives and classifier-free guidance treat a ControlNet-guided model like any other
(the control image is a network keyword argument placed by :class:`echo_monai.engines.Conditioning`; leave it out
of ``droppable`` to keep it in both halves of the guided batch, as diffusers does outside guess mode)::

    down_residuals, mid_residual = controlnet(x_t, t, controlnet_cond, conditioning_scale, context, class_labels)
    output = network(x_t, t, context, class_labels, down_block_additional_residuals=down_residuals,
                     mid_block_additional_residual=mid_residual)
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.utils import copy_model_state
from torch import nn

__all__ = ["ControlNetDenoiser", "copy_encoder_weights", "initialised_controlnet"]


def copy_encoder_weights(controlnet: nn.Module, network: nn.Module) -> list[str]:
    """Initialise a ControlNet from a trained base network: every parameter with the same name and shape is copied
    (the time / class embeddings, ``conv_in``, the down blocks and the middle block), as ControlNet training starts.

    Returns:
        the names of the ControlNet's parameters that were copied.

    Raises:
        ValueError: when nothing matches (the ControlNet was built for another network).
    """
    _, copied, _ = copy_model_state(controlnet, network, inplace=True)
    if not copied:
        raise ValueError(
            f"copy_encoder_weights: no parameter of {type(network).__name__} matches the ControlNet by name and "
            "shape; build the ControlNet with the base network's channels, levels and attention settings."
        )
    return list(copied)


def initialised_controlnet(controlnet: nn.Module, network: nn.Module) -> nn.Module:
    """``controlnet`` after :func:`copy_encoder_weights` from ``network`` (for a config: the ControlNet a training
    stage starts from, built in one declaration).

    Example:
        >>> controlnet = initialised_controlnet(ControlNet(2, 4, channels=(32, 64), ...), trained_unet)
    """
    copy_encoder_weights(controlnet, network)
    return controlnet


class ControlNetDenoiser(nn.Module):
    """``net(x, timesteps, controlnet_cond, **cond)``: a ControlNet's residuals, computed on ``x`` at every call,
    added to the skip connections and middle block of the base network.

    Args:
        network: the base denoiser accepting ``down_block_additional_residuals`` and
            ``mid_block_additional_residual`` (MONAI's ``DiffusionModelUNet``, :class:`SpatioTemporalUNet`).
        controlnet: MONAI's ``ControlNet`` (or :class:`SpatioTemporalControlNet` for videos) matching ``network``,
            called as ``controlnet(x, timesteps, controlnet_cond, conditioning_scale, context, class_labels)``.
        conditioning_scale: multiplier of the residuals (1 = as trained; 0 = the base network alone).
        freeze_network: freeze the base network's parameters (ControlNet training trains the control branch only).

    Example:
        >>> controlnet = ControlNet(2, 4, channels=(32, 64), conditioning_embedding_in_channels=5)
        >>> denoiser = ControlNetDenoiser(unet, controlnet)
        >>> sampler = Sampler(DDIMScheduler(1000), 50, conditioning=Conditioning({"controlnet_cond": "label_map"}))
        >>> images = sampler(noise, denoiser, condition=Condition({"controlnet_cond": one_hot_label_maps}))
    """

    def __init__(
        self, network: nn.Module, controlnet: nn.Module, conditioning_scale: float = 1.0, freeze_network: bool = False
    ) -> None:
        super().__init__()
        if conditioning_scale < 0:
            raise ValueError(f"ControlNetDenoiser: conditioning_scale must be >= 0, got {conditioning_scale}.")
        self.network = network
        self.controlnet = controlnet
        self.conditioning_scale = float(conditioning_scale)
        if freeze_network:
            self.network.requires_grad_(False)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        controlnet_cond: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The base network's output on ``x`` ``(B, C, ...)`` guided by the control image ``(B, Cc, ...)``.

        Args:
            x: network input (noisy sample with any concatenated references).
            timesteps: ``(B,)``.
            controlnet_cond: the control image (e.g. a one-hot label map at the image resolution).
            context: cross-attention tokens, shared by both networks.
            class_labels: class indices, shared by both networks.
            kwargs: other base-network arguments (e.g. ``seg``), not seen by the ControlNet.

        Raises:
            ValueError: when ``controlnet_cond`` is missing.
        """
        if controlnet_cond is None:
            raise ValueError(
                "ControlNetDenoiser: controlnet_cond is missing; map the control image to it in the Conditioning, "
                "e.g. Conditioning({'controlnet_cond': 'label_map'})."
            )
        shared = {k: v for k, v in (("context", context), ("class_labels", class_labels)) if v is not None}
        down, mid = self.controlnet(
            x=x,
            timesteps=timesteps,
            controlnet_cond=controlnet_cond,
            conditioning_scale=self.conditioning_scale,
            **shared,
        )
        return self.network(
            x,
            timesteps=timesteps,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            **shared,
            **kwargs,
        )
