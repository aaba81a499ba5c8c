"""Training through MONAI's stock SupervisedTrainer with echo_monai's PrepareBatch, EMA, checkpoints and resume."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.inferers import SimpleInferer
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

from echo_monai.engines import Conditioning, DDPMPrepareBatch, FlowMatchingPrepareBatch
from echo_monai.handlers import EMA, ProgressBar, latest_checkpoint


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    views = torch.randint(0, 2, (n,), generator=g)
    images = torch.where(views.reshape(-1, 1, 1, 1) == 1, 0.8, -0.8) * torch.ones(n, 1, 16, 16)
    return [{"image": images[i : i + 4], "view": views[i : i + 4]} for i in range(0, n, 4)]


def _trainer(network, prepare_batch, data, max_epochs, handlers=()):
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=data,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 2e-3),
        loss_function=torch.nn.MSELoss(),
        inferer=SimpleInferer(),
        prepare_batch=prepare_batch,
        train_handlers=list(handlers),
        decollate=False,
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    return trainer, losses


def test_flow_matching_loss_falls_with_class_conditioning(make_unet):
    torch.manual_seed(0)
    cond = Conditioning({"class_labels": "view"})
    prep = FlowMatchingPrepareBatch(
        RFlowScheduler(1000, use_discrete_timesteps=False, sample_method="logit-normal"), cond
    )
    trainer, losses = _trainer(make_unet(num_class_embeds=2), prep, _data(), max_epochs=15)
    trainer.run()
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:4]) / 4


def test_ddpm_training_with_ema_and_progress_bar(capsys, make_unet):
    torch.manual_seed(0)
    net = make_unet()
    ema = EMA(net, decay=0.9)
    trainer, losses = _trainer(net, DDPMPrepareBatch(DDPMScheduler(10)), _data(), 2, [ema, ProgressBar(persist=True)])
    trainer.run()
    assert trainer.state.iteration == 8
    assert any(not torch.equal(a, b) for a, b in zip(ema.ema_model.parameters(), net.parameters(), strict=True))


def test_resume_after_interrupt_continues_at_the_same_iteration(tmp_path, make_unet):
    torch.manual_seed(0)
    prep = DDPMPrepareBatch(DDPMScheduler(10))
    net = make_unet()
    trainer, _ = _trainer(net, prep, _data(), max_epochs=3)
    opt = trainer.optimizer
    saver = CheckpointSaver(
        str(tmp_path),
        {"network": net, "optimizer": opt, "trainer": trainer},
        epoch_level=False,
        save_interval=2,
        save_final=True,
    )
    saver.attach(trainer)

    @trainer.on(Events.ITERATION_COMPLETED(once=7))
    def _crash(engine):
        raise RuntimeError("simulated interruption")

    try:
        trainer.run()
    except RuntimeError:
        pass
    resume = latest_checkpoint(tmp_path)
    assert resume is not None and resume.endswith("iteration=7.pt")  # final checkpoint written on the exception

    net2 = make_unet()
    trainer2, _ = _trainer(net2, prep, _data(), max_epochs=3)
    started = []
    trainer2.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    CheckpointLoader(resume, {"network": net2, "optimizer": trainer2.optimizer, "trainer": trainer2}).attach(trainer2)
    trainer2.run()
    assert started[0] == 8 and trainer2.state.iteration == 12  # continues after iteration 7, ends at 3 epochs x 4
    assert latest_checkpoint(tmp_path / "missing") is None
