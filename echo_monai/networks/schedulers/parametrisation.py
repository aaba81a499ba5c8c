"""The data prediction ``x_0`` from a DDPM network's output, for every ``prediction_type`` MONAI's schedulers know."""

from __future__ import annotations

import torch

__all__ = ["data_prediction"]


def data_prediction(output: torch.Tensor, sample: torch.Tensor, alpha, sigma, prediction_type: str) -> torch.Tensor:
    """``x_0`` at ``x_t = alpha x_0 + sigma eps`` from ``output``: eps (``"epsilon"``), v = alpha eps - sigma x_0
    (``"v_prediction"``) or x_0 itself (``"sample"``); ``alpha``, ``sigma`` are numbers or broadcastable tensors."""
    if prediction_type == "epsilon":
        return (sample - sigma * output) / alpha
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * output
    return output
