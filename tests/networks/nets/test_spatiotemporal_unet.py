"""SpatioTemporalUNet: shapes, conditioning, per-frame initialisation, validation, training and sampling."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from monai.networks.schedulers import RFlowScheduler

from echo_monai.engines import Condition, Conditioning, FlowMatchingPrepareBatch
from echo_monai.inferers import Sampler
from echo_monai.networks.nets import SpatioTemporalUNet

TINY = {
    "channels": (8, 16),
    "attention_levels": (False, True),
    "num_res_blocks": 1,
    "num_head_channels": 8,
    "norm_num_groups": 4,
}


def _net(**kwargs) -> SpatioTemporalUNet:
    return SpatioTemporalUNet(**{"in_channels": 2, "out_channels": 1, **TINY, **kwargs})


def _perturb(net: torch.nn.Module, temporal: bool = False, scale: float = 0.1) -> torch.nn.Module:
    """Randomise the zero-initialised parameters (spatial ones; temporal ones too when ``temporal``)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if temporal or ".temporal." not in name:
                p.add_(scale * torch.randn_like(p))
    return net


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def conditional_net():
    torch.manual_seed(0)
    return _perturb(_net(with_conditioning=True, cross_attention_dim=3, num_class_embeds=3)).eval()


@pytest.mark.parametrize("shape", [(2, 2, 4, 8, 8), (1, 2, 8, 16, 16), (2, 2, 5, 16, 8), (1, 2, 1, 8, 16)])
def test_output_shape(shape):
    net = _net()
    y = net(torch.randn(shape), torch.randint(0, 1000, (shape[0],)))
    assert y.shape == (shape[0], 1, *shape[2:]) and y.dtype == torch.float32


def test_three_levels_float_and_scalar_timesteps():
    net = _net(channels=(8, 8, 16), attention_levels=(False, False, True), num_res_blocks=(1, 1, 2))
    x = torch.randn(2, 2, 4, 16, 16)
    assert net(x, torch.tensor([0.5, 999.0])).shape == (2, 1, 4, 16, 16)
    assert net(x, 10).shape == (2, 1, 4, 16, 16)


def test_context_tokens_and_class_labels_change_output(conditional_net):
    x, t = torch.randn(2, 2, 4, 8, 8), torch.tensor([100, 700])
    context, labels = torch.randn(2, 2, 3), torch.tensor([0, 1])
    with torch.no_grad():
        y = conditional_net(x, t, context=context, class_labels=labels)
        y_context = conditional_net(x, t, context=context + 1.0, class_labels=labels)
        y_labels = conditional_net(x, t, context=context, class_labels=torch.tensor([2, 2]))
    assert not torch.allclose(y, y_context, atol=1e-5)
    assert not torch.allclose(y, y_labels, atol=1e-5)
    # samples are independent of each other
    with torch.no_grad():
        y0 = conditional_net(x[:1], t[:1], context=context[:1], class_labels=labels[:1])
    torch.testing.assert_close(y0, y[:1], atol=1e-5, rtol=1e-4)


def test_frames_independent_at_initialisation(conditional_net):
    """Zero-initialised temporal layers: output frame t depends only on input frame t."""
    x, t = torch.randn(1, 2, 6, 8, 8), torch.tensor([300])
    kwargs = {"context": torch.randn(1, 1, 3), "class_labels": torch.tensor([1])}
    x_changed = x.clone()
    x_changed[:, :, 0] = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        y, y_changed = conditional_net(x, t, **kwargs), conditional_net(x_changed, t, **kwargs)
    assert not torch.allclose(y[:, :, 0], y_changed[:, :, 0])
    torch.testing.assert_close(y[:, :, 1:], y_changed[:, :, 1:], atol=1e-5, rtol=1e-4)
    # a single frame is processed as in the whole clip
    with torch.no_grad():
        y3 = conditional_net(x[:, :, 3:4], t, **kwargs)
    torch.testing.assert_close(y3, y[:, :, 3:4], atol=1e-5, rtol=1e-4)
    # once the temporal layers are non-zero, frames interact
    _perturb(conditional_net, temporal=True)
    with torch.no_grad():
        y, y_changed = conditional_net(x, t, **kwargs), conditional_net(x_changed, t, **kwargs)
    assert not torch.allclose(y[:, :, 1:], y_changed[:, :, 1:], atol=1e-5)


def test_gradient_checkpointing_matches():
    torch.manual_seed(0)
    net = _perturb(_net())
    net_ckpt = _net(use_checkpointing=True)
    net_ckpt.load_state_dict(net.state_dict())
    x, t = torch.randn(1, 2, 4, 8, 8), torch.tensor([5])
    net(x, t).square().sum().backward()
    net_ckpt(x, t).square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), net_ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("shape", [(1, 2, 4, 14, 14), (1, 2, 4, 16, 14)])
def test_bad_spatial_size_names_shape(shape):
    """Three levels need multiples of 4: the 14x14 latent of EchoNet-Synthetic breaks the skips."""
    net = _net(channels=(8, 8, 16), attention_levels=(False, False, True))
    with pytest.raises(ValueError, match=r"spatial size.*\(1, 2, 4, 1[46], 14\).*divisible by 4"):
        net(torch.randn(shape), torch.tensor([1]))


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (torch.randn(1, 3, 4, 8, 8), {}, "x must be"),
        (torch.randn(1, 2, 8, 8), {}, "x must be"),
        (torch.randn(1, 2, 4, 8, 8), {"context": torch.randn(1, 1, 3)}, "with_conditioning=False"),
        (torch.randn(1, 2, 4, 8, 8), {"class_labels": torch.tensor([0])}, "num_class_embeds=None"),
        (torch.randn(2, 2, 4, 8, 8), {"timesteps": torch.tensor([1, 2, 3])}, "timesteps"),
    ],
)
def test_bad_forward_inputs(x, kwargs, match):
    kwargs = {"timesteps": torch.tensor([1]).expand(x.shape[0]), **kwargs}
    with pytest.raises(ValueError, match=match):
        _net()(x, **kwargs)


def test_missing_conditions_raise(conditional_net):
    x, t = torch.randn(1, 2, 4, 8, 8), torch.tensor([1])
    with pytest.raises(ValueError, match=r"context of shape \(B, N, 3\)"):
        conditional_net(x, t, class_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match=r"context of shape \(B, N, 3\)"):
        conditional_net(x, t, context=torch.randn(1, 1, 2), class_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="needs class_labels"):
        conditional_net(x, t, context=torch.randn(1, 1, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"channels": ()}, "channels"),
        ({"attention_levels": (False,)}, "attention_levels"),
        ({"norm_num_groups": 3}, "norm_num_groups"),
        ({"num_res_blocks": (1, 1, 1)}, "num_res_blocks"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"num_head_channels": (8,)}, "num_head_channels"),
        ({"num_head_channels": 6}, "num_head_channels"),
        ({"with_conditioning": True}, "cross_attention_dim"),
        ({"cross_attention_dim": 4}, "cross_attention_dim"),
        ({"num_class_embeds": 0}, "num_class_embeds"),
        ({"temporal_kernel_size": 2}, "temporal_kernel_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=f"SpatioTemporalUNet: .*{match}"):
        _net(**kwargs)


def _video_data(n=8, frames=4, size=8):
    """Videos whose brightness follows the ejection fraction and whose first frame is the reference."""
    g = torch.Generator().manual_seed(0)
    ef = torch.rand(n, generator=g) * 60 + 20
    phase = torch.linspace(0, 3.14, frames).reshape(1, 1, frames, 1, 1)
    video = ((ef.reshape(-1, 1, 1, 1, 1) - 50) / 40) * torch.cos(phase) * torch.ones(n, 1, frames, size, size)
    return [
        {"image": video[i : i + 4], "reference": video[i : i + 4, :, 0], "ejection_fraction": ef[i : i + 4] / 100}
        for i in range(0, n, 4)
    ]


def test_trains_with_flow_matching_and_samples_with_guidance():
    torch.manual_seed(0)
    conditioning = Conditioning({"context": "ejection_fraction"}, concat_keys=["reference"], dropout=0.2)
    scheduler = RFlowScheduler(1000, use_discrete_timesteps=False, sample_method="logit-normal")
    net = _net(with_conditioning=True, cross_attention_dim=1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=12,
        train_data_loader=_video_data(),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 3e-3),
        loss_function=torch.nn.MSELoss(),
        inferer=SimpleInferer(),
        prepare_batch=FlowMatchingPrepareBatch(scheduler, conditioning),
        decollate=False,
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert sum(losses[-6:]) / 6 < 0.5 * sum(losses[:4]) / 4

    sampler = Sampler(scheduler, num_inference_steps=2, guidance_scale=2.0, conditioning=conditioning)
    batch = _video_data()[0]
    condition = conditioning.extract({k: v[:1] for k, v in batch.items()})
    video = sampler(torch.randn(1, 1, 4, 8, 8), net.eval(), condition=condition)
    assert video.shape == (1, 1, 4, 8, 8) and torch.isfinite(video).all()
    assert isinstance(condition, Condition) and sampler.network_evaluations == 2


@pytest.mark.parametrize(
    "kwargs, num_parameters, num_tensors",
    [
        ({}, 103369, 408),
        ({"with_conditioning": True, "cross_attention_dim": 3, "num_class_embeds": 3}, 100137, 409),
        ({"channels": (8, 8, 16), "attention_levels": (False, False, True), "num_res_blocks": (1, 1, 2)}, 155081, 630),
    ],
)
def test_parameter_count_unchanged_by_per_level_modules(kwargs, num_parameters, num_tensors):
    """Counts computed from the network before it was split into per-level modules: the architecture is the same."""
    params = list(_net(**kwargs).parameters())
    assert (sum(p.numel() for p in params), len(params)) == (num_parameters, num_tensors)


def test_level_modules_and_skip_channels():
    net = _net(channels=(8, 8, 16), attention_levels=(False, False, True), num_res_blocks=(1, 1, 2))
    assert [len(b.resnets) for b in net.down_blocks] == [1, 1, 2]
    assert [len(b.resnets) for b in net.up_blocks] == [3, 2, 2]  # deepest first, one more than the encoder's
    assert [b.attentions is not None for b in net.down_blocks] == [False, False, True]
    assert [b.downsampler is not None for b in net.down_blocks] == [True, True, False]
    assert [b.upsampler is not None for b in net.up_blocks] == [True, True, False]
    # conv_in, level 0 (1 block + downsampling), level 1 (1 + downsampling), level 2 (2 blocks)
    assert net.down_block_residual_channels == (8, 8, 8, 8, 8, 16, 16)
    assert tuple(shape[1] for shape in _skip_shapes(net, 1, 2, 16)) == net.down_block_residual_channels


def test_use_checkpointing_reaches_every_level_module():
    net = _net()
    levels = [*net.down_blocks, net.middle_block, *net.up_blocks]
    assert not any(b.use_checkpointing for b in levels)
    net.use_checkpointing = True
    assert net.use_checkpointing and all(b.use_checkpointing for b in levels)


def _skip_shapes(net: SpatioTemporalUNet, batch: int, frames: int, size: int) -> list[tuple[int, ...]]:
    """``(B, C_i, T, H_i, W_i)`` of every skip: ``conv_in``'s, then per level its blocks' and its downsampling's."""
    shapes = [(batch, net.block_channels[0], frames, size, size)]
    for level, (channels, block) in enumerate(zip(net.block_channels, net.down_blocks, strict=True)):
        s = size // 2**level
        shapes += [(batch, channels, frames, s, s)] * len(block.resnets)
        if block.downsampler is not None:
            shapes.append((batch, channels, frames, s // 2, s // 2))
    return shapes


def test_zero_residuals_give_exactly_the_output_without(conditional_net):
    x, t = torch.randn(2, 2, 3, 16, 16), torch.tensor([100, 700])
    kwargs = {"context": torch.randn(2, 1, 3), "class_labels": torch.tensor([0, 2])}
    down = [torch.zeros(s) for s in _skip_shapes(conditional_net, 2, 3, 16)]
    with torch.no_grad():
        y = conditional_net(x, t, **kwargs)
        y_zero = conditional_net(
            x,
            t,
            **kwargs,
            down_block_additional_residuals=down,
            mid_block_additional_residual=torch.zeros(2, 16, 3, 8, 8),
        )
    torch.testing.assert_close(y_zero, y, atol=0.0, rtol=0.0)


def test_mid_residual_is_added_to_the_middle_block_output(conditional_net):
    """Passing the residual equals adding it to the middle block's output with a hook."""
    x, t = torch.randn(1, 2, 3, 16, 16), torch.tensor([300])
    kwargs = {"context": torch.randn(1, 1, 3), "class_labels": torch.tensor([1])}
    mid = torch.randn(1, 16, 3, 8, 8)
    with torch.no_grad():
        y = conditional_net(x, t, **kwargs)
        y_mid = conditional_net(x, t, **kwargs, mid_block_additional_residual=mid)
        handle = conditional_net.middle_block.register_forward_hook(lambda module, args, out: out + mid)
        y_hook = conditional_net(x, t, **kwargs)
        handle.remove()
    assert not torch.allclose(y_mid, y, atol=1e-4)
    torch.testing.assert_close(y_mid, y_hook, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_down_residual_changes_only_the_frames_it_touches(conditional_net, index):
    """Temporal layers are zero at initialisation: a residual on frame 1 of skip ``index`` changes output frame 1 only
    (index 0 is the conv_in skip, 2 the downsampled one, 3 the deepest level's)."""
    x, t = torch.randn(1, 2, 3, 16, 16), torch.tensor([300])
    kwargs = {"context": torch.randn(1, 1, 3), "class_labels": torch.tensor([1])}
    down = [torch.zeros(s) for s in _skip_shapes(conditional_net, 1, 3, 16)]
    down[index][:, :, 1] = torch.randn_like(down[index][:, :, 1])
    with torch.no_grad():
        y = conditional_net(x, t, **kwargs)
        y_res = conditional_net(x, t, **kwargs, down_block_additional_residuals=down)
    assert not torch.allclose(y_res[:, :, 1], y[:, :, 1], atol=1e-4)
    torch.testing.assert_close(y_res[:, :, [0, 2]], y[:, :, [0, 2]], atol=1e-5, rtol=1e-4)


def test_wrong_number_of_down_residuals_raises():
    net = _net()
    down = [torch.zeros(s) for s in _skip_shapes(net, 1, 2, 16)]
    with pytest.raises(ValueError, match=r"down_block_additional_residuals has 3 tensors, expected 4"):
        net(torch.randn(1, 2, 2, 16, 16), torch.tensor([1]), down_block_additional_residuals=down[:-1])


def test_wrong_shape_of_down_residual_names_index_and_shapes():
    net = _net()
    down = [torch.zeros(s) for s in _skip_shapes(net, 1, 2, 16)]
    down[2] = torch.zeros(1, 8, 2, 16, 16)  # the downsampled skip is 8x8
    with pytest.raises(ValueError, match=r"\[2\] must have the shape .*\(1, 8, 2, 8, 8\), got \(1, 8, 2, 16, 16\)"):
        net(torch.randn(1, 2, 2, 16, 16), torch.tensor([1]), down_block_additional_residuals=down)


def test_wrong_shape_of_mid_residual_raises():
    with pytest.raises(ValueError, match=r"mid_block_additional_residual .*\(1, 16, 2, 8, 8\), got \(1, 16, 1, 8, 8\)"):
        _net()(
            torch.randn(1, 2, 2, 16, 16), torch.tensor([1]), mid_block_additional_residual=torch.zeros(1, 16, 1, 8, 8)
        )
