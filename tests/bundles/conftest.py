"""Tiny trained echo_seg_ddpm, echo_flow, echo_text_controlnet and us_image_to_video bundles, trained once per test
session and shared by the serving tests (MONAI Deploy, MONAI Label) and, for the last two, their own bundle tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import cli_args
from test_echo_flow import BUNDLE as FLOW_BUNDLE
from test_echo_flow import make_overrides as flow_overrides
from test_echo_seg_ddpm import BUNDLE as SEG_BUNDLE
from test_echo_seg_ddpm import make_overrides as seg_overrides
from test_echo_text_controlnet import BUNDLE as TEXT_BUNDLE
from test_echo_text_controlnet import make_overrides as text_overrides
from test_us_image_to_video import BUNDLE as VIDEO_BUNDLE
from test_us_image_to_video import make_overrides as video_overrides

from echo_monai.apps import cli

SEG_SIZE = 32  # the tiny echo_seg_ddpm preset's image_size


@pytest.fixture(scope="session")
def seg_model(tmp_path_factory):
    """(trained bundle root, a 64 px phantom label map: twice the tiny model's size)."""
    root = tmp_path_factory.mktemp("served_seg")
    overrides = seg_overrides(root)
    assert cli.main(["train", str(SEG_BUNDLE), *cli_args(overrides["train"])]) == 0
    phantom = nib.load(next((root / "camus").rglob("patient0003_4CH_ED_gt.nii.gz"))).get_fdata().astype(np.int16)
    return root / "bundle", phantom


@pytest.fixture(scope="session")
def flow_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("served_flow")
    o = flow_overrides(root)  # phantom, stage-1 VAE and latent cache
    for stage, key in (("image", "train_image"), ("reid", "train_reid"), (None, "train")):
        assert cli.main(["train", str(FLOW_BUNDLE), *(["--stage", stage] if stage else []), *cli_args(o[key])]) == 0
    return root / "bundle"


@pytest.fixture(scope="session")
def image_to_video_bundle(tmp_path_factory):
    """(root, overrides): a tiny us_image_to_video trained on BUSV phantom videos, with BUSI phantom images."""
    root = tmp_path_factory.mktemp("us_image_to_video")
    o = video_overrides(root)
    assert cli.main(["train", str(VIDEO_BUNDLE), *cli_args(o["train"])]) == 0
    return root, o


@pytest.fixture(scope="session")
def text_controlnet_bundle(tmp_path_factory):
    """(root, overrides): a tiny echo_text_controlnet on a 32 px CAMUS phantom, all three modes trained."""
    root = tmp_path_factory.mktemp("echo_text_controlnet")
    o = text_overrides(root)
    assert cli.main(["train", str(TEXT_BUNDLE), *cli_args(o["train"])]) == 0
    assert cli.main(["train", str(TEXT_BUNDLE), "--mode", "unconditional", *cli_args(o["train"])]) == 0
    assert cli.main(["train", str(TEXT_BUNDLE), "--stage", "controlnet", *cli_args(o["train"])]) == 0
    return root, o
