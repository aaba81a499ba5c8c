from __future__ import annotations

from echo_monai.networks.nets.context_embedding_denoiser import ContextEmbeddingDenoiser
from echo_monai.networks.nets.reidentification import ReIdentificationNet
from echo_monai.networks.nets.spatiotemporal_unet import SpatioTemporalUNet

__all__ = ["ContextEmbeddingDenoiser", "ReIdentificationNet", "SpatioTemporalUNet"]
