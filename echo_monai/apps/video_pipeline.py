"""The EchoFlow / EchoNet-Synthetic generation pipeline: image latent → privacy filter → animation at a requested EF
→ decode → EchoNet-layout export, sharded across ``torchrun`` ranks and resumable per video.

1. A latent *image* model (conditioned on the view, say) samples the reference frame latent of a new "patient".
2. The re-identification network rejects references too close to a training patient (:func:`privacy_filter`,
   threshold = 95th percentile of real train↔held-out best matches); rejected ones are redrawn.
3. A latent *video* model animates the reference (concatenated on channels) at the requested ejection fraction
   (a context token), and the autoencoder decodes the video frame by frame.
4. :class:`EchoNetExporter` writes ``Videos/<name>.avi`` and the row with the requested EF.

Every request's noise comes from its own seed (``seed + index``), so a resumed or re-sharded run draws the same
videos.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from echo_monai.apps.export import EchoNetExporter, shard
from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import LatentSampler, Sampler
from echo_monai.metrics import MemorisationAudit, nearest_neighbour_similarity

__all__ = ["PrivacyGate", "generate_video_dataset"]

logger = logging.getLogger(__name__)


class PrivacyGate:
    """The privacy filter with its threshold calibrated once: ``gate(latents) -> keep mask (B,)``.

    Same rule as :class:`echo_monai.metrics.MemorisationAudit` (cosine similarity of embeddings; threshold = the
    ``percentile`` of the best train↔held-out similarities of real data), with the training embeddings kept so that
    each new reference costs one embedding.

    Args:
        embed: the re-identification network (or any embedding callable).
        train: the generator's real training latents ``(N, ...)``.
        held_out: real latents of other patients ``(H, ...)``.
        percentile: threshold percentile (95 in EchoNet-Synthetic).
    """

    def __init__(self, embed: Any, train: torch.Tensor, held_out: torch.Tensor, percentile: float = 95.0) -> None:
        if isinstance(embed, torch.nn.Module):
            embed.eval()
        self.audit = MemorisationAudit(embed=embed, percentile=percentile)
        self.train_embeddings = self.audit.embeddings(train, "train")
        held_similarity, _ = nearest_neighbour_similarity(
            self.audit.embeddings(held_out, "held_out"), self.train_embeddings, self.audit.chunk_size
        )
        self.threshold = float(np.percentile(held_similarity.numpy(), percentile))

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        similarity, _ = nearest_neighbour_similarity(
            self.audit.embeddings(latents, "synthetic"), self.train_embeddings, self.audit.chunk_size
        )
        return similarity <= self.threshold


def _noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def generate_video_dataset(
    requests: Sequence[Mapping[str, Any]],
    exporter: EchoNetExporter,
    image_sampler: Sampler,
    image_network: torch.nn.Module,
    image_conditioning: Conditioning,
    video_sampler: LatentSampler,
    video_network: torch.nn.Module,
    video_conditioning: Conditioning,
    latent_shape: Sequence[int],
    num_frames: int,
    gate: PrivacyGate | None = None,
    max_attempts: int = 10,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Generate this rank's share of ``requests`` into ``exporter`` (skipping finished videos).

    Args:
        requests: dicts with ``name``, ``ejection_fraction`` (percent) and the image condition keys (e.g. ``view``);
            the same list, in the same order, on every rank.
        exporter: where videos and rows go; call ``exporter.finalize()`` on rank 0 once every rank is done.
        image_sampler: sampler of the latent image model (no decoding: its output is the reference latent).
        image_network: the latent image denoiser.
        image_conditioning: places the request's image conditions (e.g. ``{"class_labels": "view"}``).
        video_sampler: latent sampler of the video model; it decodes, and its ``encode_concat`` must be False (the
            reference is already a latent).
        video_network: the latent video denoiser.
        video_conditioning: places ``ejection_fraction`` (context) and ``reference`` (concatenated latent).
        latent_shape: ``(C, h, w)`` of one latent frame.
        num_frames: frames of each video.
        gate: the privacy filter; None to export without it (not recommended).
        max_attempts: redraws of a reference that the gate rejects before giving up on that request.
        seed: base seed; request ``i`` (its index in ``requests``) uses ``seed + i`` and its redraws after it.
        rank: this process's rank (default from torch.distributed / ``$RANK``).
        world_size: number of processes.
        device: where sampling runs.

    Returns:
        ``{"written": [...], "skipped_existing": n, "rejected_references": n, "failed": [...]}`` for this rank.

    Raises:
        ValueError: naming the request for an EF outside 0-100 or a missing key, before anything is generated.
    """
    if video_sampler.encode_concat:
        raise ValueError(
            "generate_video_dataset: video_sampler must have encode_concat=False (references are latents)."
        )
    if num_frames < 1 or max_attempts < 1:
        raise ValueError(
            f"generate_video_dataset: num_frames and max_attempts must be >= 1, got {num_frames}, {max_attempts}."
        )
    for index, request in enumerate(requests):
        for key in ("name", "ejection_fraction"):
            if key not in request:
                raise ValueError(f"generate_video_dataset: request {index} has no '{key}'.")
        if not 0.0 <= float(request["ejection_fraction"]) <= 100.0:
            raise ValueError(
                f"generate_video_dataset: request '{request['name']}' asks for EF {request['ejection_fraction']}; "
                "expected 0-100 %."
            )
    indexed = [{**request, "_index": i} for i, request in enumerate(requests)]
    mine = shard(indexed, rank, world_size)
    todo = exporter.pending(mine)
    report: dict[str, Any] = {
        "written": [],
        "skipped_existing": len(mine) - len(todo),
        "rejected_references": 0,
        "failed": [],
    }
    image_network.eval()
    video_network.eval()
    for request in todo:
        reference = _reference_latent(
            request,
            image_sampler,
            image_network,
            image_conditioning,
            latent_shape,
            gate,
            max_attempts,
            seed,
            device,
            report,
        )
        if reference is None:
            report["failed"].append(request["name"])
            logger.warning(
                "generate_video_dataset: every reference for %s was re-identified; skipped.", request["name"]
            )
            continue
        video_condition = video_conditioning.extract(
            {"ejection_fraction": torch.tensor([float(request["ejection_fraction"])]), "reference": reference}, device
        )
        noise = _noise((1, latent_shape[0], num_frames, *latent_shape[1:]), seed + request["_index"]).to(device)
        video = video_sampler(noise, video_network, condition=video_condition)
        exporter.write(
            request["name"], video[0], float(request["ejection_fraction"]), split=request.get("split", "TRAIN")
        )
        report["written"].append(request["name"])
    return report


def _reference_latent(
    request: Mapping[str, Any],
    sampler: Sampler,
    network: torch.nn.Module,
    conditioning: Conditioning,
    latent_shape: Sequence[int],
    gate: PrivacyGate | None,
    max_attempts: int,
    seed: int,
    device: str | torch.device,
    report: dict[str, Any],
) -> torch.Tensor | None:
    """A reference-frame latent ``(1, C, h, w)`` that passes the gate, or None after ``max_attempts`` redraws."""
    condition = Condition()
    if conditioning.is_conditional:
        batch = {key: torch.as_tensor([request[key]]) for key in conditioning.network_kwargs.values()}
        condition = conditioning.extract(batch, device)
    for attempt in range(max_attempts):
        noise = _noise((1, *latent_shape), (seed + request["_index"]) * 1000 + attempt + 1).to(device)
        latent = sampler(noise, network, condition=condition, clip=False)
        if gate is None or bool(gate(latent)[0]):
            return latent
        report["rejected_references"] += 1
    return None
