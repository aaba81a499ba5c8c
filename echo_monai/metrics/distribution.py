"""One call for every feature-distribution metric of a synthetic set, named after the encoder that made the features.

Fréchet distance (:mod:`.frechet`), kernel distance (:mod:`.kernel`), precision/recall/density/coverage (:mod:`.prdc`)
and mean pairwise feature distance (:mod:`.diversity`). With the standard Inception-v3 / I3D weights the first two are
reported as FID/KID or FVD/KVD; with any other encoder as ``FD_<encoder>`` / ``KD_<encoder>``.
"""

from __future__ import annotations

import torch

from echo_monai.metrics._utils import ArrayLike, as_float64_pair
from echo_monai.metrics.diversity import feature_diversity
from echo_monai.metrics.encoders import FeatureEncoder, metric_name
from echo_monai.metrics.frechet import frechet_distance
from echo_monai.metrics.kernel import kernel_distance
from echo_monai.metrics.prdc import prdc

__all__ = ["distribution_metrics"]


def distribution_metrics(
    real: ArrayLike,
    fake: ArrayLike,
    encoder: FeatureEncoder | None = None,
    encoder_name: str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    k: int = 5,
    batch_size: int = 32,
    seed: int | None = 0,
) -> dict[str, float]:
    """Fréchet and kernel distances, PRDC and feature diversity between real and synthetic samples.

    Args:
        real: real samples `(N, C, H, W)` / `(N, C, T, H, W)` when `encoder` is given, otherwise features `(N, D)`.
        fake: synthetic samples or features, like `real`.
        encoder: encodes the samples and names the metrics; None when `real` and `fake` are features.
        encoder_name: names precomputed features (required when `encoder` is None).
        kid_subsets: KID subsets.
        kid_subset_size: KID rows per subset.
        k: PRDC neighbour rank.
        batch_size: samples per encoder call.
        seed: KID subset and diversity pair seed.

    Returns:
        with ``<e>`` the encoder name: ``FD_<e>`` (or ``FID``/``FVD``), ``KD_<e>`` and ``KD_<e>_std`` (or ``KID``...),
        ``precision_<e>``, ``recall_<e>``, ``density_<e>``, ``coverage_<e>``, ``diversity_<e>`` (mean pairwise
        distance of the synthetic features) and ``diversity_<e>_real`` (the same for the real ones).

    Raises:
        ValueError: when neither `encoder` nor `encoder_name` is given, or the features are malformed.

    Example:
        >>> encoder = evaluator.feature_encoder("view_classifier")
        >>> distribution_metrics(real_images, synthetic_images, encoder)["FD_view_classifier"]
    """
    if encoder is None and not encoder_name:
        raise ValueError("distribution_metrics: pass an encoder, or encoder_name for precomputed (N, D) features.")
    if encoder is not None:
        real = encoder.encode_batched(torch.as_tensor(real), batch_size)
        fake = encoder.encode_batched(torch.as_tensor(fake), batch_size)
        name = encoder.name
        fd_key, kd_key = metric_name("FD", encoder), metric_name("KD", encoder)
    else:
        name = str(encoder_name)
        fd_key, kd_key = f"FD_{name}", f"KD_{name}"
    real_array, fake_array = as_float64_pair(real, fake, min_rows=2)
    kd_mean, kd_std = kernel_distance(real_array, fake_array, kid_subsets, kid_subset_size, seed)
    results = {fd_key: frechet_distance(real_array, fake_array), kd_key: kd_mean, f"{kd_key}_std": kd_std}
    if min(real_array.shape[0], fake_array.shape[0]) > k:
        results.update({f"{key}_{name}": value for key, value in prdc(real_array, fake_array, k).items()})
    results[f"diversity_{name}"] = feature_diversity(fake_array, seed=seed)
    results[f"diversity_{name}_real"] = feature_diversity(real_array, seed=seed)
    return results
