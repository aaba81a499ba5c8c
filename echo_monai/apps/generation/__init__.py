"""The generation pipeline: typed requests -> reference source -> conditioner -> sampler -> dataset writer."""

from __future__ import annotations

from echo_monai.apps.generation.conditioner import RequestConditioner, request_error
from echo_monai.apps.generation.pipeline import GenerationPipeline, SampledBatch
from echo_monai.apps.generation.pipeline_network import PipelineNetwork
from echo_monai.apps.generation.references import (
    ImageReference,
    NoReference,
    Reference,
    ReferenceSource,
    SampledReference,
    seeded_noise,
)
from echo_monai.apps.generation.requests import (
    GenerationReport,
    GenerationRequest,
    RankReport,
    image_requests,
    label_map_requests,
    make_requests,
    motion_requests,
    prompt_requests,
    request_conditions,
    requests_fingerprint,
)
from echo_monai.apps.generation.video_writers import (
    FLOW_METHODS,
    VIDEO_FORMATS,
    BusvWriter,
    VideoFileWriter,
    mask_box,
    propagate_mask,
)
from echo_monai.apps.generation.writers import CamusWriter, DatasetWriter, EchoNetWriter, PngWriter, to_uint8

__all__ = [
    "FLOW_METHODS",
    "VIDEO_FORMATS",
    "BusvWriter",
    "CamusWriter",
    "DatasetWriter",
    "EchoNetWriter",
    "GenerationPipeline",
    "GenerationReport",
    "GenerationRequest",
    "ImageReference",
    "NoReference",
    "PipelineNetwork",
    "PngWriter",
    "RankReport",
    "Reference",
    "ReferenceSource",
    "RequestConditioner",
    "SampledBatch",
    "SampledReference",
    "VideoFileWriter",
    "image_requests",
    "label_map_requests",
    "mask_box",
    "make_requests",
    "motion_requests",
    "prompt_requests",
    "propagate_mask",
    "request_conditions",
    "request_error",
    "requests_fingerprint",
    "seeded_noise",
    "to_uint8",
]
