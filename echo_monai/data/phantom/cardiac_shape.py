"""Parametric heart for the cardiac phantom: subject parameters, cardiac cycle, chamber shapes and tissue motion.

Apical views (``"4CH"``, ``"2CH"``) are described in an LV frame with its origin at the endocardial apex: ``a`` along
the long axis towards the mitral annulus, ``l`` across it (positive to the image right). At time ``t``:

* LV cavity: ``((a - c) / A)^2 + (l / R)^2 <= 1`` and ``0 <= a <= L`` with ``A = c = taper * L``: a prolate
  ellipsoid truncated at the mitral plane. Rotating it about the axis gives the 3-D cavity, whose volume is
  ``V = pi * R^2 * L * k_g`` with ``k_g = 1 - ((1 - taper)^3 + taper^3) / (3 taper^2)``; ``R`` and ``L`` are solved
  from the prescribed ``V(t)`` and the aspect ratio ``L / R``, so EDV, ESV and EF are exact by construction and the
  method of discs on the rendered mask recovers them.
* Myocardium: the ellipse with semi-axes ``(A + w, R + w)`` about the same centre, minus the cavity, ``a <= L``.
* Left atrium: an ellipse beyond the mitral plane (``a > L``), filling as the ventricle empties.

The parasternal short axis (``"PSAX"``) is a disc of radius ``R_mid(t)`` in a ring of thickness ``w(t)``.

Tissue moves by an analytic inverse map (current position -> reference position at end-diastole): piecewise linear
between the moving endocardial and epicardial borders and fading out with distance from the heart, so scatterers
move with the tissue and the labels at ``t`` are exactly the reference labels carried by the map.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["VIEWS", "CardiacParameters", "ChamberShape"]

VIEWS = ("4CH", "2CH", "PSAX")


@dataclass(frozen=True)
class ChamberShape:
    """Chamber dimensions at one instant (millimetres)."""

    length: float  # L, endocardial apex to mitral plane
    radius: float  # R, widest cavity half-width
    wall: float  # w, myocardial thickness
    taper: float  # c / L
    atrium_centre: float  # a of the LA centre
    atrium_length: float  # LA semi-axis along the long axis
    atrium_width: float  # LA semi-axis across

    @property
    def centre(self) -> float:
        return self.taper * self.length

    def inner_half_width(self, a: np.ndarray) -> np.ndarray:
        """Cavity half-width at axial position ``a`` (0 outside ``[0, L]``)."""
        semi = self.centre
        value = self.radius * np.sqrt(np.clip(1.0 - ((a - semi) / semi) ** 2, 0.0, None))
        return np.where((a >= 0) & (a <= self.length), value, 0.0)

    def outer_half_width(self, a: np.ndarray) -> np.ndarray:
        """Epicardial half-width at axial position ``a`` (0 beyond the apex cap or the mitral plane)."""
        semi = self.centre + self.wall
        value = (self.radius + self.wall) * np.sqrt(np.clip(1.0 - ((a - self.centre) / semi) ** 2, 0.0, None))
        return np.where(a <= self.length, value, 0.0)


@dataclass(frozen=True)
class CardiacParameters:
    """One simulated subject: prescribed volumes, timing, anatomy, pose and acquisition settings.

    Args:
        view: ``"4CH"``, ``"2CH"`` or ``"PSAX"``.
        edv_ml: end-diastolic LV volume.
        esv_ml: end-systolic LV volume, ``0 < esv_ml < edv_ml``.
        heart_rate_bpm: heart rate.
        fps: frame rate.
        depth_mm: imaging depth.
        half_angle_deg: sector half-angle.
        apex_depth_mm: depth of the endocardial apex (PSAX: of the LV centre).
        apex_lateral_mm: lateral position of the apex (PSAX: of the LV centre).
        tilt_deg: long-axis tilt from vertical (positive: mitral plane to the image right).
        aspect_ed: ``L / R`` at end-diastole.
        aspect_es: ``L / R`` at end-systole.
        taper: LV shape, position of the widest section as a fraction of ``L``, in ``[0.5, 0.8]``.
        wall_ed_mm: myocardial thickness at end-diastole.
        atrium_scale: LA size relative to the LV.
        systole_fraction: systole duration as a fraction of the cycle.
        ed_offset_frames: index of the first end-diastolic frame.
        center_frequency_mhz, gain_db, dynamic_range_db, noise_db, tgc_compensation: acquisition settings.
        myocardium_echo, tissue_echo, blood_echo: RMS scatterer amplitudes.
        wall_dropout: echo lost from the lateral wall, 0 (none) to 1 (the wall's mid segment black): apical views
            insonify the lateral wall nearly along its surface, so real images often lose it (signal dropout).
    """

    view: str = "4CH"
    edv_ml: float = 110.0
    esv_ml: float = 45.0
    heart_rate_bpm: float = 70.0
    fps: float = 50.0
    depth_mm: float = 160.0
    half_angle_deg: float = 38.0
    apex_depth_mm: float = 22.0
    apex_lateral_mm: float = 4.0
    tilt_deg: float = 6.0
    aspect_ed: float = 3.4
    aspect_es: float = 3.9
    taper: float = 0.62
    wall_ed_mm: float = 9.0
    atrium_scale: float = 1.0
    systole_fraction: float = 0.36
    ed_offset_frames: int = 3
    center_frequency_mhz: float = 3.0
    gain_db: float = 0.0
    dynamic_range_db: float = 55.0
    noise_db: float = -72.0
    tgc_compensation: float = 0.95
    myocardium_echo: float = 1.0
    tissue_echo: float = 0.5
    blood_echo: float = 0.007
    wall_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"CardiacParameters: view must be one of {VIEWS}, got {self.view!r}.")
        if not 0 < self.esv_ml < self.edv_ml:
            raise ValueError(
                f"CardiacParameters: expected 0 < esv_ml < edv_ml, got esv_ml={self.esv_ml}, edv_ml={self.edv_ml}."
            )
        if not 0.5 <= self.taper <= 0.8:
            raise ValueError(f"CardiacParameters: taper must be in [0.5, 0.8], got {self.taper}.")
        if self.heart_rate_bpm <= 0 or self.fps <= 0:
            raise ValueError(
                f"CardiacParameters: heart_rate_bpm and fps must be > 0, got {self.heart_rate_bpm}, {self.fps}."
            )
        if not 0.0 <= self.wall_dropout <= 1.0:
            raise ValueError(f"CardiacParameters: wall_dropout must be in [0, 1], got {self.wall_dropout}.")
        if not 0.1 <= self.systole_fraction <= 0.6:
            raise ValueError(f"CardiacParameters: systole_fraction must be in [0.1, 0.6], got {self.systole_fraction}.")

    # ------------------------------------------------------------- sampling
    @classmethod
    def sample(
        cls, rng: np.random.Generator, view: str = "4CH", pediatric: bool = False, **overrides
    ) -> CardiacParameters:
        """Draw a plausible subject (per-subject size, shape, pose, depth, gain and noise).

        Args:
            rng: random generator (seed it per subject for determinism).
            view: ``"4CH"``, ``"2CH"`` or ``"PSAX"``.
            pediatric: draw child-sized hearts, faster rates, shallower depths.
            overrides: fields to fix instead of drawing.
        """
        ef = rng.uniform(25.0, 72.0)
        if pediatric:
            edv = rng.uniform(25.0, 95.0)
            depth, heart_rate = rng.uniform(105.0, 130.0), rng.uniform(75.0, 130.0)
        else:
            edv = rng.uniform(70.0, 190.0)
            depth, heart_rate = rng.uniform(150.0, 175.0), rng.uniform(55.0, 100.0)
        aspect_ed = rng.uniform(3.0, 3.8)
        values = {
            "view": view,
            "edv_ml": float(edv),
            "esv_ml": float(edv * (1.0 - ef / 100.0)),
            "heart_rate_bpm": float(heart_rate),
            "fps": float(rng.choice([30.0, 40.0, 50.0])),
            "depth_mm": float(depth),
            "half_angle_deg": float(rng.uniform(35.0, 42.0)),
            "apex_depth_mm": float(rng.uniform(0.1, 0.18) * depth),
            "apex_lateral_mm": float(rng.uniform(-4.0, 8.0)),
            "tilt_deg": float(rng.uniform(-2.0, 12.0)),
            "aspect_ed": float(aspect_ed),
            "aspect_es": float(aspect_ed * rng.uniform(1.08, 1.22)),
            "taper": float(rng.uniform(0.56, 0.7)),
            "wall_ed_mm": float(rng.uniform(0.7, 1.0) * (6.0 if pediatric else 9.0)),
            "atrium_scale": float(rng.uniform(0.85, 1.15)),
            "systole_fraction": float(rng.uniform(0.32, 0.4)),
            "ed_offset_frames": int(rng.integers(0, 6)),
            "center_frequency_mhz": float(rng.uniform(2.5, 3.5) if not pediatric else rng.uniform(4.0, 6.0)),
            "gain_db": float(rng.uniform(-4.0, 4.0)),
            "dynamic_range_db": float(rng.uniform(48.0, 60.0)),
            "noise_db": float(rng.uniform(-80.0, -68.0)),
            "tgc_compensation": float(rng.uniform(0.85, 1.02)),
            "myocardium_echo": float(rng.uniform(0.7, 1.0)),
            "tissue_echo": float(rng.uniform(0.3, 0.5)),
            "blood_echo": float(rng.uniform(0.004, 0.01)),
        }
        if view == "PSAX":
            values["apex_depth_mm"] = float(rng.uniform(0.4, 0.5) * depth)
        values.update(overrides)
        if view != "PSAX" and "depth_mm" not in overrides:
            # deep enough for the whole left atrium, and the apex low enough for the heart to sit inside the sector
            margin = rng.uniform(1.04, 1.15)
            for _ in range(40):
                radius, angle = cls(**values).extent()
                values["depth_mm"] = float(max(values["depth_mm"], margin * radius / 0.98))
                if angle <= values["half_angle_deg"] - 2.0:
                    break
                values["apex_depth_mm"] = float(values["apex_depth_mm"] + 0.02 * values["depth_mm"])
                values["apex_lateral_mm"] = float(0.8 * values["apex_lateral_mm"])
        return cls(**values)

    def extent(self) -> tuple[float, float]:
        """Largest range (mm) and largest beam angle (degrees) of the epicardium and LA over the cycle."""
        origin, axis, lateral = self.pose()
        points = []
        for volume in (self.edv_ml, self.esv_ml):
            shape = self.shape(volume)
            a = np.linspace(-shape.wall, shape.length, 64)
            half = shape.outer_half_width(a)
            points += [(a, half), (a, -half)]
            angle = np.linspace(0.0, 2.0 * np.pi, 64)
            points.append(
                (shape.atrium_centre + shape.atrium_length * np.cos(angle), shape.atrium_width * np.sin(angle))
            )
        a = np.concatenate([p[0] for p in points])
        l = np.concatenate([p[1] for p in points])
        x = origin[0] + a * axis[0] + l * lateral[0]
        z = origin[1] + a * axis[1] + l * lateral[1]
        if np.any(z <= 0):
            return float(np.max(np.hypot(x, z))), 90.0
        return float(np.max(np.hypot(x, z))), float(np.max(np.abs(np.degrees(np.arctan2(x, z)))))

    def fits_sector(self, margin_deg: float = 2.0) -> bool:
        """Whether the epicardium and the LA lie inside the imaging sector over the whole cycle (PSAX: always)."""
        if self.view == "PSAX":
            return True
        radius, angle = self.extent()
        return radius <= 0.98 * self.depth_mm + 1e-9 and angle <= self.half_angle_deg - margin_deg + 1e-9

    def to_dict(self) -> dict:
        return asdict(self)

    # ---------------------------------------------------------------- cycle
    @property
    def ejection_fraction(self) -> float:
        """Prescribed EF in percent."""
        return 100.0 * (self.edv_ml - self.esv_ml) / self.edv_ml

    @property
    def phase_step(self) -> float:
        """Cardiac phase advanced per frame (cycles)."""
        return self.heart_rate_bpm / (60.0 * self.fps)

    @property
    def systole_frames(self) -> int:
        """Frames from ED to ES, so that both fall exactly on frames."""
        return max(1, round(self.systole_fraction / self.phase_step))

    def phase(self, frame: np.ndarray | float) -> np.ndarray:
        """Cardiac phase in ``[0, 1)`` of a (fractional) frame index; 0 is end-diastole."""
        return np.mod((np.asarray(frame, np.float64) - self.ed_offset_frames) * self.phase_step, 1.0)

    def volume(self, frame: np.ndarray | float) -> np.ndarray:
        """LV volume (mL) at a frame index: cosine ejection, then rapid filling, diastasis and atrial kick."""
        phi = self.phase(frame)
        systole = self.systole_frames * self.phase_step
        stroke = self.edv_ml - self.esv_ml
        ejecting = self.esv_ml + stroke * 0.5 * (1.0 + np.cos(np.pi * np.clip(phi / systole, 0.0, 1.0)))
        u = np.clip((phi - systole) / max(1.0 - systole, 1e-6), 0.0, 1.0)
        rapid = (1.0 - np.exp(-u / 0.18)) / (1.0 - math.exp(-1.0 / 0.18))
        kick = np.clip((u - 0.7) / 0.3, 0.0, 1.0)
        filling = self.esv_ml + stroke * (0.75 * rapid + 0.25 * kick * kick * (3.0 - 2.0 * kick))
        return np.where(phi <= systole, ejecting, filling)

    # ---------------------------------------------------------------- shape
    @property
    def shape_factor(self) -> float:
        """``k_g``: volume of the truncated ellipsoid over ``pi R^2 L``."""
        t = self.taper
        return 1.0 - ((1.0 - t) ** 3 + t**3) / (3.0 * t * t)

    def volume_fraction(self, volume_ml: float) -> float:
        """Position of a volume between ESV (0) and EDV (1)."""
        return float(np.clip((volume_ml - self.esv_ml) / (self.edv_ml - self.esv_ml), 0.0, 1.0))

    def shape(self, volume_ml: float, scale: float = 1.0) -> ChamberShape:
        """Chamber dimensions for an LV volume: ``R, L`` solved from ``V = pi R^2 L k_g`` and ``L / R``.

        Args:
            volume_ml: LV volume.
            scale: linear factor on ``R`` and ``L`` (the phantom's raster calibration, close to 1).
        """
        fraction = self.volume_fraction(volume_ml)
        aspect = self.aspect_es + (self.aspect_ed - self.aspect_es) * fraction
        radius = scale * (1000.0 * volume_ml / (math.pi * self.shape_factor * aspect)) ** (1.0 / 3.0)
        length = aspect * radius
        radius_ed = (1000.0 * self.edv_ml / (math.pi * self.shape_factor * self.aspect_ed)) ** (1.0 / 3.0)
        wall = self.wall_ed_mm * (radius_ed / radius) ** 0.8
        length_ed = self.aspect_ed * radius_ed
        atrium = self.atrium_scale * (1.0 + 0.18 * (1.0 - fraction))
        atrium_length = 0.27 * length_ed * atrium
        return ChamberShape(
            length=length,
            radius=radius,
            wall=wall,
            taper=self.taper,
            atrium_centre=length + 0.8 * atrium_length,
            atrium_length=atrium_length,
            atrium_width=0.8 * radius_ed * atrium,
        )

    def pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apex (PSAX: centre) position, long-axis unit vector and lateral unit vector, as ``(x, z)`` mm."""
        tilt = math.radians(self.tilt_deg)
        origin = np.array([self.apex_lateral_mm, self.apex_depth_mm])
        axis = np.array([math.sin(tilt), math.cos(tilt)])
        lateral = np.array([math.cos(tilt), -math.sin(tilt)])
        return origin, axis, lateral
