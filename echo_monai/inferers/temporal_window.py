"""Long-clip generation with a video denoiser trained on short clips, by overlapping temporal windows.

EchoNet-Synthetic (Reynaud et al., MICCAI 2024) and EchoFlow (Reynaud et al., 2025) train their latent video
denoisers on fixed-length clips (64 frames) and generate longer videos by running the denoiser on overlapping
windows of the time axis at every sampling step and blending the predictions where windows overlap. Because the
blending happens on the network output, once per step, the sampler stays unchanged: wrap the network and pass the
wrapper wherever the network went.

Notation (per sampling step, ``W`` = ``window``, ``O`` = overlap in frames, ``S = W - O`` = stride)::

    starts   s_k = k * S  for k = 0, 1, ...  while s_k + W <= T;  a last s = T - W if the windows miss the end
    output   f(x)[t] = sum_k w[t - s_k] * f(x[s_k : s_k + W])[t - s_k] / sum_k w[t - s_k]   over windows holding t
    weights  triangular: w[i] = min(1, (i + 1) / (O + 1), (W - i) / (O + 1))   constant: w[i] = 1

With regular strides the triangular weights of two neighbouring windows sum to one across their overlap (a linear
cross-fade), and every weight is at least ``1 / (O + 1) > 0``, so every frame is covered.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data.utils import compute_importance_map
from monai.utils import BlendMode, StrEnum
from torch import nn

__all__ = ["TemporalBlendMode", "TemporalSlidingWindow"]


class TemporalBlendMode(StrEnum):
    """Per-frame weights of a window: ``triangular`` (linear cross-fade across the overlap) or ``constant`` (mean)."""

    TRIANGULAR = "triangular"
    CONSTANT = "constant"


class TemporalSlidingWindow(nn.Module):
    """Run a video denoiser on overlapping windows of the time axis and blend the outputs frame by frame.

    A drop-in for the wrapped network in :class:`echo_monai.inferers.Sampler` and
    :class:`echo_monai.inferers.LatentSampler`: it is called as ``wrapper(x, timesteps, **kwargs)`` with ``x``
    ``(B, C, T, H, W)`` (noisy latent with any reference latents already concatenated on channels and repeated over
    ``T``) and returns the network's ``(B, C_out, T, H, W)``. Every window sees the whole batch and the same
    per-sample keyword arguments (``timesteps`` ``(B,)``, ``context`` ``(B, N, D)``, ``class_labels`` ``(B,)``,
    passed unchanged, never sliced in time). MONAI's ``sliding_window_inference`` is not used because it packs
    windows of different batch items into one predictor call, so per-sample ``timesteps`` and ``context`` would not
    line up with the windows.

    Being an ``nn.Module``, ``.eval()``, ``.to()`` and ``.parameters()`` reach the inner network, and the wrapper's
    ``state_dict`` holds it under ``network.``; load checkpoints into the inner network (``wrapper.network``), the
    one that was trained.

    Args:
        network: the denoiser, ``network(x, timesteps, **kwargs)`` on ``(B, C, T, H, W)``, trained on clips of
            ``window`` frames.
        window: frames per network call (the training clip length, 64 in EchoFlow).
        overlap: overlap of consecutive windows: frames if an ``int`` in ``[0, window)``, or a fraction of
            ``window`` if a ``float`` in ``[0, 1)`` (rounded down to whole frames).
        mode: blending weights, ``"triangular"`` or ``"constant"`` (see :class:`TemporalBlendMode`).

    Example:
        >>> denoiser = TemporalSlidingWindow(video_network, window=64, overlap=16)
        >>> sampler = Sampler(RFlowScheduler(1000, use_discrete_timesteps=False), num_inference_steps=25)
        >>> latents = sampler(torch.randn(1, 4, 192, 28, 28), denoiser, condition=Condition(concat=[frame0_latent]))
    """

    def __init__(
        self, network: nn.Module, window: int, overlap: int | float = 0.5, mode: str = TemporalBlendMode.TRIANGULAR
    ) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"TemporalSlidingWindow: window must be an int >= 1 (frames), got {window!r}.")
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)):
            raise ValueError(
                f"TemporalSlidingWindow: overlap must be an int (frames) or a float (fraction), got {overlap!r}."
            )
        if isinstance(overlap, int):
            if not 0 <= overlap < window:
                raise ValueError(
                    f"TemporalSlidingWindow: overlap in frames must be in [0, window={window}), got {overlap}."
                )
            overlap_frames = overlap
        else:
            if not 0.0 <= overlap < 1.0:
                raise ValueError(
                    f"TemporalSlidingWindow: overlap as a fraction of the window must be in [0, 1), got {overlap}; "
                    "give an int for a number of frames."
                )
            overlap_frames = int(overlap * window)
        if mode not in TemporalBlendMode.__members__.values():
            raise ValueError(
                f"TemporalSlidingWindow: mode must be one of {[m.value for m in TemporalBlendMode]}, got '{mode}'."
            )
        self.network = network
        self.window = window
        self.overlap = overlap_frames
        self.mode = TemporalBlendMode(mode)

    @property
    def stride(self) -> int:
        """Frames between the starts of consecutive windows, ``window - overlap`` (>= 1)."""
        return self.window - self.overlap

    def window_starts(self, num_frames: int) -> list[int]:
        """First frame of each window over a clip of ``num_frames`` frames.

        Starts step by :attr:`stride` from 0; if the last regular window stops before the end, one more window
        ``[num_frames - window, num_frames)`` is added, so every window has exactly ``window`` frames and the last
        ends at ``num_frames``. A clip no longer than the window is one window starting at 0.
        """
        if num_frames <= self.window:
            return [0]
        starts = list(range(0, num_frames - self.window + 1, self.stride))
        if starts[-1] + self.window < num_frames:
            starts.append(num_frames - self.window)
        return starts

    def frame_weights(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Blending weight of each frame of a window, ``(window,)``, all positive."""
        if self.mode == TemporalBlendMode.CONSTANT:
            return compute_importance_map((self.window,), mode=BlendMode.CONSTANT, device=device or "cpu")
        # linear ramps over the overlap: 1/(O+1), ..., O/(O+1) in, then 1, then O/(O+1), ..., 1/(O+1) out
        i = torch.arange(self.window, dtype=torch.float32, device=device)
        ramp = float(self.overlap + 1)
        return torch.minimum(torch.minimum((i + 1) / ramp, (self.window - i) / ramp), torch.ones_like(i))

    def coverage(self, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Total blending weight of each frame of a clip of ``num_frames`` frames, ``(T,)``; positive everywhere."""
        weights = self.frame_weights(device)
        total = torch.zeros(max(num_frames, self.window), dtype=weights.dtype, device=weights.device)
        for start in self.window_starts(num_frames):
            total[start : start + self.window] += weights
        return total[:num_frames]

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The network output on ``x`` ``(B, C, T, H, W)``, computed window by window when ``T > window``.

        Args:
            x: network input ``(B, C, T, H, W)``.
            timesteps: diffusion / flow time ``(B,)``, passed to every window unchanged.
            kwargs: other network arguments (``context``, ``class_labels``, ...), passed to every window unchanged.

        Returns:
            ``(B, C_out, T, H, W)``, the frame-wise weighted average of the windows' outputs.

        Raises:
            ValueError: when ``x`` is not 5-D.
        """
        if x.ndim != 5:
            raise ValueError(f"TemporalSlidingWindow: x must be a video (B, C, T, H, W), got shape {tuple(x.shape)}.")
        num_frames = x.shape[2]
        if num_frames <= self.window:
            return self.network(x, timesteps, **kwargs)
        weights = self.frame_weights(x.device)
        output: torch.Tensor | None = None
        total = torch.zeros(num_frames, dtype=torch.float32, device=x.device)
        for start in self.window_starts(num_frames):
            frames = slice(start, start + self.window)
            out = self.network(x[:, :, frames], timesteps, **kwargs)
            if output is None:  # allocated after the first call: the network may change channels, not T, H, W
                output = torch.zeros(
                    (*out.shape[:2], num_frames, *out.shape[3:]), dtype=torch.float32, device=out.device
                )
            output[:, :, frames] += out.float() * weights[:, None, None]
            total[frames] += weights
        assert output is not None  # at least two windows ran
        return (output / total[:, None, None]).to(out.dtype)
