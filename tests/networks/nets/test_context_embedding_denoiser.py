"""EF-conditioned latent video flow matching end to end at toy size: embedding + SpatioTemporalUNet + CFG."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from monai.networks.schedulers import RFlowScheduler

from echo_monai.engines import Conditioning, FlowMatchingPrepareBatch
from echo_monai.inferers import Sampler
from echo_monai.networks.blocks import ScalarTokenEmbedding
from echo_monai.networks.nets import ContextEmbeddingDenoiser

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def make_net(make_video_unet):
    """Builder of the tiny EF-token video denoiser."""

    def build() -> ContextEmbeddingDenoiser:
        unet = make_video_unet(with_conditioning=True, cross_attention_dim=16)
        return ContextEmbeddingDenoiser(unet, ScalarTokenEmbedding(16, scale=100.0, null_value=-1.0))

    return build


def _batches():
    """Videos whose brightness oscillates with an amplitude set by the EF, and their first frame as reference."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        ef = torch.rand(4, generator=g) * 60 + 20
        t = torch.arange(4.0)
        video = (ef[:, None] / 100 * torch.cos(t * 3.14159 / 2))[:, None, :, None, None].expand(4, 1, 4, 8, 8)
        batches.append({"latent": video.clone(), "reference": video[:, :, 0].clone(), "ejection_fraction": ef})
    return batches


def test_ef_conditioned_flow_matching_trains_and_samples_with_guidance(make_net):
    torch.manual_seed(0)
    conditioning = Conditioning(
        {"context": "ejection_fraction"},
        concat_keys=["reference"],
        dropout=0.2,
        droppable=["context"],
        null_values={"context": -1.0},
    )
    net = make_net()
    prepare = FlowMatchingPrepareBatch(RFlowScheduler(1000, use_discrete_timesteps=False), conditioning, "latent")
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=8,
        train_data_loader=_batches(),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 3e-3),
        loss_function=torch.nn.MSELoss(),
        inferer=SimpleInferer(),
        prepare_batch=prepare,
        decollate=False,
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4

    sampler = Sampler(
        RFlowScheduler(1000, use_discrete_timesteps=False), 3, guidance_scale=2.0, conditioning=conditioning
    )
    condition = conditioning.extract({"ejection_fraction": torch.tensor([30.0]), "reference": torch.zeros(1, 1, 8, 8)})
    video = sampler(torch.randn(1, 1, 4, 8, 8), net.eval(), condition=condition)
    assert video.shape == (1, 1, 4, 8, 8) and torch.isfinite(video).all()


def test_context_reaches_the_denoiser_as_tokens(make_net):
    net = make_net().eval()
    with torch.no_grad():  # the output layers start at zero: randomise them so the output depends on the input
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    x, t = torch.randn(2, 2, 3, 8, 8), torch.tensor([500, 500])
    with torch.no_grad():
        a = net(x, t, context=torch.tensor([[[30.0]], [[30.0]]]))
        b = net(x, t, context=torch.tensor([[[70.0]], [[30.0]]]))
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_extra_tokens_follow_the_context_tokens(make_video_unet):
    unet = make_video_unet(with_conditioning=True, cross_attention_dim=16).eval()
    seen = []
    unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["context"]), with_kwargs=True)
    net = ContextEmbeddingDenoiser(unet, None, {"ejection_fraction": ScalarTokenEmbedding(16, scale=100.0)}).eval()
    x, t, motion = torch.randn(2, 2, 3, 8, 8), torch.tensor([500, 500]), torch.randn(2, 3, 16)
    with torch.no_grad():
        net(x, t, context=motion, ejection_fraction=torch.tensor([30.0, 60.0]))
        net(x, t, context=motion)  # no EF: the motion tokens alone
    assert seen[0].shape == (2, 4, 16) and torch.equal(seen[0][:, :3], motion)
    assert torch.allclose(seen[0][:, 3:], net.extra_tokens["ejection_fraction"](torch.tensor([30.0, 60.0])))
    assert torch.equal(seen[1], motion)


def test_extra_tokens_refuse_reserved_names_and_mismatched_sizes(make_video_unet):
    unet = make_video_unet(with_conditioning=True, cross_attention_dim=16)
    with pytest.raises(ValueError, match="cannot be named"):
        ContextEmbeddingDenoiser(unet, None, {"context": ScalarTokenEmbedding(16)})
    with pytest.raises(ValueError, match="give a context_embedding"):
        ContextEmbeddingDenoiser(unet)
    net = ContextEmbeddingDenoiser(unet, None, {"ejection_fraction": ScalarTokenEmbedding(8)})
    with pytest.raises(ValueError, match="different sizes"):
        net(
            torch.randn(1, 2, 3, 8, 8),
            torch.tensor([1]),
            context=torch.randn(1, 1, 16),
            ejection_fraction=torch.tensor([50.0]),
        )
