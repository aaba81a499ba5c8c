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


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same global RNG state, independent of test order."""
    torch.manual_seed(0)
    yield


# The tiny networks of the test suite (STYLE.md: channels (8, 16), 8 norm groups, 16-32 px), built in one place.
# Each fixture is a builder: call it with keyword overrides, e.g. ``make_unet(num_class_embeds=3)``.


@pytest.fixture
def make_autoencoder():
    """Builder of a tiny 2D ``AutoencoderKL``: 1 channel, 4 latent channels, 2x down-sampling, no attention."""
    from monai.networks.nets import AutoencoderKL

    def build(seed: int | None = None, **overrides) -> AutoencoderKL:
        if seed is not None:
            torch.manual_seed(seed)
        settings = {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": (8, 16),
            "latent_channels": 4,
            "num_res_blocks": 1,
            "norm_num_groups": 8,
            "attention_levels": (False, False),
            "with_encoder_nonlocal_attn": False,
            "with_decoder_nonlocal_attn": False,
        }
        return AutoencoderKL(**{**settings, **overrides})

    return build


@pytest.fixture
def make_unet():
    """Builder of a tiny 2D ``DiffusionModelUNet`` (1 channel in and out unless overridden)."""
    from monai.networks.nets import DiffusionModelUNet

    def build(seed: int | None = None, **overrides) -> DiffusionModelUNet:
        if seed is not None:
            torch.manual_seed(seed)
        settings = {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": (8, 16),
            "attention_levels": (False, False),
            "num_res_blocks": 1,
            "norm_num_groups": 8,
        }
        return DiffusionModelUNet(**{**settings, **overrides})

    return build


@pytest.fixture
def make_video_unet():
    """Builder of a tiny ``SpatioTemporalUNet`` (2 channels in: noisy + reference, 1 out unless overridden)."""
    from echo_monai.networks.nets import SpatioTemporalUNet

    def build(seed: int | None = None, **overrides) -> SpatioTemporalUNet:
        if seed is not None:
            torch.manual_seed(seed)
        settings = {
            "in_channels": 2,
            "out_channels": 1,
            "channels": (8, 16),
            "attention_levels": (False, True),
            "num_res_blocks": 1,
            "num_head_channels": 8,
            "norm_num_groups": 4,
        }
        return SpatioTemporalUNet(**{**settings, **overrides})

    return build
