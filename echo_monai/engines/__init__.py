from __future__ import annotations

from echo_monai.engines.conditioning import Condition, Conditioning
from echo_monai.engines.prepare_batch import (
    DDPMPrepareBatch,
    DenoisingPrepareBatch,
    FlowMatchingPrepareBatch,
    SamplingPrepareBatch,
)

__all__ = [
    "Condition",
    "Conditioning",
    "DDPMPrepareBatch",
    "DenoisingPrepareBatch",
    "FlowMatchingPrepareBatch",
    "SamplingPrepareBatch",
]
