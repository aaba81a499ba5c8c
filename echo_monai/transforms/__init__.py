from __future__ import annotations

from echo_monai.transforms.intensity import ScaleIntensityToModelRanged
from echo_monai.transforms.video import CenterClipd, LoadVideod, PickFramesd, RandClipd, ResampleFPSd, ResizeVideod

__all__ = [
    "CenterClipd",
    "LoadVideod",
    "PickFramesd",
    "RandClipd",
    "ResampleFPSd",
    "ResizeVideod",
    "ScaleIntensityToModelRanged",
]
