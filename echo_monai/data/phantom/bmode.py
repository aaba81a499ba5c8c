"""Convolution-model B-mode simulator (Bamber & Dickinson 1980; Meunier & Bertrand 1995).

Notation (per frame, on the beam grid of :class:`ProbeGeometry`, ``Nr`` depth samples by ``Nb`` beams):

* ``s``: complex scatterer map, the sum of tissue scatterers (moving with the tissue, sampled from a fixed
  per-subject material field) and blood scatterers (redrawn every frame); stored as ``(Nr, Nb, 2)`` float32 (real,
  imaginary).
* ``h``: the baseband point-spread function, a separable Gaussian: axial width fixed by the pulse length, lateral width
  growing away from the focus (depth-dependent PSF). Its carrier phase is carried by the scatterers
  (``exp(-2ik * range)``), so ``h`` itself is real.
* ``IQ = (s * h) * A + n``: convolution, two-way attenuation ``A(r) = 10^(-2/20 * int_0^r alpha f dr)`` accumulated
  along each beam (so lesions shadow or enhance what lies behind them), and complex electronic noise ``n``.
* ``e = |IQ|``: envelope detection.
* ``b = clip((20 log10 e + TGC(r) + gain - ref) / DR + 1, 0, 1)``: time-gain compensation, gain and log compression
  to a dynamic range ``DR``; then scan conversion to ``(H, W)`` pixels with precomputed ``cv2.remap`` maps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from echo_monai.data.phantom.geometry import ProbeGeometry

__all__ = ["BModeSimulator"]

_SPEED_OF_SOUND_MM_PER_US = 1.54


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D Gaussian with unit L2 norm, so white scatterers keep unit mean power after filtering."""
    if sigma < 0.3:
        return np.ones((1, 1), np.float32)
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / np.sqrt(np.sum(taps**2))).astype(np.float32)[:, None]


class BModeSimulator:
    """Render B-mode frames from complex scatterer maps with a convolution model.

    Reference: J. C. Bamber and R. J. Dickinson, "Ultrasonic B-scanning: a computer simulation", Phys. Med. Biol.
    25(3), 1980; J. Meunier and M. Bertrand, "Ultrasonic texture motion analysis", IEEE TMI 14(2), 1995.

    Args:
        geometry: probe geometry (beam grid and scan conversion).
        center_frequency_mhz: transmit frequency; sets the carrier phase and the attenuation.
        axial_resolution_mm: Gaussian sigma of the pulse envelope; ``None``: 0.6 output pixel (the image is a
            downsampled scan, so speckle stays at the pixel scale).
        lateral_resolution_mm: lateral sigma at the focus; ``None``: 0.9 output pixel.
        focus_depth_mm: transmit focus; ``None``: 45% of the depth.
        tgc_compensation: fraction of the nominal soft-tissue attenuation (0.5 dB/cm/MHz) undone by the TGC.
        gain_db: overall receive gain.
        dynamic_range_db: displayed dynamic range of the log compression.
        noise_db: electronic noise level relative to a unit-amplitude tissue echo.

    Example:
        >>> simulator = BModeSimulator(ProbeGeometry((112, 112), depth_mm=150.0))
        >>> rng = np.random.default_rng(0)
        >>> frame = simulator.render(simulator.random_scatterers(rng), None, rng)
        >>> frame.shape, frame.dtype
        ((112, 112), dtype('uint8'))
    """

    def __init__(
        self,
        geometry: ProbeGeometry,
        center_frequency_mhz: float = 3.0,
        axial_resolution_mm: float | None = None,
        lateral_resolution_mm: float | None = None,
        focus_depth_mm: float | None = None,
        tgc_compensation: float = 1.0,
        gain_db: float = 0.0,
        dynamic_range_db: float = 55.0,
        noise_db: float = -60.0,
    ) -> None:
        if not center_frequency_mhz > 0:
            raise ValueError(f"BModeSimulator: center_frequency_mhz must be > 0, got {center_frequency_mhz}.")
        if not dynamic_range_db > 0:
            raise ValueError(f"BModeSimulator: dynamic_range_db must be > 0, got {dynamic_range_db}.")
        for name, value in (
            ("axial_resolution_mm", axial_resolution_mm),
            ("lateral_resolution_mm", lateral_resolution_mm),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"BModeSimulator: {name} must be > 0 or None, got {value}.")
        self.geometry = geometry
        self.center_frequency_mhz = float(center_frequency_mhz)
        self.gain_db = float(gain_db)
        self.dynamic_range_db = float(dynamic_range_db)
        self.noise_amplitude = float(10.0 ** (noise_db / 20.0))
        pixel = geometry.pixel_spacing
        self.axial_resolution_mm = float(axial_resolution_mm or 0.6 * pixel)
        self.lateral_resolution_mm = float(lateral_resolution_mm or 0.9 * pixel)
        self.focus_depth_mm = float(focus_depth_mm if focus_depth_mm is not None else 0.45 * geometry.depth_mm)
        # effective wavenumber: the true carrier is far finer than the beam grid, so it is capped at 2 samples/cycle
        wavelength = max(_SPEED_OF_SOUND_MM_PER_US / self.center_frequency_mhz, 2.0 * geometry.sample_spacing)
        self.wavenumber = 2.0 * math.pi / wavelength
        depth = geometry.beam_depth().astype(np.float64)
        nominal_db_per_mm = 0.05 * self.center_frequency_mhz  # 0.5 dB/cm/MHz
        self._tgc_db = (2.0 * tgc_compensation * nominal_db_per_mm * depth).astype(np.float32)[:, None]
        headroom_db = 15.0  # a unit-amplitude echo displays 15 dB below white
        self._display_offset = (
            (self._tgc_db + (self.gain_db - headroom_db + self.dynamic_range_db)) / self.dynamic_range_db
        ).astype(np.float32)
        self._axial_kernel = _gaussian_kernel(self.axial_resolution_mm / geometry.sample_spacing)
        self._lateral_kernels, self._lateral_weights = self._lateral_psf(depth)

    # ------------------------------------------------------------------- PSF
    def _lateral_psf(self, depth: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Depth-dependent lateral blur as a per-row blend of three fixed Gaussian blurs.

        Returns:
            kernels (3 row kernels) and ``(3, Nr, 1, 1)`` float32 blend weights.
        """
        geometry = self.geometry
        rayleigh = geometry.depth_mm / 3.0
        width_mm = self.lateral_resolution_mm * np.sqrt(1.0 + ((depth - self.focus_depth_mm) / rayleigh) ** 2)
        step_mm = depth * geometry.beam_step if geometry.kind == "sector" else np.full_like(depth, geometry.beam_step)
        sigma = np.clip(width_mm / step_mm, 0.3, 6.0)
        levels = np.unique(np.round(np.quantile(sigma, [0.0, 0.5, 1.0]), 3))
        weights = np.zeros((len(levels), len(depth)), np.float32)
        if len(levels) == 1:
            weights[0] = 1.0
        else:
            position = np.interp(sigma, levels, np.arange(len(levels)))
            lower = np.clip(np.floor(position).astype(int), 0, len(levels) - 2)
            fraction = position - lower
            weights[lower, np.arange(len(depth))] = 1.0 - fraction
            weights[lower + 1, np.arange(len(depth))] = fraction
        kernels = [_gaussian_kernel(float(s)).T.copy() for s in levels]
        return kernels, weights[:, :, None, None]

    # ------------------------------------------------------------ scatterers
    def random_scatterers(
        self, rng: np.random.Generator, amplitude: np.ndarray | float = 1.0, count: int | None = None
    ) -> np.ndarray:
        """Fresh complex Gaussian scatterers (e.g. blood, redrawn every frame).

        Args:
            rng: random generator.
            amplitude: scalar, or ``(Nr, Nb)`` RMS amplitude when ``count`` is ``None``.
            count: number of scatterers to draw (for a masked assignment); ``None``: the whole beam grid.

        Returns:
            ``(Nr, Nb, 2)`` float32 (real, imaginary), or ``(count, 2)`` when ``count`` is given.
        """
        shape = (*self.geometry.beam_shape, 2) if count is None else (int(count), 2)
        field = rng.standard_normal(shape, dtype=np.float32)
        if np.ndim(amplitude):
            if count is not None:
                raise ValueError("BModeSimulator.random_scatterers: amplitude must be a scalar when count is given.")
            return field * (np.asarray(amplitude, np.float32) * np.float32(math.sqrt(0.5)))[:, :, None]
        field *= np.float32(math.sqrt(0.5) * amplitude)
        return field

    def sample_tissue(
        self,
        material_field: np.ndarray,
        map_columns: np.ndarray,
        map_rows: np.ndarray,
        range_shift_mm: np.ndarray | None = None,
    ) -> np.ndarray:
        """Tissue scatterers at the current frame: the per-subject material field sampled where the tissue came from.

        Args:
            material_field: ``(Hm, Wm, 2)`` float32 complex scatterer field in the reference (material) configuration.
            map_columns: ``(Nr, Nb)`` float32 material-field column of the tissue now at each beam-grid sample.
            map_rows: ``(Nr, Nb)`` float32 material-field row of the same tissue.
            range_shift_mm: ``(Nr, Nb)`` current minus reference range of that tissue; its carrier phase
                ``exp(-2ik * shift)`` decorrelates speckle where the tissue deforms.

        Returns:
            ``(Nr, Nb, 2)`` float32 scatterer map.
        """
        tissue = cv2.remap(material_field, map_columns, map_rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if range_shift_mm is not None:
            phase = (2.0 * self.wavenumber) * range_shift_mm.astype(np.float32)
            cos, sin = np.cos(phase), np.sin(phase)
            real, imag = tissue[..., 0].copy(), tissue[..., 1]
            tissue[..., 0] = real * cos + imag * sin
            tissue[..., 1] = imag * cos - real * sin
        return tissue

    # ----------------------------------------------------------------- frame
    def beamform(self, scatterers: np.ndarray) -> np.ndarray:
        """Convolve a scatterer map with the depth-dependent PSF.

        Args:
            scatterers: ``(Nr, Nb, 2)`` float32.

        Returns:
            ``(Nr, Nb, 2)`` float32 radio-frequency baseband (IQ) map.
        """
        axial = cv2.sepFilter2D(
            scatterers, -1, np.ones((1, 1), np.float32), self._axial_kernel, borderType=cv2.BORDER_REFLECT
        )
        if len(self._lateral_kernels) == 1:
            return cv2.sepFilter2D(axial, -1, self._lateral_kernels[0], np.ones((1, 1), np.float32))
        out = np.zeros_like(axial)
        for kernel, weight in zip(self._lateral_kernels, self._lateral_weights, strict=False):
            out += weight * cv2.sepFilter2D(
                axial, -1, kernel, np.ones((1, 1), np.float32), borderType=cv2.BORDER_REFLECT
            )
        return out

    def render(
        self,
        scatterers: np.ndarray,
        attenuation: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Simulate one B-mode frame.

        Args:
            scatterers: ``(Nr, Nb, 2)`` float32 complex scatterer map (tissue + blood).
            attenuation: ``(Nr, Nb)`` attenuation coefficient in dB/cm/MHz, or ``None`` for 0.5 everywhere.
            rng: random generator for the electronic noise.

        Returns:
            ``(H, W)`` uint8 B-mode image, 0 outside the sector.
        """
        rows, beams = self.geometry.beam_shape
        if scatterers.shape != (rows, beams, 2):
            raise ValueError(
                f"BModeSimulator.render: scatterers must have shape {(rows, beams, 2)}, got {scatterers.shape}."
            )
        iq = self.beamform(scatterers.astype(np.float32, copy=False))
        step_db = np.float32(
            0.1 * self.center_frequency_mhz * self.geometry.sample_spacing
        )  # dB per sample per dB/cm/MHz
        if attenuation is None:
            attenuation = np.full((rows, 1), 0.5, np.float32)
        elif attenuation.shape != (rows, beams):
            raise ValueError(
                f"BModeSimulator.render: attenuation must have shape {(rows, beams)}, got {attenuation.shape}."
            )
        loss_db = (2.0 * step_db) * np.cumsum(attenuation.astype(np.float32, copy=False), axis=0)
        iq *= np.exp(loss_db * np.float32(-np.log(10.0) / 20.0))[..., None]
        iq += rng.standard_normal(iq.shape, dtype=np.float32) * np.float32(self.noise_amplitude * math.sqrt(0.5))
        envelope = cv2.magnitude(iq[..., 0], iq[..., 1])
        np.maximum(envelope, 1e-6, out=envelope)
        # b = (20 log10 e + TGC + gain - headroom + DR) / DR, clipped to [0, 1] (the offset is precomputed)
        display = cv2.log(envelope)
        display *= np.float32(20.0 / math.log(10.0) / self.dynamic_range_db)
        display += self._display_offset
        np.clip(display, 0.0, 1.0, out=display)
        map_beam, map_sample = self.geometry.scan_conversion_maps()
        image = cv2.remap(
            display.astype(np.float32),
            map_beam,
            map_sample,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return (image * 255.0 + 0.5).astype(np.uint8)
