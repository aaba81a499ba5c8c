"""A bundle's generation pipeline as one network: from what its ``network_data_format`` says goes in to the sample.

A bundle's ``network_data_format`` describes its pipeline's input and output (``echo_flow``: a still frame in, a
cine out; ``us_image_to_video``: an image in, a video out; ``echo_text_controlnet``: a one-hot label map in, an
image out), which is what MONAI Label, MONAI Deploy and ``python -m monai.bundle verify_net_in_out`` read. Its
denoiser takes other inputs (noisy latents, timesteps, tokens), so the bundle's ``pipeline_network`` is this module,
built on the bundle's own :class:`~echo_monai.apps.generation.GenerationPipeline`: the same reference source,
conditioning, sampler, decoder and post-processing as ``echo-monai infer``, nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from echo_monai.apps.generation.conditioner import RequestConditioner
from echo_monai.apps.generation.pipeline import GenerationPipeline
from echo_monai.apps.generation.requests import GenerationRequest

__all__ = ["PipelineNetwork"]


class PipelineNetwork(torch.nn.Module):
    """``forward(inputs, **conditions) -> samples`` through a generation pipeline.

    Item ``i`` of ``inputs`` becomes the request ``pipeline_<i>``, seeded ``seed + i`` as the pipeline seeds its
    items, whose conditions are ``{key: inputs[i]}`` plus ``conditions``: the forward's keywords (one value for the
    batch, or a list / tensor with one value per item) over the defaults given here. The batch then goes through
    :meth:`GenerationPipeline.sample`. No output gate applies (nothing is written); a reference source that gives up
    on an item (every sampled reference re-identified) is an error.

    Args:
        generation: the bundle's generation pipeline.
        key: the request condition the input stands for (``reference_image``, ``image``, ``label_map``).
        conditions: default values of the other conditions (an EF, a view, a prompt).
        conditioner: a conditioner in place of the pipeline's, e.g. one whose transform starts from a tensor where
            the pipeline's reads a file.
        seed: the first item's seed.

    Example:
        >>> net = PipelineNetwork(generation, "reference_image", {"ejection_fraction": 55.0, "view": 0})
        >>> net(frames, ejection_fraction=[30.0, 60.0]).shape     # frames (2, 1, H, W) -> cines (2, 1, T, H, W)
    """

    def __init__(
        self,
        generation: GenerationPipeline,
        key: str,
        conditions: Mapping[str, Any] | None = None,
        conditioner: RequestConditioner | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(generation, GenerationPipeline):
            raise TypeError(f"PipelineNetwork: generation must be a GenerationPipeline, got {type(generation)}.")
        self.generation, self.key, self.seed = generation, str(key), int(seed)
        self.conditions = dict(conditions or {})
        self.conditioner = conditioner
        self.network = generation.network  # a submodule, so .to() and .eval() reach the weights

    def requests(self, inputs: torch.Tensor, **conditions: Any) -> list[GenerationRequest]:
        """The batch's requests (see the class)."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 3:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f"PipelineNetwork: the input must be a tensor (B, C, *spatial), got {shape}.")
        values = {**self.conditions, **conditions}
        batch = inputs.shape[0]
        inputs = inputs.detach().cpu()  # the request transforms run on the CPU, as for files
        return [
            GenerationRequest(
                f"pipeline_{i}",
                i,
                self.seed + i,
                {self.key: inputs[i], **{name: _item(value, i, batch, name) for name, value in values.items()}},
            )
            for i in range(batch)
        ]

    def forward(self, inputs: torch.Tensor, **conditions: Any) -> torch.Tensor:
        requests = self.requests(inputs, **conditions)
        conditioner = self.conditioner if self.conditioner is not None else self.generation.conditioner
        for request in requests:
            self.generation.reference.check(request)
            conditioner.check(request)
        sampled = self.generation.sample(requests, conditioner)
        if len(sampled.kept) != len(requests):
            failed = [r.name for r, ref in zip(requests, sampled.references, strict=True) if ref.failed]
            raise RuntimeError(f"PipelineNetwork: no reference passed the privacy gate for {', '.join(failed)}.")
        return sampled.samples.to(inputs.device)


def _item(value: Any, index: int, batch: int, name: str) -> Any:
    """Item `index`'s value of a condition given for the batch: one shared value, or one per item."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return value.item()
        value = value.detach().cpu()
    if isinstance(value, (list, tuple, torch.Tensor)):
        if len(value) != batch:
            raise ValueError(f"PipelineNetwork: '{name}' has {len(value)} values for a batch of {batch}.")
        item = value[index]
        return item.item() if isinstance(item, torch.Tensor) and item.numel() == 1 else item
    return value
