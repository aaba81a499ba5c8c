"""make_training_stage / attach_stage_handlers: the one training-stage recipe (validation, EMA, previews,
TensorBoard, checkpoints, resume, rank roles)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from echo_monai.engines import DDPMPrepareBatch, make_training_stage, scalar_output
from echo_monai.handlers import EMA, SamplePreviewWriter
from echo_monai.inferers import Sampler


def _items(n: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(1, 16, 16, generator=g) * 2 - 1} for _ in range(n)]


def _stage(network, tmp_path, max_epochs=2, **kwargs):
    return make_training_stage(
        network=network,
        train_dataset=_items(),
        prepare_batch=DDPMPrepareBatch(DDPMScheduler(10)),
        loss_function=torch.nn.MSELoss(),
        optimizer=torch.optim.Adam(network.parameters(), 1e-3),
        max_epochs=max_epochs,
        ckpt_dir=tmp_path / "models",
        batch_size=4,
        progress=False,
        **kwargs,
    )


def test_trains_validates_and_writes_the_ema_weights(make_unet, tmp_path):
    net = make_unet(seed=0)
    ema = EMA(net, decay=0.5)
    trainer = _stage(net, tmp_path, val_dataset=_items(4), ema=ema, prefix="image", final_filename="image.pt")
    trainer.run()
    assert trainer.state.iteration == 6 and trainer.resumed_from is None
    assert trainer.validator is not None and trainer.validator.network is ema.ema_model
    assert trainer.validator.state.metrics["val_loss"] > 0
    models = tmp_path / "models"
    assert (models / "image_checkpoint_final_iteration=6.pt").is_file()
    final = torch.load(models / "image.pt", weights_only=True)
    for name, value in ema.ema_model.state_dict().items():
        torch.testing.assert_close(final[name], value)
    checkpoint = torch.load(models / "image_checkpoint_final_iteration=6.pt", weights_only=True)
    assert set(checkpoint) == {"model", "optimizer", "trainer", "ema"}


def test_interrupted_run_resumes_at_the_next_iteration(make_unet, tmp_path):
    trainer = _stage(make_unet(seed=0), tmp_path, max_epochs=3, save_interval=2)

    @trainer.on(Events.ITERATION_COMPLETED(once=5))
    def _crash(engine):
        raise RuntimeError("simulated interruption")

    with pytest.raises(RuntimeError, match="simulated"):
        trainer.run()
    resumed = _stage(make_unet(seed=1), tmp_path, max_epochs=3, save_interval=2)
    assert resumed.resumed_from.endswith("checkpoint_final_iteration=5.pt")
    started = []
    resumed.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    resumed.run()
    assert started[0] == 6 and resumed.state.iteration == 9
    # another stage's checkpoints in the same folder are not resumed from
    other = _stage(make_unet(seed=0), tmp_path, prefix="video")
    assert other.resumed_from is None


def test_rank_roles(make_unet, tmp_path):
    """Rank 1 validates and keeps the EMA but writes no checkpoint, log or preview; rank 0 does."""
    net = make_unet(seed=0)
    ema = EMA(net, decay=0.5)
    preview = SamplePreviewWriter(
        Sampler(DDIMScheduler(10), 2), ema.ema_model, (1, 16, 16), 2, output_dir=tmp_path / "previews"
    )
    trainer = _stage(net, tmp_path, max_epochs=1, val_dataset=_items(4), ema=ema, previews=[preview],
                     log_dir=tmp_path / "tb", rank=1)  # fmt: skip
    trainer.run()
    assert trainer.validator.state.metrics["val_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(ema.ema_model.parameters(), net.parameters(), strict=True))
    assert not list((tmp_path / "models").glob("*")) and not (tmp_path / "previews").exists()
    assert not (tmp_path / "tb").exists()

    trainer = _stage(net, tmp_path, max_epochs=1, val_dataset=_items(4), ema=ema, previews=[preview],
                     log_dir=tmp_path / "tb", rank=0)  # fmt: skip
    trainer.run()
    assert (tmp_path / "models" / "model.pt").is_file()
    assert list((tmp_path / "previews").glob("samples_epoch=1.png"))
    assert preview.summary_writer is not None  # given the stage's TensorBoard writer


def test_training_loss_and_validation_reach_tensorboard(make_unet, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _stage(make_unet(seed=0), tmp_path, max_epochs=1, val_dataset=_items(4), log_dir=tmp_path / "tb")
    trainer.run()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train_loss" in tags and "val_loss" in tags
    assert len(events.Scalars("train_loss")) == 3


def test_scalar_output_and_bad_arguments(make_unet, tmp_path):
    assert scalar_output("loss")({"loss": torch.tensor(0.25)}) == 0.25
    with pytest.raises(ValueError, match="max_epochs"):
        _stage(make_unet(), tmp_path, max_epochs=0)
    net = make_unet()
    with pytest.raises(ValueError, match="validation set, the dataset list.*is empty; check its split"):
        _stage(net, tmp_path, val_dataset=[])


def test_a_kill_during_a_save_does_not_break_the_next_run(make_unet, tmp_path, caplog):
    """A 0-byte newest checkpoint (the old non-atomic saver's leftover) is skipped with its name; the run resumes
    from the previous one, rewrites the iterations after it and rotates the stage's files."""
    trainer = _stage(make_unet(seed=0), tmp_path, max_epochs=2, save_interval=1, n_saved=2)
    trainer.run()  # 6 iterations: checkpoint_iteration=5, =6 and the final one are kept
    models = tmp_path / "models"
    (models / "checkpoint_iteration=80.pt").write_bytes(b"")
    (models / ".tmp-999999-checkpoint_iteration=7.pt").write_bytes(b"partial")  # a killed process's temporary
    with caplog.at_level("WARNING"):
        resumed = _stage(make_unet(seed=1), tmp_path, max_epochs=3, save_interval=1, n_saved=2)
    assert resumed.resumed_from.endswith("iteration=6.pt") and "checkpoint_iteration=80.pt" in caplog.text
    assert not (models / ".tmp-999999-checkpoint_iteration=7.pt").exists()
    resumed.run()
    assert resumed.state.iteration == 9
    names = sorted(p.name for p in models.glob("checkpoint*.pt"))
    assert names == ["checkpoint_final_iteration=9.pt", "checkpoint_iteration=9.pt"], names  # the 0-byte one too


def test_resuming_from_a_checkpoint_of_other_settings_says_so(make_unet, tmp_path):
    _stage(make_unet(seed=0), tmp_path, max_epochs=1).run()
    other = _stage(make_unet(channels=(8, 8)), tmp_path, max_epochs=2)
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint_final_iteration=3.pt'.*other settings"):
        other.run()
