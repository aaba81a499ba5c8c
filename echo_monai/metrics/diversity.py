"""Diversity of a synthetic set: mean pairwise MS-SSIM of images and mean pairwise feature distance.

Multi-scale SSIM: Wang, Simoncelli and Bovik, "Multiscale structural similarity for image quality assessment", 2003;
used as a diversity score (lower mean pairwise MS-SSIM = more diverse) by Odena et al., ICML 2017.

MONAI's :class:`monai.metrics.MultiScaleSSIMMetric` defaults (5 scales, 11-px kernel) need images larger than 160 px;
:func:`ms_ssim_settings` picks the largest number of scales (<= 5) that fits the image for a given kernel, and
renormalises the standard scale weights, so 112-px echo frames get 5 scales with a 7-px kernel and 32-px test frames 3.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric

from echo_monai.metrics._utils import ArrayLike, as_float64_features

__all__ = ["ms_ssim_diversity", "feature_diversity", "ms_ssim_settings", "STANDARD_MS_SSIM_WEIGHTS"]

STANDARD_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_settings(min_side: int, kernel_size: int = 7, max_scales: int = 5) -> tuple[float, ...]:
    """Scale weights for MS-SSIM on images whose smaller spatial side is `min_side`.

    Args:
        min_side: the smallest spatial side of the images, in pixels.
        kernel_size: Gaussian window size (odd, >= 3).
        max_scales: upper bound on the number of scales (1..5).

    Returns:
        the renormalised leading entries of the standard weights, one per scale.

    Raises:
        ValueError: when `kernel_size` or `max_scales` is out of range, or even one scale does not fit.
    """
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"ms_ssim_settings: kernel_size must be an odd integer >= 3, got {kernel_size}.")
    if not 1 <= max_scales <= len(STANDARD_MS_SSIM_WEIGHTS):
        raise ValueError(f"ms_ssim_settings: max_scales must lie in 1..5, got {max_scales}.")
    for scales in range(max_scales, 0, -1):
        monai_divisor = max(1, scales - 1) ** 2  # MONAI's own size check
        coarsest = min_side // 2 ** (scales - 1)  # the window must fit the coarsest scale
        if min_side // monai_divisor > kernel_size - 1 and coarsest >= kernel_size:
            weights = np.asarray(STANDARD_MS_SSIM_WEIGHTS[:scales])
            return tuple(float(w) for w in weights / weights.sum())
    raise ValueError(
        f"ms_ssim_settings: images of side {min_side} px are too small for kernel_size {kernel_size}; "
        f"expected a side of at least {kernel_size}."
    )


def _pair_indices(num: int, max_pairs: int | None, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` when there are at most `max_pairs` of them, otherwise a random sample of distinct pairs."""
    total = num * (num - 1) // 2
    if max_pairs is None or total <= max_pairs:
        first, second = np.triu_indices(num, k=1)
        return first, second
    rng = np.random.default_rng(seed)
    first = rng.integers(0, num, size=max_pairs)
    offset = rng.integers(1, num, size=max_pairs)
    return first, (first + offset) % num


def ms_ssim_diversity(
    images: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    kernel_size: int = 7,
    kernel_sigma: float = 1.5,
    max_scales: int = 5,
    max_pairs: int | None = 1000,
    batch_size: int = 64,
    seed: int | None = 0,
) -> float:
    """Mean MS-SSIM over pairs of distinct samples (lower = more diverse), via MONAI's MultiScaleSSIMMetric.

    Videos are compared frame by frame (the time axis is folded into the batch).

    Args:
        images: images `(N, C, H, W)` or videos `(N, C, T, H, W)`, `N >= 2`, intensities in `value_range`.
        value_range: intensity range of `images`; rescaled to [0, 1] before MS-SSIM.
        kernel_size: Gaussian window size (7 fits 112 px with 5 scales).
        kernel_sigma: Gaussian window standard deviation.
        max_scales: the most scales to use; fewer are used when the images are small.
        max_pairs: the most pairs to evaluate (random distinct pairs beyond it); None: all pairs.
        batch_size: pairs per MS-SSIM call.
        seed: seed for the pair sample.

    Returns:
        the mean pairwise MS-SSIM in [0, 1].

    Raises:
        ValueError: when `images` is not 4-D/5-D, has fewer than 2 samples, or `value_range` is empty.

    Example:
        >>> x = torch.rand(16, 1, 112, 112) * 2 - 1
        >>> ms_ssim_diversity(x)  # near 0 for independent noise, 1 for identical images
    """
    if images.ndim not in (4, 5):
        raise ValueError(
            f"ms_ssim_diversity: images must be (N, C, H, W) or (N, C, T, H, W), got {tuple(images.shape)}."
        )
    if images.shape[0] < 2:
        raise ValueError(f"ms_ssim_diversity: images needs at least 2 samples, got {images.shape[0]}.")
    low, high = value_range
    if not high > low:
        raise ValueError(f"ms_ssim_diversity: value_range must satisfy high > low, got {value_range}.")
    weights = ms_ssim_settings(min(images.shape[-2:]), kernel_size, max_scales)
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, data_range=1.0, kernel_size=kernel_size, kernel_sigma=kernel_sigma, weights=weights
    )
    scaled = ((images.detach().float() - low) / (high - low)).clamp(0.0, 1.0)
    first, second = _pair_indices(images.shape[0], max_pairs, seed)
    values = []
    for start in range(0, len(first), batch_size):
        a = scaled[torch.as_tensor(first[start : start + batch_size])]
        b = scaled[torch.as_tensor(second[start : start + batch_size])]
        if a.ndim == 5:  # (P, C, T, H, W) -> (P * T, C, H, W)
            a = a.transpose(1, 2).reshape(-1, a.shape[1], *a.shape[-2:])
            b = b.transpose(1, 2).reshape(-1, b.shape[1], *b.shape[-2:])
        values.append(metric(a, b).flatten())
    return float(torch.cat(values).mean())


def feature_diversity(
    features: ArrayLike, metric: str = "euclidean", max_pairs: int | None = 100_000, seed: int | None = 0
) -> float:
    """Mean pairwise distance between the feature vectors of distinct samples (higher = more diverse).

    Args:
        features: `(N, D)`, `N >= 2`.
        metric: ``"euclidean"`` or ``"cosine"`` (1 - cosine similarity).
        max_pairs: the most pairs to evaluate (random distinct pairs beyond it); None: all pairs.
        seed: seed for the pair sample.

    Returns:
        the mean pairwise distance.

    Raises:
        ValueError: for an unknown `metric` or malformed features.

    Example:
        >>> feature_diversity(np.eye(3))  # sqrt(2)
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"feature_diversity: metric must be 'euclidean' or 'cosine', got {metric!r}.")
    array = as_float64_features(features, "features", min_rows=2)
    if metric == "cosine":
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        array = array / np.maximum(norms, 1e-12)
    first, second = _pair_indices(array.shape[0], max_pairs, seed)
    total = 0.0
    for start in range(0, len(first), 65536):
        a, b = array[first[start : start + 65536]], array[second[start : start + 65536]]
        if metric == "euclidean":
            total += float(np.linalg.norm(a - b, axis=1).sum())
        else:
            total += float((1.0 - (a * b).sum(axis=1)).sum())
    return total / len(first)
