"""Cardiac phantom: apical 4- and 2-chamber and parasternal short-axis B-mode cine loops with exact labels and EF.

Labels follow CAMUS: 0 background, 1 LV cavity, 2 myocardium, 3 left atrium (the sector is returned separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from echo_monai.data.phantom.bmode import BModeSimulator
from echo_monai.data.phantom.cardiac_shape import CardiacParameters, ChamberShape
from echo_monai.data.phantom.discs import disc_diameters
from echo_monai.data.phantom.geometry import ProbeGeometry

__all__ = ["CardiacPhantom", "CardiacSequence"]

_DECAY_MM = 18.0  # distance over which the heart's motion fades into the surrounding tissue
_ATTENUATION = {"tissue": 0.5, "blood": 0.18}  # dB/cm/MHz
_COARSE_MOTION_CELLS = 40_000  # beam grids larger than this (about 150x150 images) interpolate the motion


@dataclass
class CardiacSequence:
    """A simulated cine loop.

    Attributes:
        frames: ``(T, H, W)`` uint8 B-mode frames, 0 outside the sector.
        labels: ``(T, H, W)`` uint8 in {0 background, 1 LV cavity, 2 myocardium, 3 left atrium}.
        sector_mask: ``(H, W)`` uint8, 1 inside the imaging sector.
        volumes_ml: ``(T,)`` prescribed LV volume of each frame.
        ed_frame: index of the first end-diastolic frame (volume exactly ``edv_ml``).
        es_frame: index of the following end-systolic frame (volume exactly ``esv_ml``).
        chords: ``{frame: (21, 4)}`` for ED and ES of apical views: long axis then 20 disc chords
            ``(x1, y1, x2, y2)`` in pixels, as in EchoNet ``VolumeTracings.csv``.
        outlines: ``{frame: (N, 2)}`` cavity outline ``(x, y)`` in pixels for ED and ES.
        parameters: the subject.
        pixel_spacing_mm: square pixel size.
    """

    frames: np.ndarray
    labels: np.ndarray
    sector_mask: np.ndarray
    volumes_ml: np.ndarray
    ed_frame: int
    es_frame: int
    parameters: CardiacParameters
    pixel_spacing_mm: float
    chords: dict[int, np.ndarray] = field(default_factory=dict)
    outlines: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def edv_ml(self) -> float:
        return self.parameters.edv_ml

    @property
    def esv_ml(self) -> float:
        return self.parameters.esv_ml

    @property
    def ejection_fraction(self) -> float:
        return self.parameters.ejection_fraction

    @property
    def fps(self) -> float:
        return self.parameters.fps

    @property
    def view(self) -> str:
        return self.parameters.view


class CardiacPhantom:
    """Simulate echocardiography cine loops of one subject.

    Tissue speckle is coherent over time (a fixed per-subject scatterer field carried by the tissue motion), blood
    speckle is redrawn every frame; see :mod:`echo_monai.data.phantom.cardiac_shape` for the geometry and
    :class:`BModeSimulator` for the image formation.

    Args:
        parameters: the subject (see :meth:`CardiacParameters.sample`).
        image_size: output ``(H, W)``.
        seed: seed of the subject's scatterers and noise (``numpy.random.default_rng``).

    Example:
        >>> phantom = CardiacPhantom(CardiacParameters.sample(np.random.default_rng(0)), (112, 112), seed=0)
        >>> sequence = phantom.simulate(48)  # 48 frames, first ED and ES inside
        >>> sequence.frames.shape, int(sequence.labels.max())
        ((48, 112, 112), 3)
    """

    def __init__(
        self,
        parameters: CardiacParameters,
        image_size: tuple[int, int] = (112, 112),
        seed: int = 0,
    ) -> None:
        if len(image_size) != 2 or min(image_size) < 16:
            raise ValueError(f"CardiacPhantom: image_size must be (H, W) with H, W >= 16, got {image_size}.")
        self.parameters = parameters
        self.geometry = ProbeGeometry(tuple(image_size), parameters.depth_mm, "sector", parameters.half_angle_deg)
        self.simulator = BModeSimulator(
            self.geometry,
            center_frequency_mhz=parameters.center_frequency_mhz,
            gain_db=parameters.gain_db,
            dynamic_range_db=parameters.dynamic_range_db,
            noise_db=parameters.noise_db,
            tgc_compensation=parameters.tgc_compensation,
        )
        self.seed = seed
        self.origin, self.axis, self.lateral = parameters.pose()
        self._calibration = (1.0, 1.0)
        if parameters.view != "PSAX":
            self._calibration = (
                self._calibrate(parameters.esv_ml),
                self._calibrate(parameters.edv_ml),
            )
        self.reference = self.shape(parameters.edv_ml)
        self._material_spacing = self.geometry.sample_spacing
        self._material_origin = np.array([-self.geometry.half_width_mm * 1.15, -0.1 * parameters.depth_mm])
        self._material_field = self._build_material_field(np.random.default_rng([seed, 1]))
        beam_x, beam_z = self.geometry.beam_coordinates()
        self._beam_frame = self._to_frame(beam_x, beam_z)  # LV-frame coordinates of the beam grid
        self._beam_range = np.hypot(beam_x, beam_z)
        # large grids: evaluate the (smooth) tissue motion on every other sample and interpolate it bilinearly
        rows, beams = self.geometry.beam_shape
        self._motion_stride = 2 if rows * beams > _COARSE_MOTION_CELLS else 1
        if self._motion_stride > 1:
            self._coarse_frame = tuple(np.ascontiguousarray(c[::2, ::2]) for c in self._beam_frame)
            self._coarse_maps = np.meshgrid(
                np.arange(beams, dtype=np.float32) / 2.0,
                np.arange(rows, dtype=np.float32) / 2.0,
            )

    # ----------------------------------------------------------- calibration
    def shape(self, volume_ml: float) -> ChamberShape:
        """Chamber shape for an LV volume, with the raster calibration interpolated between ES and ED."""
        low, high = self._calibration
        fraction = self.parameters.volume_fraction(volume_ml)
        return self.parameters.shape(volume_ml, low + (high - low) * fraction)

    def _axis_pixels(self, shape: ChamberShape) -> tuple[np.ndarray, np.ndarray]:
        """Long axis (apex, mitral-plane centre) of a shape as ``(x, y)`` pixels."""
        a = np.array([0.0, shape.length])
        x, y = self.geometry.to_pixels(*self._from_frame(a, np.zeros(2)))
        return np.array([x[0], y[0]]), np.array([x[1], y[1]])

    def _disc_volume(self, shape: ChamberShape, n_discs: int = 20) -> tuple[float, np.ndarray]:
        """Method-of-discs volume (mL) of the rasterised cavity along the true long axis, and the disc diameters."""
        x, z = self.geometry.pixel_coordinates()
        mask = self._chamber_labels(*self._to_frame(x, z), shape) == 1
        start, end = self._axis_pixels(shape)
        diameters = disc_diameters(mask, start, end, n_discs)[:, 0]
        length = float(np.hypot(*(end - start)))
        spacing = self.geometry.pixel_spacing
        return float(np.pi / 4.0 * np.sum(diameters**2) * length / n_discs * spacing**3 / 1000.0), diameters

    def _calibrate(self, volume_ml: float, iterations: int = 8) -> float:
        """Linear scale of the shape whose rasterised mask has a method-of-discs volume equal to ``volume_ml``.

        Point-sampling the continuous cavity onto a coarse pixel grid changes its disc volume by a few percent;
        scaling ``R`` and ``L`` by the returned factor (close to 1) makes the written masks, and the tracings measured
        on them, reproduce the prescribed EDV and ESV, hence the EF.
        """
        scale, best = 1.0, (math.inf, 1.0)
        for _ in range(iterations):
            measured, diameters = self._disc_volume(self.parameters.shape(volume_ml, scale))
            if np.count_nonzero(diameters) < 10:
                return 1.0  # too few pixels to measure
            error = measured / volume_ml - 1.0
            if abs(error) < best[0]:
                best = (abs(error), scale)
            if abs(error) < 5e-4:
                break
            scale *= (1.0 + error) ** (-1.0 / 3.0)
        return best[1]

    # ---------------------------------------------------------- coordinates
    def _to_frame(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (ox, oz), (ux, uz), (vx, vz) = (map(float, vector) for vector in (self.origin, self.axis, self.lateral))
        dx, dz = x - ox, z - oz
        return dx * ux + dz * uz, dx * vx + dz * vz

    def _from_frame(self, a: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (ox, oz), (ux, uz), (vx, vz) = (map(float, vector) for vector in (self.origin, self.axis, self.lateral))
        return ox + a * ux + l * vx, oz + a * uz + l * vz

    # ---------------------------------------------------------------- labels
    def _chamber_labels(self, a: np.ndarray, l: np.ndarray, shape: ChamberShape) -> np.ndarray:
        """Labels of LV-frame points for a chamber shape (CAMUS convention)."""
        labels = np.zeros(a.shape, np.uint8)
        if self.parameters.view == "PSAX":
            radius = np.hypot(a, l)
            inner = self._psax_radius(shape)
            labels[radius <= inner + shape.wall] = 2
            labels[radius <= inner] = 1
            return labels
        c = shape.centre
        outer = ((a - c) / (c + shape.wall)) ** 2 + (l / (shape.radius + shape.wall)) ** 2 <= 1.0
        inner = ((a - c) / c) ** 2 + (l / shape.radius) ** 2 <= 1.0
        below = a <= shape.length
        labels[outer & below] = 2
        labels[inner & below] = 1
        atrium = ((a - shape.atrium_centre) / shape.atrium_length) ** 2 + (l / shape.atrium_width) ** 2 <= 1.0
        labels[atrium & ~below] = 3
        return labels

    @staticmethod
    def _psax_radius(shape: ChamberShape) -> float:
        return 0.92 * shape.radius

    def _right_heart(self, a0: np.ndarray, l0: np.ndarray) -> np.ndarray:
        """Right-heart blood (reference configuration): RV and RA in 4CH, RV crescent in PSAX; none in 2CH."""
        ref, view = self.reference, self.parameters.view
        if view == "2CH":
            return np.zeros(a0.shape, bool)
        if view == "PSAX":
            r = self._psax_radius(ref) + ref.wall
            crescent = ((l0 + 0.25 * r) / (1.7 * r)) ** 2 + ((a0 + 0.85 * r) / (0.85 * r)) ** 2 <= 1.0
            return crescent & (np.hypot(a0, l0) > r + 0.5 * ref.wall)
        half = 0.7 * ref.radius
        centre_l = -(ref.radius + ref.wall + half)
        ventricle = ((a0 - 0.62 * ref.length) / (0.42 * ref.length)) ** 2 + ((l0 - centre_l) / half) ** 2 <= 1.0
        ventricle &= a0 <= ref.length
        atrium = (
            ((a0 - ref.length - 0.8 * 0.25 * ref.length) / (0.25 * ref.length)) ** 2
            + ((l0 - 0.95 * centre_l) / (0.85 * half)) ** 2
            <= 1.0
        ) & (a0 > ref.length + 0.05 * ref.length)
        return ventricle | atrium

    def labels(self, frame: float) -> np.ndarray:
        """``(H, W)`` uint8 label map at a (fractional) frame index, 0 outside the sector."""
        shape = self.shape(float(self.parameters.volume(frame)))
        x, z = self.geometry.pixel_coordinates()
        a, l = self._to_frame(x, z)
        return self._chamber_labels(a, l, shape) * self.geometry.sector_mask

    # ---------------------------------------------------------------- motion
    def _inverse_map(self, a1: np.ndarray, l1: np.ndarray, cur: ChamberShape) -> tuple[np.ndarray, np.ndarray]:
        """Reference (end-diastolic) LV-frame position of the tissue now at ``(a1, l1)``."""
        ref = self.reference
        if self.parameters.view == "PSAX":
            radius = np.hypot(a1, l1)
            ri_t, ro_t = self._psax_radius(cur), self._psax_radius(cur) + cur.wall
            ri_0, ro_0 = self._psax_radius(ref), self._psax_radius(ref) + ref.wall
            mapped = np.where(
                radius <= ri_t,
                radius * (ri_0 / ri_t),
                np.where(
                    radius <= ro_t,
                    ri_0 + (radius - ri_t) * (ro_0 - ri_0) / (ro_t - ri_t),
                    radius + (ro_0 - ro_t) * np.exp(-(radius - ro_t) / _DECAY_MM),
                ),
            )
            scale = mapped / np.maximum(radius, 1e-6)
            return a1 * scale, l1 * scale
        abs_l = np.abs(l1)
        # ventricle: axial scaling about the apex, thickening apical cap, fading with lateral distance
        a_axial = np.where(
            a1 >= 0,
            a1 * (ref.length / cur.length),
            np.where(
                a1 >= -cur.wall,
                a1 * (ref.wall / cur.wall),
                a1 + (cur.wall - ref.wall) * np.exp(np.minimum(a1 + cur.wall, 0.0) / _DECAY_MM),
            ),
        )
        ro_t = cur.outer_half_width(a1)
        ri_t = cur.inner_half_width(a1)
        beyond = np.maximum(abs_l - ro_t, 0.0)
        a_lv = a1 + (a_axial - a1) * np.exp(-beyond / _DECAY_MM)
        ri_0 = ref.inner_half_width(a_lv)
        ro_0 = ref.outer_half_width(a_lv)
        l_abs = np.where(
            abs_l <= ri_t,
            abs_l * ri_0 / np.maximum(ri_t, 1e-6),
            np.where(
                abs_l <= ro_t,
                ri_0 + (abs_l - ri_t) * (ro_0 - ri_0) / np.maximum(ro_t - ri_t, 1e-6),
                abs_l + (ro_0 - ro_t) * np.exp(-beyond / _DECAY_MM),
            ),
        )
        l_lv = np.sign(l1) * l_abs
        # atrium: elliptical scaling about the LA centre, fading outside it
        da = a1 - cur.atrium_centre
        rho = np.sqrt((da / cur.atrium_length) ** 2 + (l1 / cur.atrium_width) ** 2)
        fade = np.exp(-np.maximum(rho - 1.0, 0.0) * cur.atrium_length / _DECAY_MM)
        a_scaled = ref.atrium_centre + da * (ref.atrium_length / cur.atrium_length)
        l_scaled = l1 * (ref.atrium_width / cur.atrium_width)
        a_la = a1 + (a_scaled - a1) * fade
        l_la = l1 + (l_scaled - l1) * fade
        in_atrium = a1 > cur.length
        return np.where(in_atrium, a_la, a_lv), np.where(in_atrium, l_la, l_lv)

    # -------------------------------------------------------------- material
    def _dropout_window(self, a0: np.ndarray, l0: np.ndarray) -> np.ndarray:
        """Smooth weight in [0, 1] on the lateral (image-right, ``l > 0``) wall: 1 over the mid segment
        (``a`` in 35-75 % of the long axis), fading to 0 at the apex and the mitral plane."""
        fraction = a0 / max(self.reference.length, 1e-6)
        along = np.clip(1.0 - np.abs(fraction - 0.55) / 0.3, 0.0, 1.0)
        along = along * along * (3.0 - 2.0 * along)  # smoothstep
        return np.where(l0 > 0, along, 0.0).astype(np.float32)

    def _build_material_field(self, rng: np.random.Generator) -> np.ndarray:
        """``(Hm, Wm, 2)`` complex scatterer field of the subject at end-diastole (blood regions empty)."""
        params = self.parameters
        size = np.ceil(np.array([1.2 * params.depth_mm, 2.3 * self.geometry.half_width_mm]) / self._material_spacing)
        rows, cols = int(size[0]), int(size[1])
        z = self._material_origin[1] + (np.arange(rows) + 0.5) * self._material_spacing
        x = self._material_origin[0] + (np.arange(cols) + 0.5) * self._material_spacing
        xx, zz = np.meshgrid(x, z)
        a0, l0 = self._to_frame(xx, zz)
        labels = self._chamber_labels(a0, l0, self.reference)
        smooth = cv2.resize(
            rng.standard_normal((8, 8)).astype(np.float32),
            (cols, rows),
            interpolation=cv2.INTER_CUBIC,
        )
        amplitude = params.tissue_echo * np.exp(0.35 * smooth)
        myocardium = params.myocardium_echo * np.exp(0.15 * smooth)
        if params.wall_dropout > 0 and params.view != "PSAX":
            myocardium = myocardium * (1.0 - params.wall_dropout * self._dropout_window(a0, l0))
        amplitude = np.where(labels == 2, myocardium, amplitude)
        # bright pericardium just outside the epicardium (apical views) or the ring (PSAX)
        ref = self.reference
        if params.view == "PSAX":
            gap = np.hypot(a0, l0) - (self._psax_radius(ref) + ref.wall)
        else:
            gap = np.sqrt(((a0 - ref.centre) / (ref.centre + ref.wall)) ** 2 + (l0 / (ref.radius + ref.wall)) ** 2)
            gap = (gap - 1.0) * (ref.radius + ref.wall)
        pericardium = (gap > 0) & (gap < 3.0) & ((a0 <= ref.length) | (params.view == "PSAX"))
        amplitude = np.where(pericardium, 2.2 * params.myocardium_echo, amplitude)
        blood = (labels == 1) | (labels == 3) | self._right_heart(a0, l0)
        amplitude = np.where(blood, 0.0, amplitude).astype(np.float32)
        field = rng.standard_normal((rows, cols, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))
        return field * amplitude[:, :, None]

    # ----------------------------------------------------------------- frames
    def render(self, frame: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One B-mode frame and its labels at a (fractional) frame index.

        Returns:
            ``(image, labels)``, both ``(H, W)`` uint8.
        """
        params = self.parameters
        shape = self.shape(float(params.volume(frame)))
        a1, l1 = self._beam_frame
        if self._motion_stride > 1:
            coarse = self._inverse_map(*self._coarse_frame, shape)
            a0, l0 = (
                cv2.remap(
                    c.astype(np.float32),
                    *self._coarse_maps,
                    cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for c in coarse
            )
        else:
            a0, l0 = self._inverse_map(a1, l1, shape)
        x0, z0 = self._from_frame(a0, l0)
        scale, (mx, mz) = (
            1.0 / self._material_spacing,
            map(float, self._material_origin),
        )
        columns = ((x0 - mx) * scale - 0.5).astype(np.float32)
        rows = ((z0 - mz) * scale - 0.5).astype(np.float32)
        shift = self._beam_range - np.hypot(x0, z0)
        scatterers = self.simulator.sample_tissue(self._material_field, columns, rows, shift)
        beam_labels = self._chamber_labels(a1, l1, shape)
        blood = (beam_labels == 1) | (beam_labels == 3) | self._right_heart(a0, l0)
        scatterers[blood] += self.simulator.random_scatterers(rng, params.blood_echo, int(np.count_nonzero(blood)))
        attenuation = np.where(blood, _ATTENUATION["blood"], _ATTENUATION["tissue"]).astype(np.float32)
        image = self.simulator.render(scatterers, attenuation, rng)
        return image, self.labels(frame)

    def disc_chords(self, frame: float, n_discs: int = 20) -> np.ndarray:
        """EchoNet-style tracing of an apical frame: long axis then ``n_discs`` chords, ``(n_discs + 1, 4)`` pixels.

        Row 0 is ``(apex x, apex y, mitral-plane centre x, y)``; row ``i`` is the chord of disc ``i`` (from the apex
        to the base), perpendicular to the axis at the disc centre, left end first. Chord lengths are measured on the
        rasterised cavity mask, so the tracings and the masks give the same method-of-discs volume.
        """
        if self.parameters.view == "PSAX":
            raise ValueError("CardiacPhantom.disc_chords: the method of discs needs an apical view, got 'PSAX'.")
        shape = self.shape(float(self.parameters.volume(frame)))
        start, end = self._axis_pixels(shape)
        _, diameters = self._disc_volume(shape, n_discs)
        direction = (end - start) / np.hypot(*(end - start))
        normal = np.array([direction[1], -direction[0]])  # towards the image left (negative lateral)
        normal *= (
            1.0
            if normal @ np.asarray(self.geometry.to_pixels(*self._from_frame(0.0, -1.0)))
            - normal @ np.asarray(self.geometry.to_pixels(*self._from_frame(0.0, 0.0)))
            > 0
            else -1.0
        )
        centres = start + ((np.arange(n_discs) + 0.5) / n_discs)[:, None] * (end - start)
        left = centres + 0.5 * diameters[:, None] * normal
        right = centres - 0.5 * diameters[:, None] * normal
        chords = np.concatenate([left, right], axis=1)
        return np.concatenate([np.concatenate([start, end])[None], chords], axis=0)

    def cavity_outline(self, frame: float, n_points: int = 41) -> np.ndarray:
        """Closed LV cavity outline ``(n_points, 2)`` ``(x, y)`` in pixels (EchoNet-Pediatric style polygon)."""
        shape = self.shape(float(self.parameters.volume(frame)))
        if self.parameters.view == "PSAX":
            angle = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
            radius = self._psax_radius(shape)
            a, l = radius * np.cos(angle), radius * np.sin(angle)
        else:
            # from the left end of the mitral plane, round the apex, to the right end
            c, length = shape.centre, shape.length
            start = np.arccos(np.clip((c - length) / c, -1.0, 1.0))
            angle = np.linspace(-start, start, n_points)
            a, l = c - c * np.cos(angle), shape.radius * np.sin(angle)
        return np.stack(self.geometry.to_pixels(*self._from_frame(a, l)), axis=1)

    def simulate(self, n_frames: int | None = None) -> CardiacSequence:
        """Render a cine loop.

        Args:
            n_frames: number of frames; ``None``: two cardiac cycles after the first ED frame.

        Returns:
            The sequence with frames, labels, volumes, ED/ES indices and tracings.
        """
        params = self.parameters
        cycle = 1.0 / params.phase_step
        if n_frames is None:
            n_frames = int(np.ceil(params.ed_offset_frames + 2 * cycle))
        es_frame = params.ed_offset_frames + params.systole_frames
        if n_frames <= es_frame:
            raise ValueError(
                f"CardiacPhantom.simulate: n_frames must exceed the first ES frame {es_frame} "
                f"(ED at {params.ed_offset_frames} + {params.systole_frames} systolic frames), got {n_frames}."
            )
        rng = np.random.default_rng([self.seed, 2])
        height, width = self.geometry.image_size
        frames = np.empty((n_frames, height, width), np.uint8)
        labels = np.empty((n_frames, height, width), np.uint8)
        for index in range(n_frames):
            frames[index], labels[index] = self.render(index, rng)
        ed_frame = params.ed_offset_frames
        sequence = CardiacSequence(
            frames=frames,
            labels=labels,
            sector_mask=self.geometry.sector_mask.copy(),
            volumes_ml=params.volume(np.arange(n_frames)).astype(np.float64),
            ed_frame=ed_frame,
            es_frame=es_frame,
            parameters=params,
            pixel_spacing_mm=self.geometry.pixel_spacing,
        )
        for index in (ed_frame, es_frame):
            sequence.outlines[index] = self.cavity_outline(index)
            if params.view != "PSAX":
                sequence.chords[index] = self.disc_chords(index)
        return sequence
