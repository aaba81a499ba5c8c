from __future__ import annotations

from echo_monai.data.latents import LatentScaler, framewise
from echo_monai.inferers.controlnet import ControlNetDenoiser, copy_encoder_weights, initialised_controlnet
from echo_monai.inferers.fast_denoiser import FastDenoiser
from echo_monai.inferers.image_animator import ImageAnimator
from echo_monai.inferers.latent_sampler import LatentSampler
from echo_monai.inferers.motion_transfer import MotionTransfer
from echo_monai.inferers.sampler import (
    STEP_RULES,
    FlowSolver,
    Sampler,
    SchedulerKind,
    StepRule,
    double_batch,
    register_scheduler,
    scheduler_kind,
    seeded_noise,
)
from echo_monai.inferers.sampling_network import SamplingNetwork
from echo_monai.inferers.temporal_window import TemporalSlidingWindow

__all__ = [
    "ControlNetDenoiser",
    "FastDenoiser",
    "FlowSolver",
    "ImageAnimator",
    "LatentSampler",
    "LatentScaler",
    "MotionTransfer",
    "STEP_RULES",
    "Sampler",
    "SamplingNetwork",
    "SchedulerKind",
    "StepRule",
    "TemporalSlidingWindow",
    "copy_encoder_weights",
    "initialised_controlnet",
    "double_batch",
    "framewise",
    "register_scheduler",
    "scheduler_kind",
    "seeded_noise",
]
