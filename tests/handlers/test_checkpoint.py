"""load_stage_checkpoint: restores modules outside an engine; errors name the stage."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedEvaluator

from echo_monai.handlers import StageCheckpointLoader, load_stage_checkpoint


def test_restores_and_returns_the_first_module(tmp_path):
    source, target = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    torch.save({"model": source.state_dict()}, tmp_path / "model.pt")
    assert load_stage_checkpoint(tmp_path / "model.pt", {"model": target}, "demo train") is target
    assert torch.equal(target.weight, source.weight)
    torch.save(source.state_dict(), tmp_path / "bare.pt")  # CheckpointSaver's single-object layout
    other = torch.nn.Linear(2, 3)
    assert torch.equal(load_stage_checkpoint(tmp_path / "bare.pt", {"model": other}, "demo train").bias, source.bias)


def test_missing_file_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the demo train stage first"):
        load_stage_checkpoint(tmp_path / "missing.pt", {"model": torch.nn.Linear(2, 3)}, "demo train")


def test_checkpoint_of_another_network_is_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(4, 4).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit the network"):
        load_stage_checkpoint(tmp_path / "other.pt", {"model": torch.nn.Linear(2, 3)}, "demo train")
    with pytest.raises(ValueError, match="does not fit the network"):
        load_stage_checkpoint(tmp_path / "other.pt", {"autoencoder": torch.nn.Linear(4, 4)}, "demo train")
    with pytest.raises(ValueError, match="at least one module"):
        load_stage_checkpoint(tmp_path / "other.pt", {}, "demo train")


def _evaluator(network):
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[{"image": torch.zeros(1, 2)}], network=network
    )


def test_stage_checkpoint_loader_errors(tmp_path):
    net = torch.nn.Linear(2, 2)
    missing = StageCheckpointLoader(str(tmp_path / "model.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(FileNotFoundError, match="run the my_bundle train stage first"):
        missing(_evaluator(net))
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, tmp_path / "other.pt")
    other = StageCheckpointLoader(str(tmp_path / "other.pt"), {"model": net}, stage="my_bundle train")
    with pytest.raises(ValueError, match="does not fit the network"):
        other(_evaluator(net))
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "good.pt")
    StageCheckpointLoader(str(tmp_path / "good.pt"), {"model": net})(_evaluator(net))


def test_resume_skips_empty_truncated_and_foreign_files_naming_them(tmp_path, caplog):
    from echo_monai.handlers import latest_checkpoint

    good = {"model": torch.nn.Linear(2, 2).state_dict()}
    torch.save(good, tmp_path / "checkpoint_iteration=60.pt")
    torch.save(good, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "checkpoint_iteration=80.pt").write_bytes(b"")  # killed at the start of a save
    (tmp_path / "checkpoint_iteration=90.pt").write_bytes(data[: len(data) // 2])  # killed half way
    (tmp_path / "checkpoint_iteration=95.pt").write_bytes(b"random bytes, not a checkpoint")
    with caplog.at_level("WARNING"):
        assert latest_checkpoint(tmp_path).endswith("checkpoint_iteration=60.pt")
    skipped = "\n".join(r.message for r in caplog.records)
    assert "checkpoint_iteration=80.pt" in skipped and "empty" in skipped
    assert "checkpoint_iteration=90.pt" in skipped and "truncated or corrupt" in skipped
    assert "checkpoint_iteration=95.pt" in skipped


def test_unreadable_stage_checkpoint_is_not_blamed_on_another_network(tmp_path):
    from echo_monai.handlers import CheckpointReadError

    (tmp_path / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(
        CheckpointReadError, match=r"model.pt' \(8 bytes\) is not a readable PyTorch checkpoint.*re-run"
    ):
        load_stage_checkpoint(tmp_path / "model.pt", {"model": torch.nn.Linear(2, 3)}, "demo train")


def test_atomic_saver_leaves_no_partial_file_and_rotation_keeps_the_newest(tmp_path, monkeypatch):
    from ignite.engine import Engine

    from echo_monai.handlers import AtomicCheckpointSaver, rotate_checkpoints, stage_checkpoints

    net = {"model": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)}  # several objects: checkpoint_* names
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), net, epoch_level=False, save_interval=1, n_saved=None).attach(engine)
    engine.run([0, 1, 2], max_epochs=1)
    assert [p.name for p in stage_checkpoints(tmp_path)] == [f"checkpoint_iteration={i}.pt" for i in (3, 2, 1)]
    # a save killed half way (torch.save raising) leaves neither a partial file under the real name nor a temporary
    original = torch.save

    def crash(obj, f, *args, **kwargs):
        original(obj, f, *args, **kwargs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", crash)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(
        str(tmp_path), {"model": net}, file_prefix="other", epoch_level=False, save_interval=1
    ).attach(engine)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=1)
    monkeypatch.setattr(torch, "save", original)
    assert not list(tmp_path.glob("other*")) and not list(tmp_path.glob(".tmp*"))
    assert [p.name for p in rotate_checkpoints(tmp_path, keep=1)] == [
        "checkpoint_iteration=2.pt",
        "checkpoint_iteration=1.pt",
    ]
    assert [p.name for p in stage_checkpoints(tmp_path)] == ["checkpoint_iteration=3.pt"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from echo_monai.data.atomic import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".tmp-{dead_pid}-video.avi"
    mine = tmp_path / f".tmp-{os.getpid()}-model.pt"
    stale.write_bytes(b"x")
    mine.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert mine.is_file() and not stale.exists()


def test_probe_opens_a_checkpoint_without_reading_its_tensors_and_reads_old_files_whole(tmp_path, monkeypatch):
    from echo_monai.handlers import CheckpointReadError, probe_checkpoint

    good = {"model": torch.nn.Linear(2, 2).state_dict()}
    torch.save(good, tmp_path / "zip.pt")
    torch.save(good, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    calls = []
    load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("mmap", False)) or load(*a, **k))
    probe_checkpoint(tmp_path / "zip.pt")
    assert calls == [True]  # memory-mapped only
    calls.clear()
    probe_checkpoint(tmp_path / "legacy.pt")
    assert calls == [True, False]  # an old file does not map: read whole
    (tmp_path / "cut.pt").write_bytes((tmp_path / "zip.pt").read_bytes()[:100])
    with pytest.raises(CheckpointReadError, match="cut.pt"):
        probe_checkpoint(tmp_path / "cut.pt")
