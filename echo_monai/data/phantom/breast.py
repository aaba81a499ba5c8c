"""Breast phantom: linear-probe B-mode images and probe-motion videos with benign, malignant or no lesion.

Anatomy (top to bottom, wavy interfaces): skin, subcutaneous fat, fibroglandular tissue, retromammary fat, pectoral
muscle. Lesions follow the BI-RADS descriptors that separate the classes:

* benign: oval, wider than tall, circumscribed margin, hypoechoic, low attenuation -> posterior enhancement;
* malignant: irregular (random harmonics) and spiculated margin, taller than wide, hypoechoic with an echogenic
  halo, high attenuation -> posterior acoustic shadowing.

Probe motion (``"sweep"``: sliding along the skin, ``"tilt"``: rocking about the contact point, ``"compression"``:
pressing into the tissue) is an analytic inverse map from the current to the reference position, so speckle stays
coherent and the lesion mask of every frame is the reference lesion carried by the motion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from echo_monai.data.phantom.bmode import BModeSimulator
from echo_monai.data.phantom.geometry import ProbeGeometry

__all__ = ["LESION_CLASSES", "MOTIONS", "BreastParameters", "BreastPhantom", "BreastSequence"]

LESION_CLASSES = ("benign", "malignant", "normal")
MOTIONS = ("sweep", "tilt", "compression", "none")


@dataclass(frozen=True)
class BreastParameters:
    """One simulated breast scan.

    Args:
        label: ``"benign"``, ``"malignant"`` or ``"normal"`` (no lesion).
        depth_mm: imaging depth.
        layers_mm: depths of the skin/fat, fat/gland, gland/retromammary-fat and fat/muscle interfaces.
        lesions: per lesion ``(x_mm, z_mm, half_width_mm, half_height_mm)``.
        harmonics: per lesion ``(K, 2)`` margin harmonics ``(amplitude, phase)`` for orders 2..K+1.
        spicules: per lesion ``(S, 2)`` spicules ``(angle, length as a fraction of the radius)``.
        lesion_echo: lesion RMS scatterer amplitude (tissue: about 0.5-1).
        lesion_attenuation: dB/cm/MHz inside lesions (tissue 0.6): below for enhancement, above for shadowing.
        motion: ``"sweep"``, ``"tilt"``, ``"compression"`` or ``"none"``.
        motion_amplitude: sweep distance (mm), tilt angle (degrees) or peak compressive strain.
        center_frequency_mhz, gain_db, dynamic_range_db, noise_db: acquisition settings.
    """

    label: str = "benign"
    depth_mm: float = 40.0
    layers_mm: tuple[float, float, float, float] = (1.8, 9.0, 26.0, 32.0)
    lesions: tuple[tuple[float, float, float, float], ...] = ((0.0, 17.0, 7.0, 4.5),)
    harmonics: tuple = ()
    spicules: tuple = ()
    lesion_echo: float = 0.12
    lesion_attenuation: float = 0.2
    motion: str = "sweep"
    motion_amplitude: float = 8.0
    center_frequency_mhz: float = 9.0
    gain_db: float = 0.0
    dynamic_range_db: float = 55.0
    noise_db: float = -75.0

    def __post_init__(self) -> None:
        if self.label not in LESION_CLASSES:
            raise ValueError(f"BreastParameters: label must be one of {LESION_CLASSES}, got {self.label!r}.")
        if self.motion not in MOTIONS:
            raise ValueError(f"BreastParameters: motion must be one of {MOTIONS}, got {self.motion!r}.")
        if self.label == "normal" and self.lesions:
            raise ValueError(f"BreastParameters: a 'normal' scan has no lesions, got {len(self.lesions)}.")
        if self.label != "normal" and not self.lesions:
            raise ValueError(f"BreastParameters: a {self.label!r} scan needs at least one lesion, got none.")

    @classmethod
    def sample(
        cls, rng: np.random.Generator, label: str = "benign", n_lesions: int = 1, **overrides
    ) -> BreastParameters:
        """Draw a plausible scan of the given class (per-subject anatomy, lesion, probe motion and settings)."""
        if label not in LESION_CLASSES:
            raise ValueError(f"BreastParameters.sample: label must be one of {LESION_CLASSES}, got {label!r}.")
        depth = float(rng.uniform(32.0, 50.0))
        skin = rng.uniform(1.4, 2.4)
        fat = skin + rng.uniform(0.12, 0.25) * depth
        gland = fat + rng.uniform(0.3, 0.45) * depth
        muscle = gland + rng.uniform(0.08, 0.15) * depth
        lesions, harmonics, spicules = [], [], []
        for index in range(0 if label == "normal" else n_lesions):
            size = rng.uniform(3.5, 8.0) * (0.6 if index else 1.0)
            if label == "benign":
                half_w, half_h = size, size / rng.uniform(1.3, 1.9)
                harmonics.append(
                    tuple((float(rng.uniform(0.0, 0.04)), float(rng.uniform(0, 2 * np.pi))) for _ in range(3))
                )
                spicules.append(())
            else:
                half_w, half_h = size, size * rng.uniform(1.1, 1.5)
                harmonics.append(
                    tuple((float(rng.uniform(0.05, 0.16)), float(rng.uniform(0, 2 * np.pi))) for _ in range(6))
                )
                spicules.append(
                    tuple(
                        (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.15, 0.45)))
                        for _ in range(int(rng.integers(4, 11)))
                    )
                )
            x = rng.uniform(-0.25, 0.25) * depth + (index * 0.5 * depth * (1 if rng.random() < 0.5 else -1))
            z = float(np.clip(rng.uniform(fat + half_h + 1.0, gland), fat + half_h, depth - 1.6 * half_h))
            lesions.append((float(x), z, float(half_w), float(half_h)))
        motion = str(rng.choice(["sweep", "tilt", "compression"]))
        amplitude = {
            "sweep": rng.uniform(4.0, 10.0),
            "tilt": rng.uniform(4.0, 10.0),
            "compression": rng.uniform(0.06, 0.15),
        }
        values = {
            "label": label,
            "depth_mm": depth,
            "layers_mm": (float(skin), float(fat), float(gland), float(muscle)),
            "lesions": tuple(lesions),
            "harmonics": tuple(harmonics),
            "spicules": tuple(spicules),
            "lesion_echo": float(rng.uniform(0.06, 0.2)),
            "lesion_attenuation": float(rng.uniform(0.05, 0.3) if label == "benign" else rng.uniform(1.6, 3.0)),
            "motion": motion,
            "motion_amplitude": float(amplitude[motion]),
            "center_frequency_mhz": float(rng.uniform(7.0, 12.0)),
            "gain_db": float(rng.uniform(-4.0, 4.0)),
            "dynamic_range_db": float(rng.uniform(50.0, 62.0)),
            "noise_db": float(rng.uniform(-85.0, -72.0)),
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BreastSequence:
    """A simulated breast video (one frame for a still image).

    Attributes:
        frames: ``(T, H, W)`` uint8 B-mode frames.
        masks: ``(T, H, W)`` uint8 lesion instance map: 0 background, ``k`` for lesion ``k`` (1-based).
        boxes: ``(T, 4)`` float32 ``[x, y, w, h]`` pixel box of lesion 1 (zeros when absent).
        parameters: the scan.
        pixel_spacing_mm: square pixel size.
    """

    frames: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    parameters: BreastParameters
    pixel_spacing_mm: float
    metadata: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.parameters.label


class BreastPhantom:
    """Simulate breast ultrasound images and probe-motion videos of one subject.

    Args:
        parameters: the scan (see :meth:`BreastParameters.sample`).
        image_size: output ``(H, W)``.
        seed: seed of the subject's scatterers and noise.

    Example:
        >>> phantom = BreastPhantom(BreastParameters.sample(np.random.default_rng(0), "malignant"), (64, 80), seed=0)
        >>> video = phantom.simulate(8)
        >>> video.frames.shape, video.boxes.shape
        ((8, 64, 80), (8, 4))
    """

    def __init__(self, parameters: BreastParameters, image_size: tuple[int, int] = (128, 160), seed: int = 0) -> None:
        if len(image_size) != 2 or min(image_size) < 16:
            raise ValueError(f"BreastPhantom: image_size must be (H, W) with H, W >= 16, got {image_size}.")
        self.parameters = parameters
        self.geometry = ProbeGeometry(tuple(image_size), parameters.depth_mm, "linear")
        self.simulator = BModeSimulator(
            self.geometry,
            center_frequency_mhz=parameters.center_frequency_mhz,
            gain_db=parameters.gain_db,
            dynamic_range_db=parameters.dynamic_range_db,
            noise_db=parameters.noise_db,
            tgc_compensation=1.0,
            focus_depth_mm=0.5 * parameters.depth_mm,
        )
        self.seed = seed
        self._spacing = self.geometry.sample_spacing
        half = self.geometry.half_width_mm
        self._origin = (-half - 1.5 * parameters.depth_mm, -0.3 * parameters.depth_mm)
        self._field, self._attenuation = self._build_material(np.random.default_rng([seed, 1]))

    # --------------------------------------------------------------- lesions
    def lesion_index(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Lesion instance (0 none, ``k`` for lesion ``k``) at reference positions ``(x, z)`` in millimetres."""
        params = self.parameters
        index = np.zeros(np.shape(x), np.uint8)
        for k in range(len(params.lesions) - 1, -1, -1):
            cx, cz, half_w, half_h = params.lesions[k]
            u, v = (x - cx) / half_w, (z - cz) / half_h
            rho, phi = np.hypot(u, v), np.arctan2(v, u)
            boundary = np.ones_like(rho)
            for order, (amplitude, phase) in enumerate(params.harmonics[k] if k < len(params.harmonics) else (), 2):
                boundary += amplitude * np.cos(order * phi + phase)
            for angle, length in params.spicules[k] if k < len(params.spicules) else ():
                boundary += length * np.clip(np.cos(phi - angle), 0.0, None) ** 60
            index[rho <= boundary] = k + 1
        return index

    # -------------------------------------------------------------- material
    def _build_material(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        params = self.parameters
        rows = math.ceil(1.6 * params.depth_mm / self._spacing)
        cols = math.ceil((2 * self.geometry.half_width_mm + 3.0 * params.depth_mm) / self._spacing)
        z = (self._origin[1] + (np.arange(rows) + 0.5) * self._spacing)[:, None]
        x = (self._origin[0] + (np.arange(cols) + 0.5) * self._spacing)[None, :]

        def smooth(cells: int, scale: float) -> np.ndarray:
            noise = rng.standard_normal((cells, cells)).astype(np.float32)
            return scale * cv2.resize(noise, (cols, rows), interpolation=cv2.INTER_CUBIC)

        wave = np.sin(2 * np.pi * x / rng.uniform(25.0, 45.0) + rng.uniform(0, 2 * np.pi))
        skin, fat, gland, muscle = params.layers_mm
        depth = np.broadcast_to(z, (rows, cols))
        amplitude = np.full((rows, cols), 0.22, np.float32) * np.exp(smooth(10, 0.25))  # fat
        glandular = (depth > fat + 1.5 * wave) & (depth <= gland + 2.0 * wave)
        amplitude = np.where(glandular, 0.85 * np.exp(smooth(14, 0.45)), amplitude)
        ligaments = (
            (np.abs(np.sin(2 * np.pi * (x + 0.4 * np.abs(depth) ** 1.5) / 14.0)) < 0.06)
            & (depth > skin)
            & (depth <= fat)
        )
        amplitude = np.where(ligaments, 0.9, amplitude)
        striation = 0.55 * (1.0 + 0.5 * np.sin(2 * np.pi * depth / 2.2 + 0.2 * x))
        amplitude = np.where(depth > muscle + wave, striation, amplitude)
        amplitude = np.where(depth <= skin, 1.6, amplitude)
        amplitude = np.where(depth <= 0.3, 0.0, amplitude)  # coupling gel
        attenuation = np.where(depth > muscle + wave, 1.0, 0.6).astype(np.float32)
        lesion = self.lesion_index(np.broadcast_to(x, (rows, cols)), depth)
        if np.any(lesion):
            halo = cv2.dilate((lesion > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > (lesion > 0)
            echo = params.lesion_echo * np.exp(smooth(20, 0.5 if params.label == "malignant" else 0.15))
            amplitude = np.where(lesion > 0, echo, amplitude)
            if params.label == "malignant":
                amplitude = np.where(halo, 1.1, amplitude)
            attenuation = np.where(lesion > 0, params.lesion_attenuation, attenuation).astype(np.float32)
        scatterers = rng.standard_normal((rows, cols, 2), dtype=np.float32) * np.float32(math.sqrt(0.5))
        return scatterers * amplitude.astype(np.float32)[:, :, None], attenuation

    # ---------------------------------------------------------------- motion
    def _inverse_map(self, x: np.ndarray, z: np.ndarray, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference position of the tissue now at ``(x, z)`` when the motion is at ``progress`` in ``[0, 1]``."""
        params = self.parameters
        amount = params.motion_amplitude
        if params.motion == "sweep":
            return x + amount * (progress - 0.5), z
        if params.motion == "tilt":
            angle = math.radians(amount) * math.sin(2.0 * math.pi * progress)
            cos, sin = math.cos(angle), math.sin(angle)
            return cos * x + sin * z, -sin * x + cos * z
        if params.motion == "compression":
            strain = amount * math.sin(math.pi * progress) ** 2
            return x * (1.0 - 0.5 * strain), z / (1.0 - strain)
        return x, z

    def render(self, progress: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One frame and its lesion instance map at motion ``progress`` in ``[0, 1]``; both ``(H, W)`` uint8."""
        bx, bz = self.geometry.beam_coordinates()
        x0, z0 = self._inverse_map(bx, bz, progress)
        scale = 1.0 / self._spacing
        columns = ((x0 - self._origin[0]) * scale - 0.5).astype(np.float32)
        rows = ((z0 - self._origin[1]) * scale - 0.5).astype(np.float32)
        scatterers = self.simulator.sample_tissue(self._field, columns, rows, (bz - z0).astype(np.float32))
        attenuation = cv2.remap(self._attenuation, columns, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        image = self.simulator.render(scatterers, attenuation, rng)
        px, pz = self.geometry.pixel_coordinates()
        return image, self.lesion_index(*self._inverse_map(px, pz, progress))

    @staticmethod
    def bounding_box(mask: np.ndarray) -> np.ndarray:
        """``[x, y, w, h]`` pixel box (COCO convention) of a binary mask; zeros when empty."""
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return np.zeros(4, np.float32)
        return np.array([cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1], np.float32)

    def simulate(self, n_frames: int = 1) -> BreastSequence:
        """Render a probe-motion video (``n_frames == 1``: a still image at the reference position).

        Returns:
            The frames, lesion instance maps and per-frame boxes of lesion 1.
        """
        if n_frames < 1:
            raise ValueError(f"BreastPhantom.simulate: n_frames must be >= 1, got {n_frames}.")
        rng = np.random.default_rng([self.seed, 2])
        height, width = self.geometry.image_size
        frames = np.empty((n_frames, height, width), np.uint8)
        masks = np.empty((n_frames, height, width), np.uint8)
        for index in range(n_frames):
            progress = index / (n_frames - 1) if n_frames > 1 else 0.5 if self.parameters.motion == "sweep" else 0.0
            frames[index], masks[index] = self.render(progress, rng)
        boxes = np.stack([self.bounding_box(mask == 1) for mask in masks])
        return BreastSequence(frames, masks, boxes, self.parameters, self.geometry.pixel_spacing)
