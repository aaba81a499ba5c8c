"""Phantom B-mode simulator and writers of the public dataset layouts (echo_monai.data.phantom)."""

from __future__ import annotations

from echo_monai.data.phantom.bmode import BModeSimulator
from echo_monai.data.phantom.breast import (
    BreastParameters,
    BreastPhantom,
    BreastSequence,
)
from echo_monai.data.phantom.busi_writer import BUSIWriter
from echo_monai.data.phantom.busv_writer import BUSVWriter
from echo_monai.data.phantom.camus_writer import CAMUSWriter
from echo_monai.data.phantom.cardiac import CardiacPhantom, CardiacSequence
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.dicom_writer import DicomCineWriter
from echo_monai.data.phantom.discs import (
    disc_diameters,
    ejection_fraction,
    long_axis,
    method_of_discs_volume,
)
from echo_monai.data.phantom.echonet_writer import EchoNetDynamicWriter
from echo_monai.data.phantom.geometry import ProbeGeometry
from echo_monai.data.phantom.pediatric_writer import EchoNetPediatricWriter

__all__ = [
    "BModeSimulator",
    "BUSIWriter",
    "BUSVWriter",
    "BreastParameters",
    "BreastPhantom",
    "BreastSequence",
    "CAMUSWriter",
    "CardiacParameters",
    "CardiacPhantom",
    "CardiacSequence",
    "DicomCineWriter",
    "EchoNetDynamicWriter",
    "EchoNetPediatricWriter",
    "ProbeGeometry",
    "disc_diameters",
    "ejection_fraction",
    "long_axis",
    "method_of_discs_volume",
]
