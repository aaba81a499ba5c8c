"""The standard ``evaluator`` of a generative bundle: MONAI's ``SupervisedEvaluator`` that samples for a dataset."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from torch.utils.data import Dataset

from echo_monai.engines.conditioning import Conditioning
from echo_monai.engines.prepare_batch import SamplingPrepareBatch

__all__ = ["make_sampling_evaluator"]


def make_sampling_evaluator(
    network: torch.nn.Module,
    inferer: Callable[..., torch.Tensor],
    dataset: Dataset,
    conditioning: Conditioning | None = None,
    like_key: str | None = None,
    sample_shape: Sequence[int] | None = None,
    channels: int = 1,
    batch_size: int = 8,
    seed: int | None = 0,
    val_handlers: Sequence[Any] = (),
    device: str | torch.device = "cpu",
    decoder_condition: Mapping[str, str] | None = None,
) -> SupervisedEvaluator:
    """A ``SupervisedEvaluator`` whose inferer (a sampler) generates one sample per dataset item.

    The bundle contract's ``evaluator`` id (MONAI Label / Deploy and ``ConfigWorkflow`` expect it): every batch of
    ``dataset`` gives its conditions (see :class:`echo_monai.engines.SamplingPrepareBatch`) and the samples are the
    engine output's ``"pred"``; handlers such as a writer or a metric read them from there.

    Args:
        network: the trained denoiser (or wrapper).
        inferer: :class:`echo_monai.inferers.Sampler` or :class:`echo_monai.inferers.LatentSampler`.
        dataset: items holding the conditions.
        conditioning: places the conditions (the training one).
        like_key: batch key whose spatial size the samples take (e.g. the label map).
        sample_shape: ``(C, H, W)`` / ``(C, T, H, W)`` of a sample when ``like_key`` does not give it.
        channels: sample channels with ``like_key``.
        batch_size: items per batch.
        seed: noise seed; None for random noise.
        val_handlers: handlers of the evaluator.
        device: where it runs.
        decoder_condition: decoder argument -> batch key for a latent sampler whose decoder needs more than the
            latent (e.g. ``{"first_frame": "first_frame"}``).

    Example:
        >>> evaluator = make_sampling_evaluator(net, Sampler(DDIMScheduler(1000), 50), label_maps,
        ...                                     Conditioning({"seg": "label_map"}), like_key="label_map")
        >>> evaluator.run()
    """
    if batch_size < 1:
        raise ValueError(f"make_sampling_evaluator: batch_size must be >= 1, got {batch_size}.")
    return SupervisedEvaluator(
        device=torch.device(device),
        val_data_loader=DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0),
        network=network,
        inferer=inferer,
        prepare_batch=SamplingPrepareBatch(conditioning, sample_shape, like_key, channels, seed, decoder_condition),
        val_handlers=list(val_handlers),
        decollate=False,
    )
