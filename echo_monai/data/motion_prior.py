"""A prior over cached motion features, to generate videos with *new* motion (MCDM's second inference mode).

MCDM (Li, Reynaud, Müller, Kainz, 2025) conditions a latent video model on label-free motion features. To make a
video whose motion no real video had, draw its features from a distribution fitted to the real videos' features:
``bank`` draws one real video's features (a new pairing of motion and appearance, not a new motion); ``gaussian``
draws from a multivariate normal fitted to the flattened features, with the covariance shrunk toward its diagonal
(Ledoit-Wolf-style, ``shrinkage``) so that it stays well conditioned with fewer videos than feature dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["MotionPrior"]


class MotionPrior:
    """Motion tokens ``(N, D)``: drawn from the real videos' cached features, or from a Gaussian fitted to them.

    Args:
        features: the cached features, ``(V, N, D)`` for V videos, or a dataset of items holding ``key``.
        key: the item key of the features when ``features`` is a dataset.
        mode: ``"gaussian"`` or ``"bank"``.
        shrinkage: in [0, 1]: covariance = ``(1 - s) * sample covariance + s * its diagonal``.
        temperature: scale of the Gaussian's deviations from the mean (1: fitted spread).

    Example:
        >>> prior = MotionPrior(train_latents, key="motion", mode="gaussian")
        >>> prior.sample(seed=0).shape      # (N, D)
    """

    MODES = ("gaussian", "bank")

    def __init__(
        self,
        features: torch.Tensor | Sequence[Mapping[str, Any]],
        key: str = "motion",
        mode: str = "gaussian",
        shrinkage: float = 0.5,
        temperature: float = 1.0,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"MotionPrior: mode must be one of {self.MODES}, got {mode!r}.")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"MotionPrior: shrinkage must be in [0, 1], got {shrinkage}.")
        if temperature <= 0:
            raise ValueError(f"MotionPrior: temperature must be > 0, got {temperature}.")
        if not isinstance(features, torch.Tensor):
            if len(features) == 0:
                raise ValueError("MotionPrior: the feature set is empty.")
            missing = [i for i in range(len(features)) if key not in features[i]]
            if missing:
                raise KeyError(f"MotionPrior: items {missing[:5]} have no '{key}' (the motion features).")
            features = torch.stack(
                [torch.as_tensor(features[i][key]).as_subclass(torch.Tensor) for i in range(len(features))]
            )
        bank = features.float()
        if bank.ndim != 3 or bank.shape[0] < 1:
            raise ValueError(f"MotionPrior: features must be (V, N, D) with V >= 1, got {tuple(bank.shape)}.")
        if mode == "gaussian" and bank.shape[0] < 2:
            raise ValueError("MotionPrior: a Gaussian needs the features of at least 2 videos.")
        self.mode, self.bank, self.token_shape = mode, bank, tuple(bank.shape[1:])
        flat = bank.reshape(bank.shape[0], -1).double()
        self.mean = flat.mean(0)
        if mode == "gaussian":
            centred = flat - self.mean
            covariance = centred.T @ centred / (flat.shape[0] - 1)
            covariance = (1 - shrinkage) * covariance + shrinkage * torch.diag(torch.diagonal(covariance))
            covariance = covariance + 1e-6 * torch.eye(covariance.shape[0], dtype=covariance.dtype)
            self.scale_tril = torch.linalg.cholesky(covariance) * float(temperature)

    def sample(self, seed: int) -> torch.Tensor:
        """One motion ``(N, D)`` float32, the same for the same seed."""
        generator = torch.Generator().manual_seed(int(seed))
        if self.mode == "bank":
            index = int(torch.randint(self.bank.shape[0], (1,), generator=generator))
            return self.bank[index].clone()
        noise = torch.randn(self.mean.shape[0], generator=generator, dtype=torch.float64)
        return (self.mean + self.scale_tril @ noise).float().reshape(self.token_shape)
