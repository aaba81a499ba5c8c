"""Phantom B-mode simulator and writers of the public dataset layouts (echo_monai.data.phantom)."""

from __future__ import annotations

from echo_monai.data.phantom.bmode import BModeSimulator
from echo_monai.data.phantom.cardiac import CardiacPhantom, CardiacSequence
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.discs import disc_diameters, ejection_fraction, long_axis, method_of_discs_volume
from echo_monai.data.phantom.geometry import ProbeGeometry

__all__ = [
    "BModeSimulator",
    "CardiacParameters",
    "CardiacPhantom",
    "CardiacSequence",
    "ProbeGeometry",
    "disc_diameters",
    "ejection_fraction",
    "long_axis",
    "method_of_discs_volume",
]
