from __future__ import annotations

from echo_monai.networks.nets.spatiotemporal_unet import SpatioTemporalUNet

__all__ = ["SpatioTemporalUNet"]
