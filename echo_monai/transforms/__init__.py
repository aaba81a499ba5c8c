from __future__ import annotations

from echo_monai.transforms.baseline_videos import affine_jitter_video, jitter_parameters, still_video
from echo_monai.transforms.condition_map import ConditionMapd, MaskOutsideSector, ModelSized
from echo_monai.transforms.frame_triplets import FrameTripletd, PseudoFlowd
from echo_monai.transforms.intensity import ScaleIntensityToModelRanged
from echo_monai.transforms.label_map import (
    CAMUS_CLASSES,
    SEG_DDPM_CLASSES,
    EchoLabelMapd,
    LoadLabelMapd,
    SectorMaskd,
    check_label_values,
    control_map_transforms,
    fan_sector_mask,
    label_map_condition,
    sector_from_image,
)
from echo_monai.transforms.latent import ClassIndexd, RandTracedFramed
from echo_monai.transforms.motion import CheckShaped, MotionTokensd, ReferenceFramed, SampleMotiond
from echo_monai.transforms.pairs import PairedFramesd
from echo_monai.transforms.prompts import EchoPrompt, EchoPromptd, TokenizePromptd, prompt_vocabulary
from echo_monai.transforms.still_image import (
    LesionCropd,
    LetterboxResized,
    LoadGreyImaged,
    SpaceToDepthd,
    read_grey_image,
)
from echo_monai.transforms.video import CenterClipd, LoadVideod, PickFramesd, RandClipd, ResampleFPSd, ResizeVideod

__all__ = [
    "CheckShaped",
    "MotionTokensd",
    "ReferenceFramed",
    "SampleMotiond",
    "LesionCropd",
    "LetterboxResized",
    "LoadGreyImaged",
    "SpaceToDepthd",
    "read_grey_image",
    "EchoPrompt",
    "EchoPromptd",
    "TokenizePromptd",
    "ConditionMapd",
    "MaskOutsideSector",
    "ModelSized",
    "CAMUS_CLASSES",
    "SEG_DDPM_CLASSES",
    "EchoLabelMapd",
    "LoadLabelMapd",
    "SectorMaskd",
    "check_label_values",
    "control_map_transforms",
    "label_map_condition",
    "fan_sector_mask",
    "sector_from_image",
    "CenterClipd",
    "ClassIndexd",
    "FrameTripletd",
    "LoadVideod",
    "PairedFramesd",
    "PickFramesd",
    "PseudoFlowd",
    "RandClipd",
    "RandTracedFramed",
    "ResampleFPSd",
    "ResizeVideod",
    "ScaleIntensityToModelRanged",
    "prompt_vocabulary",
    "affine_jitter_video",
    "jitter_parameters",
    "still_video",
]
