from __future__ import annotations

from echo_monai.data.busi import BUSI
from echo_monai.data.busv import BUSV
from echo_monai.data.camus import CAMUS
from echo_monai.data.dicom import DicomCine, read_dicom_seg
from echo_monai.data.echonet import EchoNetDynamic, TracedVideoReader
from echo_monai.data.label_maps import label_map_datalist
from echo_monai.data.latent_autoencoder import FramewiseAutoencoder, LatentAutoencoder, as_latent_autoencoder
from echo_monai.data.latent_cache import (
    LatentCacheDataset,
    LatentCacheError,
    autoencoder_fingerprint,
    encode_latent_cache,
    latent_frames,
)
from echo_monai.data.latents import LatentScaler, framewise
from echo_monai.data.motion_prior import MotionPrior
from echo_monai.data.pediatric import EchoNetPediatric
from echo_monai.data.reader_base import FieldChecker, InvalidItemError, MissingFilesError, OnInvalid, ReaderDataset
from echo_monai.data.reflow import ReflowCouplingDataset
from echo_monai.data.video_cache import VideoCache
from echo_monai.data.video_io import VideoInfo, VideoReadError, probe_video, read_video, write_video

__all__ = [
    "MotionPrior",
    "FramewiseAutoencoder",
    "LatentAutoencoder",
    "as_latent_autoencoder",
    "LatentScaler",
    "LatentCacheDataset",
    "LatentCacheError",
    "autoencoder_fingerprint",
    "encode_latent_cache",
    "latent_frames",
    "framewise",
    "BUSI",
    "BUSV",
    "CAMUS",
    "DicomCine",
    "read_dicom_seg",
    "EchoNetDynamic",
    "EchoNetPediatric",
    "FieldChecker",
    "InvalidItemError",
    "MissingFilesError",
    "OnInvalid",
    "ReaderDataset",
    "ReflowCouplingDataset",
    "TracedVideoReader",
    "VideoCache",
    "VideoInfo",
    "VideoReadError",
    "probe_video",
    "read_video",
    "label_map_datalist",
    "write_video",
]
