"""The generation pipeline: typed requests -> reference source -> conditioner -> sampler -> dataset writer."""

from __future__ import annotations

from echo_monai.apps.generation.conditioner import RequestConditioner, request_error
from echo_monai.apps.generation.pipeline import GenerationPipeline
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
    label_map_requests,
    make_requests,
    prompt_requests,
    request_conditions,
    requests_fingerprint,
)
from echo_monai.apps.generation.writers import CamusWriter, DatasetWriter, EchoNetWriter, PngWriter, to_uint8

__all__ = [
    "CamusWriter",
    "DatasetWriter",
    "EchoNetWriter",
    "GenerationPipeline",
    "GenerationReport",
    "GenerationRequest",
    "ImageReference",
    "NoReference",
    "PngWriter",
    "RankReport",
    "Reference",
    "ReferenceSource",
    "RequestConditioner",
    "SampledReference",
    "label_map_requests",
    "make_requests",
    "prompt_requests",
    "request_conditions",
    "request_error",
    "requests_fingerprint",
    "seeded_noise",
    "to_uint8",
]
