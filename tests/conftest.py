from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_gpu = pytest.mark.skip(reason="gpu: no CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from intra-op threads; on a shared 2-core machine OpenMP spinning slows them down.
    Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global RNG state, independent of test order."""
    torch.manual_seed(0)
    yield


# The tiny networks of the test suite (STYLE.md: channels (8, 16), 8 norm groups, 16-32 px), built in one place.
# Each fixture is a builder: call it with keyword overrides and a seed, e.g. ``make_unet(seed=0, num_class_embeds=3)``.


def _builder(network_class, settings: dict):
    def build(seed: int | None = None, **overrides):
        if seed is not None:
            torch.manual_seed(seed)
        return network_class(**{**settings, **overrides})

    return build


_TINY_2D = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": (8, 16), "num_res_blocks": 1,
            "norm_num_groups": 8, "attention_levels": (False, False)}  # fmt: skip


@pytest.fixture
def make_autoencoder():
    """Builder of a tiny 2D ``AutoencoderKL``: 1 channel, 4 latent channels, 2x down-sampling, no attention."""
    from monai.networks.nets import AutoencoderKL

    settings = {**_TINY_2D, "latent_channels": 4, "with_encoder_nonlocal_attn": False,
                "with_decoder_nonlocal_attn": False}  # fmt: skip
    return _builder(AutoencoderKL, settings)


@pytest.fixture
def make_unet():
    """Builder of a tiny 2D ``DiffusionModelUNet`` (1 channel in and out unless overridden)."""
    from monai.networks.nets import DiffusionModelUNet

    return _builder(DiffusionModelUNet, _TINY_2D)


@pytest.fixture
def make_video_unet():
    """Builder of a tiny ``SpatioTemporalUNet`` (2 channels in: noisy + reference, 1 out unless overridden)."""
    from echo_monai.networks.nets import SpatioTemporalUNet

    settings = {"in_channels": 2, "out_channels": 1, "channels": (8, 16), "attention_levels": (False, True),
                "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4}  # fmt: skip
    return _builder(SpatioTemporalUNet, settings)
