from __future__ import annotations

from echo_monai.data.latents import LatentScaler, framewise
from echo_monai.inferers.latent_sampler import LatentSampler
from echo_monai.inferers.sampler import FlowSolver, Sampler
from echo_monai.inferers.temporal_window import TemporalSlidingWindow

__all__ = ["FlowSolver", "LatentSampler", "LatentScaler", "Sampler", "TemporalSlidingWindow", "framewise"]
