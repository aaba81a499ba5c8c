"""Probe geometry: the beam grid a B-mode frame is simulated on and its scan conversion to pixels.

Two probe kinds are modelled:

* ``"sector"`` (phased array, echocardiography): beams fan out from an apex at the top centre of the image over
  ``±half_angle``; the beam grid is ``(depth sample, beam)`` in polar coordinates ``(r, theta)``.
* ``"linear"`` (breast): parallel beams; the beam grid is a plain ``(depth, lateral)`` raster.

Physical coordinates are millimetres with the probe (sector apex) at ``(x=0, z=0)``, ``x`` lateral (image columns,
left to right) and ``z`` depth (image rows, top to bottom). Output pixels are square: a ``(H, W)`` image covers
``z in [0, depth_mm]`` and ``x in [-W/2, W/2] * pixel_spacing``; pixel ``(i, j)`` has its centre at
``x = (j + 0.5) * s - W * s / 2``, ``z = (i + 0.5) * s`` with ``s = depth_mm / H``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ProbeGeometry"]

_KINDS = ("sector", "linear")


@dataclass(frozen=True)
class ProbeGeometry:
    """Beam grid, output pixel grid and the precomputed scan-conversion maps between them.

    Args:
        image_size: output ``(H, W)`` in pixels.
        depth_mm: imaging depth; sets the pixel spacing ``depth_mm / H`` (square pixels).
        kind: ``"sector"`` or ``"linear"``.
        half_angle_deg: sector half opening angle (sector probes only), in ``(0, 90)``.
        axial_oversampling: beam-grid depth samples per output row.
        lateral_oversampling: beams per output column.

    Example:
        >>> geometry = ProbeGeometry((112, 112), depth_mm=150.0)
        >>> geometry.beam_shape, geometry.sector_mask.shape
        ((168, 112), (112, 112))
    """

    image_size: tuple[int, int]
    depth_mm: float
    kind: str = "sector"
    half_angle_deg: float = 38.0
    axial_oversampling: float = 1.5
    lateral_oversampling: float = 1.0
    _maps: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) < 4:
            raise ValueError(f"ProbeGeometry: image_size must be (H, W) with H, W >= 4, got {self.image_size}.")
        if self.kind not in _KINDS:
            raise ValueError(f"ProbeGeometry: kind must be one of {_KINDS}, got {self.kind!r}.")
        if not self.depth_mm > 0:
            raise ValueError(f"ProbeGeometry: depth_mm must be > 0, got {self.depth_mm}.")
        if self.kind == "sector" and not 0 < self.half_angle_deg < 90:
            raise ValueError(f"ProbeGeometry: half_angle_deg must be in (0, 90), got {self.half_angle_deg}.")
        if self.axial_oversampling <= 0 or self.lateral_oversampling <= 0:
            raise ValueError(
                "ProbeGeometry: axial_oversampling and lateral_oversampling must be > 0, got "
                f"{self.axial_oversampling} and {self.lateral_oversampling}."
            )
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    # ------------------------------------------------------------------ grids
    @property
    def pixel_spacing(self) -> float:
        """Output pixel size in millimetres (square pixels)."""
        return self.depth_mm / self.image_size[0]

    @property
    def half_width_mm(self) -> float:
        """Half the lateral extent of the output image in millimetres."""
        return 0.5 * self.image_size[1] * self.pixel_spacing

    @property
    def beam_shape(self) -> tuple[int, int]:
        """``(depth samples, beams)`` of the beam grid."""
        height, width = self.image_size
        return max(4, round(height * self.axial_oversampling)), max(4, round(width * self.lateral_oversampling))

    @property
    def sample_spacing(self) -> float:
        """Depth step of the beam grid in millimetres."""
        return self.depth_mm / self.beam_shape[0]

    @property
    def beam_step(self) -> float:
        """Beam step: radians for a sector probe, millimetres for a linear probe."""
        beams = self.beam_shape[1]
        if self.kind == "sector":
            return 2.0 * math.radians(self.half_angle_deg) / beams
        return 2.0 * self.half_width_mm / beams

    def beam_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical position of every beam-grid sample.

        Returns:
            ``(x, z)`` float32 arrays of shape ``(Nr, Nb)`` in millimetres.
        """
        if "beam_xz" not in self._maps:
            rows, beams = self.beam_shape
            depth = (np.arange(rows, dtype=np.float64) + 0.5) * self.sample_spacing
            if self.kind == "sector":
                theta = (np.arange(beams) + 0.5) * self.beam_step - math.radians(self.half_angle_deg)
                x = depth[:, None] * np.sin(theta)[None, :]
                z = depth[:, None] * np.cos(theta)[None, :]
            else:
                lateral = (np.arange(beams) + 0.5) * self.beam_step - self.half_width_mm
                x, z = np.broadcast_to(lateral[None, :], (rows, beams)), np.broadcast_to(depth[:, None], (rows, beams))
            self._maps["beam_xz"] = (np.ascontiguousarray(x, np.float32), np.ascontiguousarray(z, np.float32))
        return self._maps["beam_xz"]

    def beam_depth(self) -> np.ndarray:
        """Range (distance along the beam) of each depth sample in millimetres, shape ``(Nr,)``."""
        return ((np.arange(self.beam_shape[0]) + 0.5) * self.sample_spacing).astype(np.float32)

    def pixel_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical position of every output pixel centre.

        Returns:
            ``(x, z)`` float32 arrays of shape ``(H, W)`` in millimetres.
        """
        if "pixel_xz" not in self._maps:
            height, width = self.image_size
            s = self.pixel_spacing
            x = (np.arange(width) + 0.5) * s - self.half_width_mm
            z = (np.arange(height) + 0.5) * s
            xx, zz = np.meshgrid(x.astype(np.float32), z.astype(np.float32))
            self._maps["pixel_xz"] = (xx, zz)
        return self._maps["pixel_xz"]

    def to_pixels(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Physical millimetres to continuous pixel coordinates ``(column, row)`` (pixel centres are integers)."""
        s = self.pixel_spacing
        return (np.asarray(x) + self.half_width_mm) / s - 0.5, np.asarray(z) / s - 0.5

    # --------------------------------------------------------- scan conversion
    def scan_conversion_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps from output pixels to continuous beam-grid indices ``(beam, sample)``.

        Returns:
            ``(map_beam, map_sample)`` float32 arrays of shape ``(H, W)``; pixels outside the field of view map to -10.
        """
        if "remap" not in self._maps:
            x, z = self.pixel_coordinates()
            if self.kind == "sector":
                radius = np.sqrt(x.astype(np.float64) ** 2 + z.astype(np.float64) ** 2)
                theta = np.arctan2(x, z)
                beam = (theta + math.radians(self.half_angle_deg)) / self.beam_step - 0.5
            else:
                radius = z.astype(np.float64)
                beam = (x + self.half_width_mm) / self.beam_step - 0.5
            sample = radius / self.sample_spacing - 0.5
            inside = self.sector_mask.astype(bool)
            map_beam = np.where(inside, beam, -10.0).astype(np.float32)
            map_sample = np.where(inside, sample, -10.0).astype(np.float32)
            self._maps["remap"] = (map_beam, map_sample)
        return self._maps["remap"]

    @property
    def sector_mask(self) -> np.ndarray:
        """``(H, W)`` uint8 field-of-view mask: 1 where the probe images, 0 outside the sector."""
        if "sector" not in self._maps:
            x, z = self.pixel_coordinates()
            if self.kind == "sector":
                radius = np.sqrt(x.astype(np.float64) ** 2 + z.astype(np.float64) ** 2)
                theta = np.abs(np.arctan2(x, z))
                mask = (radius <= self.depth_mm) & (theta <= math.radians(self.half_angle_deg))
            else:
                mask = np.ones(self.image_size, dtype=bool)
            self._maps["sector"] = mask.astype(np.uint8)
        return self._maps["sector"]
