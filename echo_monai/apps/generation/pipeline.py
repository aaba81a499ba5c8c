"""The generation pipeline every bundle's export runs through: typed requests -> reference source -> conditioner ->
sampler -> dataset writer, sharded across ``torchrun`` ranks, resumable per item, with one merged report.

For each request of this rank (see :class:`GenerationPipeline`):

1. check: the writer, the reference source and the conditioner refuse bad requests before anything is generated;
2. reference: nothing, a sampled reference that passed the privacy gate, or a real image;
3. condition: the request's conditions (and reference) through the conditioner's transform, placed for the network;
4. sample: the sampler integrates from each request's own seeded noise;
5. gate and write: an optional output gate (a privacy filter on the finished samples) keeps or drops each item; the
   writer puts a kept item's files and then its record on disk (temporary names, then rename).

Requests are cut into fixed batches of ``batch_size`` in request order, and batches are dealt to ranks
(``batches[rank::world_size]``): a batch, its noise and its seeds are the same whatever the number of ranks, and a
resumed run regenerates a partly finished batch whole and writes only its missing items, so every item has the same
bytes as in an uninterrupted run. Each rank then writes ``reports/<job>_rank<r>_of_<w>.json``; the rank that finishes
last (it sees every report; no barrier is needed) recounts the items on disk into ``generation_report.json`` and
lets the writer write its index (``FileList.csv``...), which lists exactly the finished items of the requests.

The job's fingerprint (requests, sampler settings, network weights, reference source, layout; see
:meth:`GenerationPipeline.fingerprint`) is kept in ``generation_fingerprint.json``: a rerun resumes only into a
folder its own job made, and refuses (or, with ``overwrite=True``, clears) one made by another job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from echo_monai.apps.generation.conditioner import RequestConditioner
from echo_monai.apps.generation.fingerprint import describe, digest
from echo_monai.apps.generation.references import NoReference, Reference, ReferenceSource, seeded_noise
from echo_monai.apps.generation.requests import GenerationReport, GenerationRequest, RankReport, requests_fingerprint
from echo_monai.apps.generation.writers import DatasetWriter
from echo_monai.data.atomic import remove_stale_temporaries, write_json
from echo_monai.engines.utils import rank_and_world_size

__all__ = ["FINGERPRINT_FILE", "SETTINGS_FILE", "GenerationPipeline", "SampledBatch"]

FINGERPRINT_FILE = "generation_fingerprint.json"
SETTINGS_FILE = "generation_settings.json"

logger = logging.getLogger(__name__)


@dataclass
class SampledBatch:
    """One batch sampled by :meth:`GenerationPipeline.sample`.

    Attributes:
        references: every request's reference, in batch order (``failed`` where the gate rejected every draw).
        kept: the ``(request, reference)`` pairs that were sampled (those with a reference).
        items: their conditioned items (what the writer is given beside the sample).
        samples: their samples ``(len(kept), C, [T,] H, W)``; None when none was kept.
    """

    references: list[Reference]
    kept: list[tuple[GenerationRequest, Reference]]
    items: list[dict[str, Any]]
    samples: torch.Tensor | None


class GenerationPipeline:
    """Generate a synthetic dataset: this rank's share of the requests, skipping finished items.

    Args:
        sampler: :class:`echo_monai.inferers.Sampler` or :class:`echo_monai.inferers.LatentSampler` (its
            ``encode_concat`` must be False when the references are latents).
        network: the (trained) denoiser or denoiser wrapper.
        conditioner: turns requests and references into the network's condition.
        writer: the output layout.
        sample_shape: ``(C, H, W)`` or ``(C, T, H, W)`` of the initial noise of one item (the latent shape for a
            latent sampler).
        reference: where each item starts from; default none.
        batch_size: requests sampled together.
        device: where sampling runs.
        progress: show a progress bar over this rank's batches.
        rank: this process's rank (default from torch.distributed / ``$RANK``).
        world_size: number of processes (default likewise / ``$WORLD_SIZE``).
        overwrite: replace a dataset in the writer's folder that another job (other requests, sampler, networks,
            reference or layout) made; by default such a folder is refused, and only the same job resumes.
        postprocess: ``(samples, items) -> samples`` after sampling, before writing (e.g.
            :class:`echo_monai.transforms.MaskOutsideSector`).
        decoder_condition: decoder argument -> conditioned item key, stacked per batch and given to a latent
            sampler as its ``decoder_condition`` (LDDM's decoder takes the seed image: ``{first_frame: first_frame}``).
        output_gate: ``samples (B, ...) -> keep (B,)`` on the finished samples (after `postprocess`), before
            writing: an item it rejects is not written and is listed in the report's ``gated`` (MCDM animates real
            reference frames, so every generated video is checked against the training patients:
            :class:`echo_monai.metrics.PrivacyGate` on frames judges a video by its frames).

    Example:
        >>> pipeline = GenerationPipeline(sampler, network, RequestConditioner(conditioning, transform),
        ...                               CamusWriter("synthetic_camus"), (1, 112, 112), batch_size=16)
        >>> report = pipeline.run(label_map_requests("CAMUS", copies=4, split="training"))
    """

    def __init__(
        self,
        sampler: Callable[..., torch.Tensor],
        network: torch.nn.Module,
        conditioner: RequestConditioner,
        writer: DatasetWriter,
        sample_shape: Sequence[int],
        reference: ReferenceSource | None = None,
        batch_size: int = 1,
        device: str | torch.device = "cpu",
        progress: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        overwrite: bool = False,
        postprocess: Callable[[torch.Tensor, list[dict[str, Any]]], torch.Tensor] | None = None,
        decoder_condition: Mapping[str, str] | None = None,
        output_gate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(sample_shape) not in (3, 4):
            raise ValueError(f"GenerationPipeline: sample_shape must be (C, H, W) or (C, T, H, W), got {sample_shape}.")
        if batch_size < 1:
            raise ValueError(f"GenerationPipeline: batch_size must be >= 1, got {batch_size}.")
        self.reference = reference if reference is not None else NoReference()
        if self.reference.is_latent and getattr(sampler, "encode_concat", False):
            raise ValueError(
                "GenerationPipeline: the references are latents, so the latent sampler must have encode_concat=False."
            )
        self.sampler, self.network, self.conditioner, self.writer = sampler, network, conditioner, writer
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.batch_size, self.device, self.progress = int(batch_size), torch.device(device), progress
        self.rank, self.world_size = rank, world_size
        self.overwrite = bool(overwrite)
        self.postprocess = postprocess
        self.decoder_condition = dict(decoder_condition or {})
        self.output_gate = output_gate

    def run(self, requests: Sequence[GenerationRequest]) -> GenerationReport | None:
        """Generate this rank's missing items; returns the merged report on the rank that writes it, else None.

        Raises:
            ValueError / FileNotFoundError / KeyError: naming the request, for a request that cannot be generated
                or written (checked for every item of this rank before the first is generated), or a folder that
                holds another job's items (unless ``overwrite``).
        """
        requests = list(requests)
        names = [r.name for r in requests]
        if len(set(names)) != len(names):
            raise ValueError("GenerationPipeline: request names must be unique (they name the output files).")
        rank, world_size = rank_and_world_size(self.rank, self.world_size)
        batches = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        mine = batches[rank::world_size]
        for path in remove_stale_temporaries(self.writer.root) if rank == 0 else []:
            logger.info("generation: removed %s, left by a killed run", path)
        # 1. refuse bad requests before anything is generated, then a folder another job made
        for request in (r for batch in mine for r in batch):
            self.writer.check(request)
            self.reference.check(request)
            self.conditioner.check(request)
        self._claim(requests)
        todo = [batch for batch in mine if not all(self.writer.done(r) for r in batch)]
        pending = [r for batch in todo for r in batch if not self.writer.done(r)]
        report = RankReport(rank, world_size, skipped_existing=sum(map(len, mine)) - len(pending))
        self.network.eval()
        for batch in self._progress(todo):
            self._generate(batch, report)
        return self._finish(requests, report)

    @torch.no_grad()
    def sample(self, batch: Sequence[GenerationRequest], conditioner: RequestConditioner | None = None) -> SampledBatch:
        """Steps 2-4 for one batch, nothing written: references, conditions, samples (post-processed).

        Args:
            batch: the requests, sampled together.
            conditioner: another conditioner than the pipeline's (e.g. one whose transform takes tensors instead of
                files, as :class:`~echo_monai.apps.generation.PipelineNetwork` uses).
        """
        conditioner = conditioner if conditioner is not None else self.conditioner
        # 2. references (redrawn until the gate lets them pass, or given up)
        references = [self.reference(request, self.device) for request in batch]
        kept = [(request, ref) for request, ref in zip(batch, references, strict=True) if not ref.failed]
        if not kept:
            return SampledBatch(references, [], [], None)
        # 3. conditions of the batch
        items, condition = conditioner([r for r, _ in kept], [ref.value for _, ref in kept], device=self.device)
        # 4. sampling from each request's own noise (stochastic steps follow the batch's first seed)
        noise = torch.stack([seeded_noise(self.sample_shape, r.seed) for r, _ in kept]).to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(kept[0][0].seed)
        decoding = {"decoder_condition": self._decoder_condition(items)} if self.decoder_condition else {}
        samples = self.sampler(noise, self.network, condition=condition, generator=generator, **decoding)
        if self.postprocess is not None:
            samples = self.postprocess(samples, items)
        return SampledBatch(references, kept, items, samples)

    def _generate(self, batch: list[GenerationRequest], report: RankReport) -> None:
        sampled = self.sample(batch)
        for request, reference in zip(batch, sampled.references, strict=True):
            report.rejected_references += reference.attempts - (0 if reference.failed else min(1, reference.attempts))
            if reference.failed:
                logger.warning("generation: every reference for %s was re-identified; skipped.", request.name)
                report.failed.append(request.name)
        if not sampled.kept:
            return
        kept, items, samples = sampled.kept, sampled.items, sampled.samples
        passed = self._passed(samples, [r.name for r, _ in kept])
        # 5. the missing items of the batch, files first and the record last
        for (request, reference), sample, item, ok in zip(kept, samples, items, passed, strict=True):
            if self.writer.done(request):
                continue
            if not ok:
                logger.warning("generation: the output gate rejected %s (re-identified); not written.", request.name)
                report.gated.append(request.name)
                continue
            extra = {"reference_attempts": reference.attempts} if reference.attempts else {}
            self.writer.write(request, sample, item, extra)
            report.written.append(request.name)

    def _passed(self, samples: torch.Tensor, names: list[str]) -> list[bool]:
        """The output gate's verdict per sample (all True without a gate)."""
        if self.output_gate is None:
            return [True] * len(names)
        keep = torch.as_tensor(self.output_gate(samples)).flatten()
        if keep.shape != (len(names),):
            raise ValueError(
                f"GenerationPipeline: output_gate must return one keep flag per sample ({len(names)}), got "
                f"{tuple(keep.shape)}."
            )
        return [bool(k) for k in keep]

    def _decoder_condition(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The decoder conditions of a batch, stacked from its conditioned items."""
        out = {}
        for argument, key in self.decoder_condition.items():
            missing = [i for i, item in enumerate(items) if item.get(key) is None]
            if missing:
                raise ValueError(
                    f"GenerationPipeline: conditioned item(s) {missing} of the batch have no '{key}' (the decoder's "
                    f"'{argument}')."
                )
            values = [torch.as_tensor(item[key]).as_subclass(torch.Tensor).float() for item in items]
            out[argument] = torch.stack(values).to(self.device)
        return out

    def fingerprint(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """What makes this job's items what they are: a hash per part (requests, sampler, network, reference,
        layout, noise shape and batching) and of all of them (``job``)."""
        parts = {
            "requests": requests_fingerprint(requests),
            "sampler": digest(describe(self.sampler)),
            "network": digest(describe(self.network)),
            "reference": digest(describe(self.reference)),
            "writer": digest(describe(self.writer)),
            "postprocess": digest(describe(self.postprocess)),
            "noise": digest([self.sample_shape, self.batch_size]),
        }
        if self.decoder_condition:
            parts["decoder_condition"] = digest(sorted(self.decoder_condition.items()))
        if self.output_gate is not None:
            parts["output_gate"] = digest(describe(self.output_gate))
        return {"job": digest(parts), "parts": parts}

    def _claim(self, requests: Sequence[GenerationRequest]) -> None:
        """Record this job's fingerprint and settings in the output folder, or refuse a folder another job made.

        The same job resumes. A folder without generated items is not another job's data and is taken. A folder with
        items of another job (or with items but no fingerprint) is refused, or cleared when ``overwrite``.
        """
        path = self.writer.root / FINGERPRINT_FILE
        mine = self.fingerprint(requests)
        theirs: dict[str, Any] | None = None
        if path.is_file():
            try:
                theirs = json.loads(path.read_text())
            except json.JSONDecodeError:
                theirs = {"job": None, "parts": {}}
            if theirs.get("job") == mine["job"]:
                return
        differ = sorted(k for k, v in mine["parts"].items() if (theirs or {}).get("parts", {}).get(k) != v)
        if self.writer.records() and not self.overwrite:
            if theirs is None:
                raise ValueError(
                    f"'{self.writer.root}' already holds generated items but no {FINGERPRINT_FILE}, so it cannot be "
                    "resumed safely; use another output folder, or overwrite it (--generation::overwrite True)."
                )
            raise ValueError(
                f"'{self.writer.root}' holds a synthetic dataset made by another job (it differs in "
                f"{', '.join(differ)}); use another output folder, or overwrite it (--generation::overwrite "
                "True) to replace what is there."
            )
        if self.overwrite:
            if theirs is not None:
                logger.warning("generation: replacing the dataset in %s (it differed in %s)", self.writer.root, differ)
            self.writer.clear()
        write_json(path, mine)
        write_json(self.writer.root / SETTINGS_FILE, self.settings(requests))

    def settings(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """The job's settings in words (``generation_settings.json``, for reports): the sampler and scheduler
        settings, the networks' classes, the noise shape and batching, the number of requests."""
        sampler = describe(self.sampler)
        inner = sampler.get("sampler", sampler)  # a LatentSampler's pixel-space sampler
        keep = ("type", "kind", "num_inference_steps", "guidance_scale", "solver", "eta", "clip_range")
        scheduler = inner.get("scheduler", {}) if isinstance(inner.get("scheduler"), dict) else {}
        return {
            "requests": len(requests),
            "sampler": {k: inner[k] for k in keep if k in inner},
            "scheduler": {
                k: scheduler[k] for k in ("type", "num_train_timesteps", "prediction_type") if k in scheduler
            },
            "latent": sampler.get("type") == "LatentSampler",
            "network": type(self.network).__name__,
            "reference": type(self.reference).__name__,
            "writer": type(self.writer).__name__,
            "postprocess": type(self.postprocess).__name__ if self.postprocess is not None else None,
            "output_gate": type(self.output_gate).__name__ if self.output_gate is not None else None,
            "sample_shape": list(self.sample_shape),
            "batch_size": self.batch_size,
        }

    def _finish(self, requests: list[GenerationRequest], report: RankReport) -> GenerationReport | None:
        """Record this rank's report; the last rank to finish merges every rank's into the job's report."""
        job = requests_fingerprint(requests)
        folder = self.writer.root / "reports"
        write_json(folder / f"{job}_rank{report.rank}_of_{report.world_size}.json", report.to_dict())
        paths = [folder / f"{job}_rank{r}_of_{report.world_size}.json" for r in range(report.world_size)]
        waiting = [p.name for p in paths if not p.is_file()]
        if waiting:
            logger.info("generation: rank %d done; waiting for %s to write the index.", report.rank, waiting)
            return None
        reports = [json.loads(Path(p).read_text()) for p in paths]
        records = self.writer.records([r.name for r in requests if self.writer.done(r)])
        failed = sorted({n for r in reports for n in r.get("failed", [])} - set(records))
        gated = sorted({n for r in reports for n in r.get("gated", [])} - set(records) - set(failed))
        attempts = [int(record.get("reference_attempts", 0)) for record in records.values()]
        max_attempts = int(getattr(self.reference, "max_attempts", 0))
        merged = GenerationReport(
            job=job,
            world_size=report.world_size,
            requested=len(requests),
            written=[r.name for r in requests if r.name in records],
            failed=failed,
            missing=[r.name for r in requests if r.name not in records and r.name not in {*failed, *gated}],
            skipped_existing=sum(int(r.get("skipped_existing", 0)) for r in reports),
            accepted_references=sum(1 for a in attempts if a >= 1),
            rejected_references=sum(max(0, a - 1) for a in attempts) + max_attempts * len(failed),
            gated=gated,
        )
        self.writer.finalize(requests)  # the index lists exactly the finished items of these requests
        write_json(self.writer.root / "generation_report.json", merged.to_dict())
        return merged

    def _progress(self, batches: list[Any]) -> Any:
        if not self.progress or not batches:
            return batches
        from tqdm.auto import tqdm

        return tqdm(batches, desc=f"generating ({len(batches)} batches)", unit="batch")
