from __future__ import annotations

from echo_monai.data.latent_autoencoder import FramewiseAutoencoder, LatentAutoencoder, as_latent_autoencoder
from echo_monai.networks.nets.context_embedding_denoiser import ContextEmbeddingDenoiser
from echo_monai.networks.nets.mafe import MotionAppearanceFeatureExtractor
from echo_monai.networks.nets.mean_flow import MeanFlowDenoiser
from echo_monai.networks.nets.reidentification import ReIdentificationNet
from echo_monai.networks.nets.spatiotemporal_controlnet import SpatioTemporalControlNet
from echo_monai.networks.nets.spatiotemporal_unet import SpatioTemporalUNet
from echo_monai.networks.nets.video_autoencoder import FirstFrameVideoAutoencoder

__all__ = [
    "MeanFlowDenoiser",
    "ContextEmbeddingDenoiser",
    "FirstFrameVideoAutoencoder",
    "FramewiseAutoencoder",
    "LatentAutoencoder",
    "MotionAppearanceFeatureExtractor",
    "ReIdentificationNet",
    "SpatioTemporalControlNet",
    "SpatioTemporalUNet",
    "as_latent_autoencoder",
]
