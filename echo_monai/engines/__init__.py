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
from echo_monai.engines.conditioning import Condition, Conditioning, guided_output
from echo_monai.engines.distillation import (
    ConsistencyDistillationPrepareBatch,
    consistency_student,
    meanflow_student,
    reflow_couplings,
    reflow_student,
    student_from_teacher,
)
from echo_monai.engines.evaluation import make_sampling_evaluator
from echo_monai.engines.frame_interpolation import FrameTripletPrepareBatch, MAFELoss
from echo_monai.engines.prepare_batch import (
    AdaptiveL2Loss,
    DDPMPrepareBatch,
    DenoisingPrepareBatch,
    FlowMatchingPrepareBatch,
    MeanFlowPrepareBatch,
    SamplingPrepareBatch,
)
from echo_monai.engines.reidentification import ContrastivePairPrepareBatch, PairContrastiveLoss
from echo_monai.engines.stage import attach_stage_handlers, checkpoint_prefix, make_training_stage, scalar_output
from echo_monai.engines.utils import (
    distributed_data_parallel,
    finalize_distributed,
    first_batch,
    init_distributed,
    local_device,
    rank_and_world_size,
)

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
    "ConsistencyDistillationPrepareBatch",
    "DDPMPrepareBatch",
    "DenoisingPrepareBatch",
    "FlowMatchingPrepareBatch",
    "AdaptiveL2Loss",
    "MeanFlowPrepareBatch",
    "FrameTripletPrepareBatch",
    "MAFELoss",
    "SamplingPrepareBatch",
    "attach_stage_handlers",
    "checkpoint_prefix",
    "consistency_student",
    "distributed_data_parallel",
    "finalize_distributed",
    "first_batch",
    "guided_output",
    "init_distributed",
    "local_device",
    "make_sampling_evaluator",
    "make_training_stage",
    "meanflow_student",
    "reflow_couplings",
    "reflow_student",
    "rank_and_world_size",
    "scalar_output",
    "student_from_teacher",
]
