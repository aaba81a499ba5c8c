"""Two motion baselines for an image-to-video generator: a still video and a probe-like affine jitter of the image.

Image animation papers (e.g. LDDM, Chen et al., "Ultrasound Image-to-Video Synthesis via Latent Dynamic Diffusion
Models", MICCAI 2024) report that adding generated videos to real ones helps a video classifier, but not whether a
video with *no* learned dynamics would help as much. These two baselines answer that: built from the same still
images as the synthetic set, they carry the same appearance and labels, and differ only in their motion:

- :func:`still_video`: the image repeated over time (no motion at all);
- :func:`affine_jitter_video`: the image moved by a smooth random rigid-plus-scale motion, like a hand-held probe
  drifting over the lesion (generic motion, no tissue dynamics).

A gain of the generated set over both is then attributable to its learned dynamics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["affine_jitter_video", "jitter_parameters", "still_video"]


def _check_image(image: torch.Tensor, num_frames: int, caller: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{caller}: image must be a (C, H, W) tensor, got {shape}.")
    if int(num_frames) < 1:
        raise ValueError(f"{caller}: num_frames must be >= 1, got {num_frames}.")


def still_video(image: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The image repeated over time: a video without motion.

    Args:
        image: `(C, H, W)`.
        num_frames: `T >= 1`.

    Returns:
        `(C, T, H, W)`, every frame equal to `image` (a copy, not a view).

    Raises:
        ValueError: when `image` is not `(C, H, W)` or `num_frames < 1`.

    Example:
        >>> still_video(torch.zeros(1, 64, 64), 16).shape
        torch.Size([1, 16, 64, 64])
    """
    _check_image(image, num_frames, "still_video")
    return image.unsqueeze(1).repeat(1, int(num_frames), 1, 1)


def jitter_parameters(
    num_frames: int,
    max_translation: float = 0.05,
    max_rotation_deg: float = 5.0,
    max_scale: float = 0.05,
    seed: int = 0,
) -> torch.Tensor:
    """Per-frame motion parameters of :func:`affine_jitter_video`: two low-frequency sinusoids per parameter.

    With ``tau = t / (T - 1)`` in [0, 1], each parameter ``p`` (translations ``dx``, ``dy`` as fractions of the width
    and height, rotation in degrees, relative scale change) follows::

        p(t) = max_p * (a_1 sin(2 pi f_1 tau) + a_2 sin(2 pi f_2 tau)) / 2,  a_i ~ U(-1, 1),
        f_1 ~ U(0.25, 1) and f_2 ~ U(1, 2) cycles per clip,

    so ``|p| <= max_p``, ``p(0) = 0`` (frame 0 is the image itself) and the motion is smooth (a slow drift plus a
    slightly faster sway, no jumps between frames).

    Args:
        num_frames: `T >= 1`.
        max_translation: largest shift, as a fraction of the image size (>= 0).
        max_rotation_deg: largest rotation, in degrees (>= 0).
        max_scale: largest relative zoom in or out (in [0, 1)).
        seed: seeds the amplitudes and frequencies (same seed, same motion).

    Returns:
        `(T, 4)` float64: ``dx``, ``dy`` (fractions), rotation (degrees) and scale change (``1 + s`` is the zoom).

    Raises:
        ValueError: when `num_frames < 1` or a bound is out of range.
    """
    if int(num_frames) < 1:
        raise ValueError(f"jitter_parameters: num_frames must be >= 1, got {num_frames}.")
    for name, value in (("max_translation", max_translation), ("max_rotation_deg", max_rotation_deg)):
        if not value >= 0:
            raise ValueError(f"jitter_parameters: {name} must be >= 0, got {value}.")
    if not 0 <= max_scale < 1:
        raise ValueError(f"jitter_parameters: max_scale must lie in [0, 1), got {max_scale}.")
    generator = torch.Generator().manual_seed(int(seed))
    amplitudes = torch.rand(4, 2, generator=generator, dtype=torch.float64) * 2 - 1
    frequencies = torch.rand(4, 2, generator=generator, dtype=torch.float64)
    frequencies = torch.stack([0.25 + 0.75 * frequencies[:, 0], 1.0 + frequencies[:, 1]], dim=1)
    tau = torch.linspace(0.0, 1.0, int(num_frames), dtype=torch.float64) if num_frames > 1 else torch.zeros(1)
    waves = torch.sin(2 * math.pi * frequencies[None] * tau.double()[:, None, None])  # (T, 4, 2)
    bounds = torch.tensor([max_translation, max_translation, max_rotation_deg, max_scale], dtype=torch.float64)
    return bounds * (amplitudes[None] * waves).sum(dim=2) / 2


def affine_jitter_video(
    image: torch.Tensor,
    num_frames: int,
    max_translation: float = 0.05,
    max_rotation_deg: float = 5.0,
    max_scale: float = 0.05,
    seed: int = 0,
) -> torch.Tensor:
    """The image moved by a smooth random probe-like affine motion (shift, rotation about the centre, zoom).

    The motion is :func:`jitter_parameters`; each frame is resampled from the image with
    ``torch.nn.functional.affine_grid`` / ``grid_sample`` (bilinear, border padding, so no black corners appear).
    Rotations are applied in pixel space, so a non-square image is not sheared. Frame 0 is the image itself.

    Args:
        image: `(C, H, W)`.
        num_frames: `T >= 1`.
        max_translation: largest shift, as a fraction of the image size.
        max_rotation_deg: largest rotation, in degrees.
        max_scale: largest relative zoom in or out.
        seed: seeds the motion (same seed, same video).

    Returns:
        `(C, T, H, W)` in the dtype of `image` (float32 for an integer image).

    Raises:
        ValueError: when `image` is not `(C, H, W)`, `num_frames < 1` or a bound is out of range.

    Example:
        >>> video = affine_jitter_video(image, 16, max_translation=0.05, seed=3)  # image (1, 64, 64)
        >>> torch.equal(video[:, 0], image)
        True
    """
    _check_image(image, num_frames, "affine_jitter_video")
    params = jitter_parameters(num_frames, max_translation, max_rotation_deg, max_scale, seed)
    dtype = image.dtype if image.is_floating_point() else torch.float32
    height, width = image.shape[-2:]
    dx, dy, angle, scale = params.unbind(dim=1)
    radians = angle * math.pi / 180.0
    # theta maps output to input coordinates; in pixel space the input point is R(angle) / (1 + scale) times the
    # output point plus the shift. Normalised coordinates are (2 / W, 2 / H) times pixel offsets from the centre,
    # so the off-diagonal terms pick up the aspect ratio and a shift of `dx` of the width is 2 dx.
    cos, sin = torch.cos(radians) / (1 + scale), torch.sin(radians) / (1 + scale)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, 2 * dx], dim=1),
            torch.stack([sin * width / height, cos, 2 * dy], dim=1),
        ],
        dim=1,
    )  # (T, 2, 3)
    frames = image.to(dtype).unsqueeze(0).expand(int(num_frames), -1, -1, -1)  # (T, C, H, W)
    grid = F.affine_grid(theta.to(dtype=dtype, device=image.device), list(frames.shape), align_corners=False)
    video = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    video[0] = image.to(dtype)  # identity up to rounding; make frame 0 exactly the image
    return video.transpose(0, 1).contiguous()
