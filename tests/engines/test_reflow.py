"""Reflow (Liu et al. 2023): ``FlowMatchingPrepareBatch(noise_key=...)`` trains on (noise, sample) couplings, and
``reflow_couplings`` makes them with the shared sampler. Closed form: for the coupling ``x_0 = a * eps`` (a per-sample
scale) the straight paths ``x_s = ((1 - s) a + s) eps`` never cross, so the velocity ``(a - 1) x / ((1 - s) a + s)``
is exact: its loss on the couplings is zero and one Euler step from ``eps`` lands on ``a * eps``."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.schedulers import RFlowScheduler

from echo_monai.engines import Conditioning, FlowMatchingPrepareBatch, reflow_couplings, reflow_student
from echo_monai.inferers import Sampler

T = 1000


class StraightVelocity(torch.nn.Module):
    """The exact velocity field of the couplings ``x_0 = a * eps``, ``a`` given per sample as ``context``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))  # a trainer needs a parameter; 1 keeps it exact

    def forward(self, x, timesteps, context):
        a = context.reshape(-1, *([1] * (x.ndim - 1)))
        s = (timesteps.float() / T).reshape(-1, *([1] * (x.ndim - 1)))
        return self.weight * (a - 1.0) * x / ((1.0 - s) * a + s)


def conditioning() -> Conditioning:
    return Conditioning({"context": "scale"})


def scheduler() -> RFlowScheduler:
    return RFlowScheduler(T, use_discrete_timesteps=False, sample_method="uniform")


def scales(count: int) -> list[dict]:
    return [{"scale": float(a)} for a in torch.linspace(0.2, 0.9, count)]


def test_couplings_store_the_noise_each_sample_was_generated_from():
    sampler = Sampler(scheduler(), 4, conditioning=conditioning(), clip_range=None)
    items = scales(5)
    pairs = reflow_couplings(
        sampler, StraightVelocity(), items, (1, 3, 4), conditioning(), batch_size=2,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert len(pairs) == 5 and all(set(p) == {"scale", "image", "noise"} for p in pairs)
    for item, pair in zip(items, pairs, strict=True):
        assert pair["scale"] == item["scale"] and pair["image"].shape == pair["noise"].shape == (1, 3, 4)
        torch.testing.assert_close(pair["image"], item["scale"] * pair["noise"], atol=1e-5, rtol=1e-5)
    again = reflow_couplings(
        sampler, StraightVelocity(), items, (1, 3, 4), conditioning(), batch_size=5,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    for first, second in zip(pairs, again, strict=True):  # the noise follows the items, not the batching
        torch.testing.assert_close(first["noise"], second["noise"], atol=0, rtol=0)


def test_noise_key_trains_on_the_couplings_path_and_target():
    eps = torch.randn(4, 1, 3, 4)
    a = torch.tensor([0.2, 0.5, 0.7, 0.9])
    batch = {"image": a.reshape(-1, 1, 1, 1) * eps, "noise": eps, "scale": a}
    prepare = FlowMatchingPrepareBatch(scheduler(), conditioning(), noise_key="noise")
    noisy, target, _, kwargs = prepare(batch)
    s = (kwargs["timesteps"] / T).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, (1 - s) * batch["image"] + s * eps)
    torch.testing.assert_close(target, batch["image"] - eps)
    # the exact straight velocity has zero loss on its couplings, not on independent noise
    network = StraightVelocity()
    torch.testing.assert_close(network(noisy, **kwargs), target, atol=1e-5, rtol=1e-4)
    independent = FlowMatchingPrepareBatch(scheduler(), conditioning())
    noisy, target, _, kwargs = independent(batch)
    assert float(torch.nn.functional.mse_loss(network(noisy, **kwargs), target).detach()) > 1e-2
    # and one Euler step of it is the coupled sample
    one_step = Sampler(scheduler(), 1, conditioning=conditioning(), clip_range=None)
    torch.testing.assert_close(
        one_step(eps, network, condition=conditioning().extract(batch)), batch["image"], atol=1e-5, rtol=1e-5
    )


def test_a_reflow_step_through_monais_trainer_on_couplings():
    network = StraightVelocity()
    pairs = reflow_couplings(
        Sampler(scheduler(), 8, conditioning=conditioning(), clip_range=None), network, scales(4), (1, 2, 2),
        conditioning(), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    network.weight.data.fill_(0.5)  # off the exact field: the couplings' loss pulls it back to 1
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=30, train_data_loader=torch.utils.data.DataLoader(pairs, batch_size=4),
        network=network.train(), optimizer=torch.optim.SGD(network.parameters(), lr=0.5),
        loss_function=torch.nn.MSELoss(),
        prepare_batch=FlowMatchingPrepareBatch(scheduler(), conditioning(), noise_key="noise"), decollate=False,
    )  # fmt: skip
    trainer.run()
    assert abs(float(network.weight.detach()) - 1.0) < 0.05


def test_bad_couplings_are_refused_in_one_line():
    prepare = FlowMatchingPrepareBatch(scheduler(), conditioning(), noise_key="noise")
    with pytest.raises(KeyError, match="batch key 'noise' is missing"):
        prepare({"image": torch.zeros(2, 1, 4, 4), "scale": torch.ones(2)})
    with pytest.raises(ValueError, match=r"'noise' has shape \(2, 1, 2, 2\), but 'image' has \(2, 1, 4, 4\)"):
        prepare({"image": torch.zeros(2, 1, 4, 4), "noise": torch.zeros(2, 1, 2, 2), "scale": torch.ones(2)})
    sampler = Sampler(scheduler(), 1, conditioning=conditioning(), clip_range=None)
    with pytest.raises(ValueError, match="at least one item"):
        reflow_couplings(sampler, StraightVelocity(), [], (1, 2, 2), conditioning())
    with pytest.raises(ValueError, match="batch_size >= 1"):
        reflow_couplings(sampler, StraightVelocity(), scales(2), (1, 2, 2), conditioning(), batch_size=0)

    def cropping(noise, network, condition=None, generator=None):
        return noise[..., :1]

    with pytest.raises(ValueError, match=r"the sampler gave \(2, 1, 2, 1\) for noise of shape \(2, 1, 2, 2\)"):
        reflow_couplings(cropping, StraightVelocity(), scales(2), (1, 2, 2), conditioning())


def test_the_couplings_dataset_is_made_once_and_cached(tmp_path, caplog):
    from echo_monai.data import ReflowCouplingDataset

    items = [{"image": torch.zeros(1, 2, 2), **s} for s in scales(3)]
    sampler = Sampler(scheduler(), 2, conditioning=conditioning(), clip_range=None)
    cache = tmp_path / "models" / "couplings.pt"

    def make(network=None, **kwargs):
        return ReflowCouplingDataset(
            items, sampler, network or StraightVelocity(), conditioning(), cache, pairs_per_item=2, **kwargs
        )

    first = make()
    assert len(first) == 6 and cache.is_file() and not list(cache.parent.glob(".tmp-*"))
    for index, pair in enumerate(first.couplings):
        torch.testing.assert_close(pair["image"], items[index % 3]["scale"] * pair["noise"], atol=1e-5, rtol=1e-5)
    written = cache.read_bytes()
    again = make()  # read back, not made again: the same pairs, the file untouched
    assert cache.read_bytes() == written
    assert all(torch.equal(a["noise"], b["noise"]) for a, b in zip(first.couplings, again.couplings, strict=True))
    other = StraightVelocity()
    other.weight.data.fill_(0.9)
    with caplog.at_level("WARNING"):
        remade = make(network=other)  # another teacher: made again, and said so
    assert "making the couplings again" in caplog.text and "teacher" in caplog.text
    assert cache.read_bytes() != written and len(remade) == 6
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(ValueError, match="couplings.pt' is not a readable couplings file .*delete it"):
        make()
    with pytest.raises(ValueError, match="item 0 has no key 'image'"):
        ReflowCouplingDataset([{"scale": 0.5}], sampler, StraightVelocity(), conditioning(), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="pairs_per_item >= 1"):
        ReflowCouplingDataset(items, sampler, StraightVelocity(), conditioning(), tmp_path / "x.pt", pairs_per_item=0)


def test_the_reflow_student_is_a_trainable_copy_of_a_frozen_flow_model():
    teacher = StraightVelocity()
    student = reflow_student(teacher)
    assert student is not teacher and torch.equal(student.weight, teacher.weight)
    assert student.weight.requires_grad and not teacher.weight.requires_grad and not teacher.training
    with pytest.raises(ValueError, match="objective is 'ddpm'.*--objective flow.*--stage distill"):
        reflow_student(StraightVelocity(), objective="ddpm")
