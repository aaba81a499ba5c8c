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

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

from echo_monai.apps.export import EchoNetExporter, shard
from echo_monai.data.atomic import write_json
from echo_monai.engines import Condition, Conditioning
from echo_monai.inferers import LatentSampler, Sampler
from echo_monai.metrics import MemorisationAudit, nearest_neighbour_similarity

__all__ = ["PrivacyGate", "finish_generation", "generate_video_dataset", "image_condition", "requests_fingerprint"]

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
        requests: dicts with ``name``, ``ejection_fraction`` (percent) and, optionally, the image condition keys
            (``view`` index, ``lv_mask``; see :func:`image_condition`); the same list, in the same order, on every
            rank.
        exporter: where videos and rows go; every rank then calls :func:`finish_generation`, and the last one to
            finish writes ``FileList.csv``.
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
        ValueError: naming the request for an EF outside 0-100, a missing key or a malformed condition map, before
            anything is generated.
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
        image_condition(request, image_conditioning, latent_shape)  # a bad condition map fails before any work
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
        reference, attempts = _reference_latent(
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
            request["name"],
            video[0],
            float(request["ejection_fraction"]),
            split=request.get("split", "TRAIN"),
            extra={"reference_attempts": attempts, "view": request.get("view")},
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
) -> tuple[torch.Tensor | None, int]:
    """A reference-frame latent ``(1, C, h, w)`` that passes the gate (None after ``max_attempts`` redraws), and the
    number of references drawn."""
    condition = image_condition(request, conditioning, latent_shape, device)
    for attempt in range(max_attempts):
        noise = _noise((1, *latent_shape), (seed + request["_index"]) * 1000 + attempt + 1).to(device)
        latent = sampler(noise, network, condition=condition, clip=False)
        if gate is None or bool(gate(latent)[0]):
            return latent, attempt + 1
        report["rejected_references"] += 1
    return None, max_attempts


def _condition_map(value: Any, size: Sequence[int], key: str, name: str) -> torch.Tensor:
    """A request's map condition (e.g. an LV mask) as ``(1, 1, h, w)`` float on the latent grid (area resampling)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"generate_video_dataset: request '{name}': '{key}' file {path!r} does not exist.")
        if path.endswith(".npy"):
            value = np.load(path)
        else:
            image = np.asarray(iio.imread(path))
            value = (image[..., 0] if image.ndim == 3 else image) > 0  # a binary mask image, 0 / 255
    tensor = torch.as_tensor(np.asarray(value), dtype=torch.float32)
    while tensor.ndim < 4:
        tensor = tensor[None]
    if tensor.ndim != 4 or tensor.shape[:2] != (1, 1):
        raise ValueError(
            f"generate_video_dataset: request '{name}': '{key}' must be one map (H, W), got shape "
            f"{tuple(np.shape(value))}."
        )
    if tuple(tensor.shape[2:]) != tuple(size):
        tensor = torch.nn.functional.interpolate(tensor, size=tuple(size), mode="area")
    return tensor


def image_condition(
    request: Mapping[str, Any],
    conditioning: Conditioning,
    latent_shape: Sequence[int],
    device: str | torch.device = "cpu",
) -> Condition:
    """The image model's condition for one request (batch of one).

    A request key feeds the network argument or the concatenated map that ``conditioning`` names (``view``: a class
    index; ``lv_mask``: an ``(H, W)`` array, or a ``.npy`` / binary image path, resampled to the latent grid). A
    missing key takes the conditioning's null value (the null class, the "no mask" map), so a mask-conditioned model
    also samples without a mask.

    Raises:
        ValueError: a network argument with neither a request value nor a null value, or a malformed map.
        FileNotFoundError: a map path that does not exist.
    """
    if not conditioning.is_conditional:
        return Condition()
    name = str(request.get("name", "?"))
    batch: dict[str, torch.Tensor] = {}
    for argument, key in conditioning.network_kwargs.items():
        if request.get(key) is not None:
            batch[key] = torch.as_tensor([request[key]])
        elif argument in conditioning.null_values:
            batch[key] = torch.as_tensor([conditioning.null_values[argument]])
        else:
            raise ValueError(
                f"generate_video_dataset: request '{name}' has no '{key}' (for the image model's '{argument}') and "
                "the conditioning has no null value for it."
            )
    for key in conditioning.concat_keys:
        if request.get(key) is not None:
            batch[key] = _condition_map(request[key], latent_shape[1:], key, name)
        else:
            batch[key] = torch.full((1, 1, *latent_shape[1:]), float(conditioning.null_values.get(key, 0.0)))
    return conditioning.extract(batch, device)


def requests_fingerprint(requests: Sequence[Mapping[str, Any]]) -> str:
    """A short hash of the request list (names, EFs, views...), tying per-rank reports to one generation job."""
    text = json.dumps([dict(r) for r in requests], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def finish_generation(
    exporter: EchoNetExporter,
    requests: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any],
    max_attempts: int,
    rank: int | None = None,
    world_size: int | None = None,
) -> dict[str, Any] | None:
    """Record this rank's share as done; the last rank to finish writes ``FileList.csv`` and the merged report.

    Every rank calls this after :func:`generate_video_dataset`. It writes ``reports/<job>_rank<r>_of_<w>.json``
    (atomically; ``<job>`` is :func:`requests_fingerprint`), then, when every rank's report of this job exists, merges
    them into ``generation_report.json`` and calls ``exporter.finalize()``. No barrier or process group is needed:
    the rank that finishes last sees every report; ranks finishing together write the same files. A rerun that
    resumes recounts from the row files, so the merged figures cover the whole dataset, not only the last run.

    Merged report: ``requested``, ``written`` (names with a row), ``failed`` (requests whose every reference the
    gate rejected), ``accepted_references`` / ``rejected_references`` (from each row's ``reference_attempts``,
    ``max_attempts`` per failed request) and ``gate_rejection_rate`` (rejected / drawn: the share of sampled
    references the re-identification filter flagged, i.e. the memorisation rate before the filter).

    Returns:
        the merged report on the rank that wrote it, else None.
    """
    rank, world_size = _rank_and_world(rank, world_size)
    job = requests_fingerprint(requests)
    folder = Path(exporter.root) / "reports"
    write_json(folder / f"{job}_rank{rank}_of_{world_size}.json", dict(report))
    paths = [folder / f"{job}_rank{r}_of_{world_size}.json" for r in range(world_size)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        logger.info("finish_generation: rank %d done; waiting for %s to write FileList.csv.", rank, missing)
        return None
    reports = [json.loads(p.read_text()) for p in paths]
    names = [str(r["name"]) for r in requests]
    rows = {}
    for name in names:
        row_path = exporter.paths(name)["row"]
        if row_path.is_file() and exporter.paths(name)["video"].is_file():
            rows[name] = json.loads(row_path.read_text())
    failed = sorted({n for r in reports for n in r.get("failed", [])} - set(rows))
    accepted = len(rows)
    rejected = sum(int(row.get("reference_attempts", 1)) - 1 for row in rows.values()) + max_attempts * len(failed)
    merged = {
        "job": job,
        "world_size": world_size,
        "requested": len(names),
        "written": [n for n in names if n in rows],
        "failed": failed,
        "missing": [n for n in names if n not in rows and n not in failed],
        "accepted_references": accepted,
        "rejected_references": rejected,
        "gate_rejection_rate": rejected / max(1, accepted + rejected),
        "skipped_existing": sum(int(r.get("skipped_existing", 0)) for r in reports),
    }
    exporter.finalize()
    write_json(Path(exporter.root) / "generation_report.json", merged)
    return merged
