"""GenerationPipeline with toy networks on both paths: image latent -> privacy gate -> EF-conditioned animation ->
EchoNet export (echo_flow), and label maps -> guided images -> CAMUS layout (echo_seg_ddpm)."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, RFlowScheduler
from monai.transforms import Compose, Lambdad, RandGaussianNoised

from echo_monai.apps.generation import (
    CamusWriter,
    EchoNetWriter,
    GenerationPipeline,
    GenerationRequest,
    ImageReference,
    PipelineNetwork,
    PngWriter,
    RequestConditioner,
    SampledReference,
)
from echo_monai.data import EchoNetDynamic
from echo_monai.engines import Conditioning
from echo_monai.inferers import LatentSampler, Sampler
from echo_monai.metrics import PrivacyGate
from echo_monai.networks.blocks import ScalarTokenEmbedding
from echo_monai.networks.nets import ContextEmbeddingDenoiser, ReIdentificationNet
from echo_monai.transforms import ConditionMapd, LoadGreyImaged, ScaleIntensityToModelRanged

EFS = [35.0, 55.0, 70.0]


def _requests(efs=EFS, views=(0, 1, 0), extra=None) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            f"synthetic_{i}", i, i, {"ejection_fraction": ef, "view": v, **(extra or {})}, "TEST" if i == 2 else "TRAIN"
        )
        for i, (ef, v) in enumerate(zip(efs, views, strict=True))
    ]


REQUESTS = _requests()


@pytest.fixture
def parts(make_autoencoder, make_unet, make_video_unet):
    autoencoder = make_autoencoder(seed=0).eval()
    image_net = make_unet(in_channels=4, out_channels=4, num_class_embeds=2)
    video_unet = make_video_unet(in_channels=8, out_channels=4, with_conditioning=True, cross_attention_dim=8)
    video_net = ContextEmbeddingDenoiser(video_unet, ScalarTokenEmbedding(8, scale=100.0))
    reid = ReIdentificationNet(in_channels=4, channels=(8,), embedding_dim=8, norm_num_groups=4)
    flow = RFlowScheduler(1000, use_discrete_timesteps=False)
    return {
        "image_sampler": Sampler(flow, 2),
        "image_network": image_net,
        "image_conditioner": RequestConditioner(Conditioning({"class_labels": "view"})),
        "video_sampler": LatentSampler(
            Sampler(RFlowScheduler(1000, use_discrete_timesteps=False), 2), autoencoder, encode_concat=False
        ),  # fmt: skip
        "video_network": video_net,
        "video_conditioner": RequestConditioner(
            Conditioning({"context": "ejection_fraction"}, concat_keys=["reference"])
        ),
        "gate": PrivacyGate(reid, torch.randn(10, 4, 8, 8), torch.randn(6, 4, 8, 8)),
    }


def _video_pipeline(parts, root, gate="default", max_attempts=10, **kwargs) -> GenerationPipeline:
    reference = SampledReference(
        parts["image_sampler"],
        kwargs.pop("image_network", parts["image_network"]),
        kwargs.pop("image_conditioner", parts["image_conditioner"]),
        (4, 8, 8),
        gate=parts["gate"] if gate == "default" else gate,
        max_attempts=max_attempts,
    )
    return GenerationPipeline(
        parts["video_sampler"], parts["video_network"], parts["video_conditioner"], EchoNetWriter(root, fps=32),
        (4, 3, 8, 8), reference=reference, progress=False, **kwargs,
    )  # fmt: skip


def test_two_ranks_export_a_readable_dataset_and_resume(parts, tmp_path):
    assert _video_pipeline(parts, tmp_path, rank=1, world_size=2).run(REQUESTS) is None  # rank 0 not done yet
    assert not (tmp_path / "FileList.csv").exists()
    report = _video_pipeline(parts, tmp_path, rank=0, world_size=2).run(REQUESTS)
    assert report.failed == [] and report.written == [r.name for r in REQUESTS] and report.missing == []
    data = EchoNetDynamic(tmp_path, split="ALL", require_tracings=False)
    assert len(data) == 3 and sorted(round(data[i]["ejection_fraction"]) for i in range(3)) == [35, 55, 70]
    assert data[0]["video"].shape == (1, 3, 16, 16)
    assert len(EchoNetDynamic(tmp_path, split="TEST", require_tracings=False)) == 1
    again = _video_pipeline(parts, tmp_path, rank=0, world_size=1).run(REQUESTS)
    assert again.skipped_existing == 3 and again.written == report.written  # recounted from the records
    assert again.rejected_references == report.rejected_references and again.accepted_references == 3
    assert json.loads((tmp_path / "generation_report.json").read_text()) == again.to_dict()


def test_same_seed_same_video_whatever_the_sharding(parts, tmp_path):
    _video_pipeline(parts, tmp_path / "a", rank=0, world_size=1).run(REQUESTS)
    for rank in range(3):  # every item once over three ranks
        _video_pipeline(parts, tmp_path / "b", rank=rank, world_size=3).run(REQUESTS)
    for request in REQUESTS:
        a = (tmp_path / "a" / "Videos" / f"{request.name}.avi").read_bytes()
        assert a == (tmp_path / "b" / "Videos" / f"{request.name}.avi").read_bytes()


def test_references_the_gate_rejects_are_redrawn_then_given_up(parts, tmp_path):
    calls = []

    def reject_first(latents):
        calls.append(1)
        return torch.tensor([len(calls) > 1])

    report = _video_pipeline(parts, tmp_path, gate=reject_first).run(REQUESTS[:1])
    assert report.rejected_references == 1 and report.written == ["synthetic_0"]
    never = _video_pipeline(parts, tmp_path / "never", gate=lambda latents: torch.tensor([False]), max_attempts=3)
    report = never.run(REQUESTS[1:2])
    assert report.failed == ["synthetic_1"] and report.rejected_references == 3 and report.gate_rejection_rate == 1
    assert not (tmp_path / "never" / "Videos" / "synthetic_1.avi").exists()


def test_privacy_gate_rejects_training_latents(parts):
    train = torch.randn(10, 4, 8, 8)
    gate = PrivacyGate(parts["gate"].audit.embed, train, torch.randn(6, 4, 8, 8) * 3)
    assert not gate(train[:3]).any()


def test_bad_requests_fail_before_generating(parts, tmp_path):
    with pytest.raises(ValueError, match="'bad' asks for EF 120"):
        _video_pipeline(parts, tmp_path).run([GenerationRequest("bad", 0, 0, {"ejection_fraction": 120.0})])
    with pytest.raises(ValueError, match="'x' has no 'ejection_fraction'"):
        _video_pipeline(parts, tmp_path).run([GenerationRequest("x", 0, 0, {"view": 0})])
    with pytest.raises(ValueError, match="request names must be unique"):
        _video_pipeline(parts, tmp_path).run([REQUESTS[0], REQUESTS[0]])
    encoding = LatentSampler(parts["video_sampler"].sampler, parts["video_sampler"].autoencoder)
    with pytest.raises(ValueError, match="encode_concat=False"):
        GenerationPipeline(encoding, parts["video_network"], parts["video_conditioner"], EchoNetWriter(tmp_path),
                           (4, 3, 8, 8), reference=SampledReference(None, None, None, (4, 8, 8)))  # fmt: skip
    assert not (tmp_path / "Videos").exists()


def test_mask_conditioned_image_model_generates_with_and_without_masks(parts, make_unet, tmp_path):
    image_net = make_unet(seed=0, in_channels=5, out_channels=4, num_class_embeds=3)  # latent + LV mask; 2 views + null
    conditioning = Conditioning(
        {"class_labels": "view"}, concat_keys=["lv_mask"], null_values={"class_labels": 2, "lv_mask": -1.0}
    )
    conditioner = RequestConditioner(conditioning, ConditionMapd("lv_mask", (8, 8), null_value=-1.0))
    requests = [
        GenerationRequest("with_mask", 0, 0, {"ejection_fraction": 50.0, "view": 0, "lv_mask": np.ones((32, 32))}),
        GenerationRequest("without", 1, 1, {"ejection_fraction": 60.0}),
    ]
    mine = {"image_network": image_net, "image_conditioner": conditioner, "gate": None}
    report = _video_pipeline(parts, tmp_path, **mine).run(requests)
    assert sorted(report.written) == ["with_mask", "without"]
    bad = [GenerationRequest("bad", 0, 0, {"ejection_fraction": 50.0, "lv_mask": np.ones((2, 2, 4, 4))})]
    with pytest.raises(ValueError, match="request 'bad': 'lv_mask' must be one map"):
        _video_pipeline(parts, tmp_path / "bad", **mine).run(bad)
    assert not (tmp_path / "bad" / "Videos").exists()


class LabelEcho(torch.nn.Module):
    """A stand-in label-guided denoiser: its output depends on the label map (``seg``) and on x."""

    def forward(self, x, timesteps, seg=None):
        return 0.5 * x + seg[:, 2:3] - seg[:, 0:1]


def _label_requests(n: int = 5) -> list[GenerationRequest]:
    g = torch.Generator().manual_seed(0)
    requests = []
    for i in range(n):
        label = torch.randint(0, 5, (8, 8), generator=g)
        source = {"patient": f"patient{i:04d}", "view": "4CH", "phase": "ED", "copy": 0}
        requests.append(GenerationRequest(f"patient{i:04d}_4CH_ED_c00", i, 100 + i, {"label": label}, source=source))
    return requests


def _label_pipeline(root, batch_size=2, writer=None, **kwargs) -> GenerationPipeline:  # noqa: D103
    transform = Compose(
        [
            Lambdad("label", lambda x: torch.nn.functional.one_hot(x.long(), 5).permute(2, 0, 1).float()),
            RandGaussianNoised("label", prob=1.0, std=0.01),  # a random augmentation, seeded per request
            Lambdad("label", lambda x: x, overwrite="label_map"),
        ]
    )
    return GenerationPipeline(
        Sampler(DDIMScheduler(10), 3, eta=1.0),  # stochastic steps: the batch's generator matters too
        LabelEcho(),
        RequestConditioner(Conditioning({"seg": "label_map"}), transform),
        writer or CamusWriter(root),
        (1, 8, 8),
        batch_size=batch_size,
        progress=False,
        **kwargs,
    )


def test_label_map_batches_write_a_camus_dataset_and_resumed_items_are_identical(tmp_path):
    from echo_monai.data import CAMUS

    requests = _label_requests()
    report = _label_pipeline(tmp_path / "full").run(requests)
    assert report.written == [r.name for r in requests]
    data = CAMUS(tmp_path / "full", views=("4CH",), phases=("ED",))
    assert len(data) == 5 and data[3]["patient"] == "patient0003c00"
    # interrupted run: item 3 (in the batch [2, 3]) and item 4 are missing; the rerun writes them identically
    partial = tmp_path / "partial"
    _label_pipeline(partial).run(requests)
    victims = [p for p in partial.rglob("*.nii.gz") if "patient0003" in p.name or "patient0004" in p.name]
    for victim in victims:
        victim.unlink()
    keep = next(partial.rglob("patient0002c00_4CH_ED.nii.gz"))
    mtime = keep.stat().st_mtime_ns
    resumed = _label_pipeline(partial).run(requests)
    assert resumed.skipped_existing == 3 and keep.stat().st_mtime_ns == mtime
    for path in (tmp_path / "full").rglob("*.nii.gz"):
        assert path.read_bytes() == (partial / path.relative_to(tmp_path / "full")).read_bytes(), path.name


def test_png_layout_from_two_ranks_equals_one_rank(tmp_path):
    requests = _label_requests()
    _label_pipeline(tmp_path / "one", writer=PngWriter(tmp_path / "one")).run(requests)
    for rank in (0, 1):
        _label_pipeline(tmp_path / "two", writer=PngWriter(tmp_path / "two"), rank=rank, world_size=2).run(requests)
    for path in (tmp_path / "one" / "images").glob("*.png"):
        assert path.read_bytes() == (tmp_path / "two" / "images" / path.name).read_bytes()
    assert (tmp_path / "two" / "synthetic_sources.csv").is_file()


def test_a_condition_that_cannot_be_read_names_the_request(tmp_path):
    bad = [GenerationRequest("broken", 0, 0, {"label": "not a tensor"})]
    with pytest.raises(ValueError, match="'broken' has no source"):
        _label_pipeline(tmp_path).run(bad)  # the CAMUS layout names files by the source patient
    with pytest.raises((ValueError, TypeError), match="request 'broken'"):
        _label_pipeline(tmp_path / "png", writer=PngWriter(tmp_path / "png")).run(bad)
    with pytest.raises(ValueError, match="sample_shape"):
        GenerationPipeline(None, None, None, PngWriter(tmp_path), (8, 8))
    with pytest.raises(ValueError, match="batch_size"):
        GenerationPipeline(None, None, None, PngWriter(tmp_path), (1, 8, 8), batch_size=0)


def test_a_folder_made_by_another_job_is_refused_or_overwritten(tmp_path):
    requests = _label_requests(3)
    _label_pipeline(tmp_path).run(requests)
    assert json.loads((tmp_path / "generation_fingerprint.json").read_text())["job"]
    _label_pipeline(tmp_path).run(requests)  # the same job resumes (nothing to do)
    reseeded = [GenerationRequest(r.name, r.index, r.seed + 1, r.conditions, source=r.source) for r in requests]
    with pytest.raises(ValueError, match=r"made by another job \(it differs in requests\).*overwrite"):
        _label_pipeline(tmp_path).run(reseeded)
    with pytest.raises(ValueError, match="differs in requests"):
        _label_pipeline(tmp_path).run(requests[:2])  # fewer items is another job too
    with pytest.raises(ValueError, match="differs in noise"):
        _label_pipeline(tmp_path, batch_size=1).run(requests)
    report = _label_pipeline(tmp_path, overwrite=True).run(requests[:2])
    assert report.written == [r.name for r in requests[:2]] and report.requested == 2
    sources = (tmp_path / "synthetic_sources.csv").read_text().splitlines()
    assert len(sources) == 3 and not list((tmp_path / "rows").glob(f"{requests[2].name}.json"))
    assert not list(tmp_path.rglob(f"{requests[2].source['patient']}c00*"))  # the old item is gone from disk


def test_another_network_is_another_job(parts, tmp_path):
    _video_pipeline(parts, tmp_path, gate=None).run(REQUESTS[:1])
    with torch.no_grad():
        next(parts["video_network"].parameters()).add_(1.0)
    with pytest.raises(ValueError, match="differs in network"):
        _video_pipeline(parts, tmp_path, gate=None).run(REQUESTS[:1])


def test_temporaries_of_a_killed_export_are_removed_at_start(tmp_path):
    stale = tmp_path / "database_nifti" / "patient0000c00" / ".tmp-999999-patient0000c00_4CH_ED.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    _label_pipeline(tmp_path).run(_label_requests(1))
    assert not stale.exists() and not list(tmp_path.rglob(".tmp-*"))


def test_a_folder_without_items_is_taken_with_the_new_settings(tmp_path):
    """A fingerprint of another job but no generated items: the folder is this job's, fingerprint and settings."""
    requests = _label_requests(2)
    _label_pipeline(tmp_path).run(requests)
    shutil.rmtree(tmp_path / "rows")
    (tmp_path / "generation_settings.json").unlink()
    _label_pipeline(tmp_path, batch_size=1).run(requests)
    settings = json.loads((tmp_path / "generation_settings.json").read_text())
    assert settings["batch_size"] == 1 and settings["requests"] == 2


def test_the_output_gate_drops_re_identified_items_and_reports_them(parts, tmp_path):
    seen = []

    def reject_second(samples):
        seen.append(samples.shape)
        return torch.tensor([True, False, True])[: samples.shape[0]]

    pipeline = _video_pipeline(parts, tmp_path, batch_size=3, output_gate=reject_second)
    report = pipeline.run(REQUESTS)
    assert seen == [(3, 1, 3, 16, 16)]  # the decoded videos of the batch
    assert report.written == ["synthetic_0", "synthetic_2"] and report.gated == ["synthetic_1"]
    assert report.missing == [] and report.failed == []
    assert not (tmp_path / "Videos" / "synthetic_1.avi").exists()
    assert len(EchoNetDynamic(tmp_path, split="ALL", require_tracings=False)) == 2
    assert json.loads((tmp_path / "generation_report.json").read_text())["gated"] == ["synthetic_1"]
    with pytest.raises(ValueError, match="one keep flag per sample"):
        _video_pipeline(parts, tmp_path / "bad", output_gate=lambda s: torch.tensor([True, True])).run(REQUESTS[:1])


def test_a_gate_of_frames_judges_a_video_by_its_frames():
    reid = ReIdentificationNet(in_channels=1, channels=(8,), embedding_dim=8, norm_num_groups=4)
    train = [{"video": torch.randn(1, 4, 8, 8)} for _ in range(4)]
    held_out = [{"video": torch.randn(1, 4, 8, 8) * 3} for _ in range(3)]
    gate = PrivacyGate.from_videos(reid, train, held_out, frame_stride=2)
    copied = torch.stack([train[0]["video"], held_out[0]["video"] * 0 + 7.0])  # a training video, a flat one
    copied[1, :, 2] = train[1]["video"][:, 2]  # one checked frame (2) of the second video is a training frame
    assert gate(copied).tolist() == [False, False]
    assert gate(torch.full((1, 1, 4, 8, 8), 5.0)).shape == (1,)
    with pytest.raises(ValueError, match="frame_stride"):
        PrivacyGate(reid, torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), frame_stride=0)


def _frame_reference(parts, fallback=True, encoder="vae") -> ImageReference:
    sampler = parts["video_sampler"]
    sampled = SampledReference(
        parts["image_sampler"], parts["image_network"], parts["image_conditioner"], (4, 8, 8), gate=parts["gate"]
    )
    return ImageReference(
        Compose([LoadGreyImaged("reference_image"), ScaleIntensityToModelRanged("reference_image")]),
        key="reference_image",
        encoder=sampler.encode if encoder == "vae" else encoder,
        fallback=sampled if fallback else None,
    )


def test_a_frame_of_the_users_is_encoded_and_a_request_without_one_is_sampled(parts, tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (16, 16)).astype(np.uint8)
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    reference = _frame_reference(parts)
    assert reference.is_latent and reference.max_attempts == 10
    path = str(tmp_path / "frame.png")
    own = GenerationRequest("own", 0, 0, {"ejection_fraction": 40.0, "view": 0, "reference_image": path})
    none = GenerationRequest("none", 1, 1, {"ejection_fraction": 40.0, "view": 0, "reference_image": None})
    given = reference(own)
    expected = parts["video_sampler"].encode(torch.as_tensor(frame, dtype=torch.float32)[None, None] / 127.5 - 1)[0]
    assert given.attempts == 0 and torch.allclose(given.value, expected)  # the autoencoder's normalised latent
    sampled = reference(none)
    assert sampled.attempts >= 1 and sampled.value.shape == (4, 8, 8)  # the fallback, through the privacy gate
    pipeline = GenerationPipeline(
        parts["video_sampler"], parts["video_network"], parts["video_conditioner"], EchoNetWriter(tmp_path / "out"),
        (4, 3, 8, 8), reference=reference, progress=False,
    )  # fmt: skip
    report = pipeline.run([own, none])
    assert report.written == ["own", "none"] and report.accepted_references == 1  # only "none" drew a reference
    assert len(EchoNetDynamic(tmp_path / "out", split="ALL", require_tracings=False)) == 2


def test_a_missing_frame_or_a_reference_in_the_wrong_space_is_refused(parts, tmp_path):
    request = GenerationRequest("r", 0, 0, {"ejection_fraction": 40.0, "reference_image": str(tmp_path / "no.png")})
    with pytest.raises(FileNotFoundError, match=r"request 'r': image file '.*no.png' does not exist"):
        _frame_reference(parts)(request)
    with pytest.raises(ValueError, match="request 'r' has no 'reference_image'"):
        _frame_reference(parts, fallback=False).check(GenerationRequest("r", 0, 0, {"ejection_fraction": 40.0}))
    with pytest.raises(ValueError, match=r"fallback gives latents, so the images must be encoded"):
        _frame_reference(parts, encoder=None)


def test_the_pipeline_as_one_network_from_a_frame_and_an_ef_to_a_cine(parts, tmp_path):
    network = copy.deepcopy(parts["video_network"]).eval()
    with torch.no_grad():  # MONAI zero-initialises the output layers: weights that make the output depend on the input
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pipeline = GenerationPipeline(
        parts["video_sampler"], network, parts["video_conditioner"], EchoNetWriter(tmp_path / "out"), (4, 3, 8, 8),
        reference=_frame_reference(parts), progress=False,
    )  # fmt: skip
    net = PipelineNetwork(pipeline, "reference_image", {"ejection_fraction": 50.0, "view": 0}, seed=3)
    assert net.network is network
    frames = torch.rand(2, 1, 16, 16) * 255
    cines = net(frames, ejection_fraction=torch.tensor([30.0, 70.0]))
    assert cines.shape == (2, 1, 3, 16, 16) and cines.dtype == torch.float32 and not cines.requires_grad
    # the pipeline's own sampling of those requests: item i seeded seed + i, its EF, its frame
    requests = [
        GenerationRequest(f"x{i}", i, 3 + i, {"reference_image": frames[i], "ejection_fraction": ef, "view": 0})
        for i, ef in enumerate((30.0, 70.0))
    ]
    torch.testing.assert_close(cines, pipeline.sample(requests).samples)
    torch.testing.assert_close(net(frames[:1], ejection_fraction=30.0), cines[:1])  # an item is its own
    assert not torch.equal(net(frames.flip(-1), ejection_fraction=[30.0, 70.0])[0], cines[0])  # the frame guides it
    assert not (tmp_path / "out").exists()  # nothing written
    with pytest.raises(ValueError, match="'ejection_fraction' has 3 values for a batch of 2"):
        net(frames, ejection_fraction=[30.0, 40.0, 50.0])
    with pytest.raises(ValueError, match=r"must be a tensor \(B, C, \*spatial\), got \(16, 16\)"):
        net(frames[0, 0])
    with pytest.raises(TypeError, match="generation must be a GenerationPipeline"):
        PipelineNetwork(object(), "image")
