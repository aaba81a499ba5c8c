from __future__ import annotations

from echo_monai.engines.autoencoder import (
    AutoencoderKLInferer,
    AutoencoderKLLoss,
    AutoencoderPrepareBatch,
    PatchDiscriminatorLoss,
    PatchGeneratorLoss,
    kl_divergence,
    make_autoencoder_trainer,
)
from echo_monai.engines.conditioning import Condition, Conditioning
from echo_monai.engines.prepare_batch import (
    DDPMPrepareBatch,
    DenoisingPrepareBatch,
    FlowMatchingPrepareBatch,
    SamplingPrepareBatch,
)
from echo_monai.engines.reidentification import ContrastivePairPrepareBatch, PairContrastiveLoss
from echo_monai.engines.utils import first_batch

__all__ = [
    "AutoencoderKLInferer",
    "AutoencoderKLLoss",
    "AutoencoderPrepareBatch",
    "PatchDiscriminatorLoss",
    "PatchGeneratorLoss",
    "kl_divergence",
    "make_autoencoder_trainer",
    "Condition",
    "ContrastivePairPrepareBatch",
    "PairContrastiveLoss",
    "Conditioning",
    "DDPMPrepareBatch",
    "DenoisingPrepareBatch",
    "FlowMatchingPrepareBatch",
    "SamplingPrepareBatch",
    "first_batch",
]
