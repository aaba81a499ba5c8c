"""Batch and rank helpers of the engines."""

from __future__ import annotations

import pytest
import torch

from echo_monai.engines import first_batch, rank_and_world_size


def test_first_batch():
    data = [{"x": torch.tensor([float(i)])} for i in range(5)]
    assert first_batch(data, 3)["x"].shape == (3, 1) and first_batch(data, 9)["x"].shape == (5, 1)
    with pytest.raises(ValueError, match="empty"):
        first_batch([], 2)

    class Reader(list):
        root, split = "/data/CAMUS", "validation"

    with pytest.raises(ValueError, match=r"Reader\(root='/data/CAMUS', split='validation'\) is empty"):
        first_batch(Reader(), 2)
    with pytest.raises(ValueError, match="size"):
        first_batch(data, 0)


def test_rank_and_world_size_from_arguments_and_environment(monkeypatch):
    assert rank_and_world_size(1, 3) == (1, 3)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert rank_and_world_size() == (2, 4)
    with pytest.raises(ValueError, match="rank"):
        rank_and_world_size(2, 2)


def test_init_distributed_seeds_each_rank_and_ddp_wraps_on_cpu(monkeypatch):
    """One Gloo process: the rank's seed is ``seed + rank``; on the CPU, DDP gets no ``device_ids``."""
    import socket

    from torch.nn.parallel import DistributedDataParallel

    from echo_monai.engines import distributed_data_parallel, finalize_distributed, init_distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        assert init_distributed(seed=7) == 0
        assert torch.initial_seed() == 7
        wrapped = distributed_data_parallel(torch.nn.Linear(2, 1), "cpu")
        assert isinstance(wrapped, DistributedDataParallel) and wrapped.device_ids is None
        assert next(wrapped.parameters()).device.type == "cpu"
    finally:
        finalize_distributed()
    assert not torch.distributed.is_initialized()
    finalize_distributed()  # nothing to leave: nothing done
