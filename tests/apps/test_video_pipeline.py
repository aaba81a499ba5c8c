"""The image latent → privacy gate → EF-conditioned animation → EchoNet export pipeline, with toy networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import RFlowScheduler

from echo_monai.apps.export import EchoNetExporter
from echo_monai.apps.video_pipeline import PrivacyGate, generate_video_dataset
from echo_monai.data import EchoNetDynamic
from echo_monai.engines import Conditioning
from echo_monai.inferers import LatentSampler, Sampler
from echo_monai.networks.blocks import ScalarTokenEmbedding
from echo_monai.networks.nets import ContextEmbeddingDenoiser, ReIdentificationNet, SpatioTemporalUNet

REQUESTS = [
    {"name": "synthetic_0", "ejection_fraction": 35.0, "view": 0},
    {"name": "synthetic_1", "ejection_fraction": 55.0, "view": 1},
    {"name": "synthetic_2", "ejection_fraction": 70.0, "view": 0, "split": "TEST"},
]


def _image_net(in_channels: int, num_class_embeds: int) -> DiffusionModelUNet:
    """A tiny latent image denoiser (4 latent channels out)."""
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=4,
        channels=(8, 16),
        attention_levels=(False, False),
        num_res_blocks=1,
        norm_num_groups=8,
        num_class_embeds=num_class_embeds,
    )


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=(8, 16),
        latent_channels=4,
        num_res_blocks=1,
        norm_num_groups=8,
        attention_levels=(False, False),
    ).eval()
    image_net = _image_net(in_channels=4, num_class_embeds=2)
    video_net = ContextEmbeddingDenoiser(
        SpatioTemporalUNet(
            in_channels=8,
            out_channels=4,
            channels=(8, 16),
            attention_levels=(False, True),
            num_res_blocks=1,
            num_head_channels=8,
            norm_num_groups=4,
            with_conditioning=True,
            cross_attention_dim=8,
        ),
        ScalarTokenEmbedding(8, scale=100.0),
    )
    reid = ReIdentificationNet(in_channels=4, channels=(8,), embedding_dim=8, norm_num_groups=4)
    return {
        "image_sampler": Sampler(RFlowScheduler(1000, use_discrete_timesteps=False), 2),
        "image_network": image_net,
        "image_conditioning": Conditioning({"class_labels": "view"}),
        "video_sampler": LatentSampler(
            Sampler(RFlowScheduler(1000, use_discrete_timesteps=False), 2), autoencoder, encode_concat=False
        ),
        "video_network": video_net,
        "video_conditioning": Conditioning({"context": "ejection_fraction"}, concat_keys=["reference"]),
        "latent_shape": (4, 8, 8),
        "num_frames": 3,
        "gate": PrivacyGate(reid, torch.randn(10, 4, 8, 8), torch.randn(6, 4, 8, 8)),
    }


def test_two_ranks_export_a_readable_dataset_and_resume(parts, tmp_path):
    for rank in (0, 1):
        report = generate_video_dataset(REQUESTS, EchoNetExporter(tmp_path, fps=32), rank=rank, world_size=2, **parts)
        assert report["failed"] == []
    EchoNetExporter(tmp_path).finalize()
    data = EchoNetDynamic(tmp_path, split="ALL", require_tracings=False)
    assert len(data) == 3 and sorted(round(data[i]["ejection_fraction"]) for i in range(3)) == [35, 55, 70]
    assert data[0]["video"].shape == (1, 3, 16, 16)
    again = generate_video_dataset(REQUESTS, EchoNetExporter(tmp_path), rank=0, world_size=1, **parts)
    assert again["written"] == [] and again["skipped_existing"] == 3


def test_same_seed_same_video_whatever_the_sharding(parts, tmp_path):
    generate_video_dataset(REQUESTS, EchoNetExporter(tmp_path / "a"), rank=0, world_size=1, **parts)
    generate_video_dataset(REQUESTS, EchoNetExporter(tmp_path / "b"), rank=1, world_size=3, **parts)
    a = (tmp_path / "a" / "Videos" / "synthetic_1.avi").read_bytes()
    assert a == (tmp_path / "b" / "Videos" / "synthetic_1.avi").read_bytes()


def test_references_the_gate_rejects_are_redrawn_then_given_up(parts, tmp_path):
    calls = []

    def reject_first(latents):
        calls.append(1)
        return torch.tensor([len(calls) > 1])

    report = generate_video_dataset(REQUESTS[:1], EchoNetExporter(tmp_path), **{**parts, "gate": reject_first})
    assert report["rejected_references"] == 1 and report["written"] == ["synthetic_0"]
    never = generate_video_dataset(
        REQUESTS[1:2],
        EchoNetExporter(tmp_path),
        max_attempts=3,
        **{**parts, "gate": lambda latents: torch.tensor([False])},
    )
    assert never["failed"] == ["synthetic_1"] and never["rejected_references"] == 3
    assert not (tmp_path / "Videos" / "synthetic_1.avi").exists()


def test_privacy_gate_rejects_training_latents(parts):
    train = torch.randn(10, 4, 8, 8)
    gate = PrivacyGate(parts["gate"].audit.embed, train, torch.randn(6, 4, 8, 8) * 3)
    assert not gate(train[:3]).any()


def test_bad_requests_fail_before_generating(parts, tmp_path):
    with pytest.raises(ValueError, match="'bad' asks for EF 120"):
        generate_video_dataset(
            [{"name": "bad", "ejection_fraction": 120.0, "view": 0}], EchoNetExporter(tmp_path), **parts
        )
    with pytest.raises(ValueError, match="request 0 has no 'ejection_fraction'"):
        generate_video_dataset([{"name": "x", "view": 0}], EchoNetExporter(tmp_path), **parts)
    wrong = {
        **parts,
        "video_sampler": LatentSampler(parts["video_sampler"].sampler, parts["video_sampler"].autoencoder),
    }
    with pytest.raises(ValueError, match="encode_concat=False"):
        generate_video_dataset(REQUESTS, EchoNetExporter(tmp_path), **wrong)
    assert not (tmp_path / "Videos").exists()


def test_image_condition_fills_missing_keys_with_null_values(tmp_path):
    from echo_monai.apps.video_pipeline import image_condition

    conditioning = Conditioning(
        {"class_labels": "view"}, concat_keys=["lv_mask"], null_values={"class_labels": 4, "lv_mask": -1.0}
    )
    c = image_condition({"name": "a"}, conditioning, (4, 8, 8))
    assert c.kwargs["class_labels"].tolist() == [4]
    assert c.concat[0].shape == (1, 1, 8, 8) and torch.all(c.concat[0] == -1.0)
    mask = np.zeros((32, 32), np.float32)
    mask[:16] = 1.0  # top half at 32 px -> top half on the 8 x 8 latent grid
    c = image_condition({"name": "a", "view": 1, "lv_mask": mask}, conditioning, (4, 8, 8))
    assert c.kwargs["class_labels"].tolist() == [1]
    assert torch.all(c.concat[0][0, 0, :4] == 1.0) and torch.all(c.concat[0][0, 0, 4:] == 0.0)
    np.save(tmp_path / "mask.npy", mask)
    from_file = image_condition({"name": "a", "lv_mask": str(tmp_path / "mask.npy")}, conditioning, (4, 8, 8))
    assert torch.equal(from_file.concat[0], c.concat[0])
    with pytest.raises(FileNotFoundError, match="request 'a': 'lv_mask' file"):
        image_condition({"name": "a", "lv_mask": str(tmp_path / "none.png")}, conditioning, (4, 8, 8))
    with pytest.raises(ValueError, match="must be one map"):
        image_condition({"name": "a", "lv_mask": np.zeros((2, 3, 8, 8))}, conditioning, (4, 8, 8))
    with pytest.raises(ValueError, match="has no 'view'"):
        image_condition({"name": "a"}, Conditioning({"class_labels": "view"}), (4, 8, 8))


def test_mask_conditioned_image_model_generates_with_and_without_masks(parts, tmp_path):
    torch.manual_seed(0)
    image_net = _image_net(in_channels=5, num_class_embeds=3)  # latent + LV mask; 2 views + null
    conditioning = Conditioning(
        {"class_labels": "view"}, concat_keys=["lv_mask"], null_values={"class_labels": 2, "lv_mask": -1.0}
    )
    requests = [
        {"name": "with_mask", "ejection_fraction": 50.0, "view": 0, "lv_mask": np.ones((32, 32), np.float32)},
        {"name": "without", "ejection_fraction": 60.0},
    ]
    mine = {**parts, "image_network": image_net, "image_conditioning": conditioning, "gate": None}
    report = generate_video_dataset(requests, EchoNetExporter(tmp_path, fps=32), **mine)
    assert sorted(report["written"]) == ["with_mask", "without"]
    with pytest.raises(ValueError, match="'lv_mask' must be one map"):
        generate_video_dataset(
            [{"name": "bad", "ejection_fraction": 50.0, "lv_mask": np.ones((2, 2, 4, 4))}],
            EchoNetExporter(tmp_path / "bad"),
            **mine,
        )
    assert not (tmp_path / "bad" / "Videos").exists()


def test_finish_generation_waits_for_every_rank_then_merges_from_the_rows(parts, tmp_path):
    import json

    from echo_monai.apps.video_pipeline import finish_generation

    exporter = EchoNetExporter(tmp_path, fps=32)
    reports = {}
    for rank in (0, 1):
        reports[rank] = generate_video_dataset(REQUESTS, exporter, rank=rank, world_size=2, **parts)
    assert finish_generation(exporter, REQUESTS, reports[1], max_attempts=10, rank=1, world_size=2) is None
    assert not (tmp_path / "FileList.csv").exists()  # rank 0 has not reported yet
    merged = finish_generation(exporter, REQUESTS, reports[0], max_attempts=10, rank=0, world_size=2)
    assert merged is not None and (tmp_path / "FileList.csv").is_file()
    assert merged["written"] == [r["name"] for r in REQUESTS] and merged["failed"] == []
    expected_rejections = reports[0]["rejected_references"] + reports[1]["rejected_references"]
    assert merged["rejected_references"] == expected_rejections
    assert merged["accepted_references"] == 3
    assert json.loads((tmp_path / "generation_report.json").read_text()) == merged
    # a resumed run (nothing left to do) recounts the same figures from the row files
    again = generate_video_dataset(REQUESTS, exporter, rank=0, world_size=1, **parts)
    assert again["written"] == [] and again["skipped_existing"] == 3
    resumed = finish_generation(exporter, REQUESTS, again, max_attempts=10, rank=0, world_size=1)
    assert resumed["rejected_references"] == expected_rejections and resumed["written"] == merged["written"]
