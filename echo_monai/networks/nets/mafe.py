"""Motion and Appearance Feature Extractor (MAFE) of MCDM: label-free motion features of echo videos.

MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound
Synthesis", 2025) conditions a latent video diffusion model on motion learnt without labels. MAFE learns it by
self-supervised frame interpolation: from two frames ``a`` and ``b`` of a video it predicts the frame halfway between
them. Two encoders share the work:

* the appearance encoder sees one frame and gives an appearance pyramid (what the heart looks like);
* the motion encoder sees the pair ``cat([a, b], 1)`` and gives a motion pyramid (how it moved from a to b).

The decoder rebuilds the middle frame from both frames' appearance pyramids and the motion pyramid; a flow head reads
a dense displacement field from the motion pyramid alone, and a pooled appearance vector is pulled towards a
re-identification embedding. Those two auxiliary losses (:class:`echo_monai.engines.MAFELoss`) keep motion and
appearance apart, so that the pooled motion pyramid (:meth:`MotionAppearanceFeatureExtractor.motion_vector`) carries
motion, not the patient's identity.

Flow convention (shared with :class:`echo_monai.transforms.PseudoFlowd` and OpenCV): ``flow[:, 0]`` is dx and
``flow[:, 1]`` is dy, in pixels, with ``frame_a(x, y) ~ frame_b(x + dx(x, y), y + dy(x, y))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["MotionAppearanceFeatureExtractor"]


def _conv(in_channels: int, out_channels: int, norm_num_groups: int, strides: int = 1) -> Convolution:
    return Convolution(
        2,
        in_channels,
        out_channels,
        strides=strides,
        kernel_size=3,
        act="SWISH",
        norm=("GROUP", {"num_groups": norm_num_groups, "num_channels": out_channels}),
    )


class _PyramidEncoder(nn.Module):
    """Level 0 keeps the size; each following level halves H and W. Returns one feature map per level."""

    def __init__(self, in_channels: int, channels: Sequence[int], norm_num_groups: int) -> None:
        super().__init__()
        levels, previous = [], in_channels
        for i, width in enumerate(channels):
            norm = ("GROUP", {"num_groups": norm_num_groups, "num_channels": width})
            levels.append(
                nn.Sequential(
                    _conv(previous, width, norm_num_groups, strides=1 if i == 0 else 2),
                    ResidualUnit(2, width, width, kernel_size=3, subunits=2, act="SWISH", norm=norm),
                )
            )
            previous = width
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pyramid = []
        for level in self.levels:
            x = level(x)
            pyramid.append(x)
        return pyramid


class _PyramidDecoder(nn.Module):
    """U-Net style decoder: start at the deepest level, upsample, concatenate the next level's skip, convolve."""

    def __init__(self, channels: Sequence[int], out_channels: int, norm_num_groups: int) -> None:
        super().__init__()
        self.up = nn.ModuleList(
            _conv(channels[i + 1] + channels[i], channels[i], norm_num_groups) for i in range(len(channels) - 1)
        )
        self.out = Convolution(2, channels[0], out_channels, kernel_size=3, conv_only=True)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        x = pyramid[-1]
        for i in reversed(range(len(pyramid) - 1)):
            x = F.interpolate(x, size=pyramid[i].shape[-2:], mode="nearest")
            x = self.up[i](torch.cat([x, pyramid[i]], dim=1))
        return self.out(x)


class MotionAppearanceFeatureExtractor(nn.Module):
    """MCDM's MAFE: frame interpolation from an appearance and a motion encoder, with flow and appearance heads.

    ``forward`` takes a frame pair and returns a dict, so that one ``SupervisedTrainer`` call feeds every term of
    :class:`echo_monai.engines.MAFELoss`:

    * ``"middle"``: ``(B, C, H, W)`` the predicted middle frame, in [-1, 1] (``tanh`` output);
    * ``"flow"``: ``(B, 2, H, W)`` displacement (dx, dy) in pixels from frame a to frame b, with
      ``frame_a(x, y) ~ frame_b(x + dx, y + dy)`` (OpenCV's convention, see :class:`echo_monai.transforms.PseudoFlowd`);
    * ``"motion"``: ``(B, motion_dim)`` the motion vector of the pair (:meth:`motion_vector`);
    * ``"appearance"``: ``(B, appearance_dim)`` the unit-norm appearance vector of frame a (:meth:`appearance_vector`).

    Args:
        in_channels: channels C of one frame (1 for grey echo frames).
        channels: channels per level of both encoders; each level after the first halves H and W, so H and W must
            divide by ``2 ** (len(channels) - 1)``.
        motion_dim: size of the motion vector (the conditioning token of the video diffusion model).
        appearance_dim: size of the appearance vector; set it to the re-ID network's ``embedding_dim`` to train
            with the re-identification loss.
        norm_num_groups: groups of the GroupNorm layers (must divide every entry of ``channels``).

    Example:
        >>> net = MotionAppearanceFeatureExtractor(channels=(8, 16), motion_dim=32, appearance_dim=16)
        >>> net.motion_tokens(torch.randn(2, 1, 6, 32, 32), num_tokens=2).shape
        torch.Size([2, 2, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        motion_dim: int = 256,
        appearance_dim: int = 128,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__()
        name = "MotionAppearanceFeatureExtractor"
        if in_channels < 1:
            raise ValueError(f"{name}: in_channels must be >= 1, got {in_channels}.")
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"{name}: channels must list at least one positive channel count, got {channels}.")
        if norm_num_groups < 1 or any(int(c) % norm_num_groups for c in channels):
            raise ValueError(
                f"{name}: norm_num_groups {norm_num_groups} must be >= 1 and divide every channel count "
                f"{list(channels)}."
            )
        if motion_dim < 1:
            raise ValueError(f"{name}: motion_dim must be >= 1, got {motion_dim}.")
        if appearance_dim < 1:
            raise ValueError(f"{name}: appearance_dim must be >= 1, got {appearance_dim}.")
        channels = tuple(int(c) for c in channels)
        self.in_channels, self.channels = int(in_channels), channels
        self.motion_dim, self.appearance_dim = int(motion_dim), int(appearance_dim)

        self.appearance_encoder = _PyramidEncoder(in_channels, channels, norm_num_groups)
        self.motion_encoder = _PyramidEncoder(2 * in_channels, channels, norm_num_groups)
        self.motion_head = nn.Linear(sum(channels), motion_dim)
        self.appearance_head = nn.Linear(sum(channels), appearance_dim)
        self.flow_head = _PyramidDecoder(channels, 2, norm_num_groups)
        # per level: appearance of a, appearance of b and motion -> one skip feature of the frame decoder
        self.fuse = nn.ModuleList(_conv(3 * c, c, norm_num_groups) for c in channels)
        self.frame_decoder = _PyramidDecoder(channels, in_channels, norm_num_groups)

    @property
    def spatial_multiple(self) -> int:
        """H and W of the frames must divide by this number (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.channels) - 1)

    def _check_frames(self, x: torch.Tensor, argument: str, channels: int) -> None:
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(
                f"MotionAppearanceFeatureExtractor: {argument} must be (B, {channels}, H, W), got shape "
                f"{tuple(x.shape)}."
            )
        multiple = self.spatial_multiple
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"MotionAppearanceFeatureExtractor: {argument} has H, W = {tuple(x.shape[-2:])}; both must divide by "
                f"2 ** (levels - 1) = {multiple} for channels {list(self.channels)} (pad or resize the frames)."
            )

    @staticmethod
    def _pool(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        """Global average pool of every level, concatenated: ``(B, sum(channels))``."""
        return torch.cat([level.mean(dim=(-2, -1)) for level in pyramid], dim=1)

    def appearance_pyramid(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """Appearance features of ``frame`` ``(B, C, H, W)``: level i is ``(B, channels[i], H / 2**i, W / 2**i)``."""
        self._check_frames(frame, "frame", self.in_channels)
        return self.appearance_encoder(frame)

    def motion_pyramid(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> list[torch.Tensor]:
        """Motion features of the pair, from ``cat([frame_a, frame_b], 1)``; levels shaped as the appearance ones."""
        self._check_frames(frame_a, "frame_a", self.in_channels)
        self._check_frames(frame_b, "frame_b", self.in_channels)
        if frame_a.shape != frame_b.shape:
            raise ValueError(
                f"MotionAppearanceFeatureExtractor: frame_a {tuple(frame_a.shape)} and frame_b "
                f"{tuple(frame_b.shape)} must have the same shape."
            )
        return self.motion_encoder(torch.cat([frame_a, frame_b], dim=1))

    def appearance_vector(self, frame: torch.Tensor) -> torch.Tensor:
        """Unit-norm appearance vector ``(B, appearance_dim)`` of ``frame`` ``(B, C, H, W)``: every level pooled,
        concatenated, linear, L2-normalised (like :class:`echo_monai.networks.nets.ReIdentificationNet`)."""
        return self._appearance_vector(self.appearance_pyramid(frame))

    def motion_vector(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        """Motion vector ``(B, motion_dim)`` from ``frame_a`` to ``frame_b`` (both ``(B, C, H, W)``): every level of
        the motion pyramid global-average-pooled, concatenated, linear."""
        return self.motion_head(self._pool(self.motion_pyramid(frame_a, frame_b)))

    def _appearance_vector(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.appearance_head(self._pool(pyramid)), dim=1)

    def forward(self, pair: torch.Tensor) -> dict[str, torch.Tensor]:
        """Interpolate the middle frame of ``pair`` ``(B, 2 * C, H, W)`` = ``cat([frame_a, frame_b], 1)``.

        Returns:
            ``{"middle": (B, C, H, W) in [-1, 1], "flow": (B, 2, H, W), "motion": (B, motion_dim),
            "appearance": (B, appearance_dim)}`` (appearance of frame a, unit norm).
        """
        self._check_frames(pair, "pair", 2 * self.in_channels)
        frame_a, frame_b = pair.split(self.in_channels, dim=1)
        motion = self.motion_encoder(pair)
        appearance = self.appearance_encoder(torch.cat([frame_a, frame_b], dim=0))  # one pass for both frames
        appearance_a, appearance_b = zip(*(level.chunk(2, dim=0) for level in appearance), strict=True)
        skips = [
            fuse(torch.cat([a, b, m], dim=1))
            for fuse, a, b, m in zip(self.fuse, appearance_a, appearance_b, motion, strict=True)
        ]
        return {
            "middle": torch.tanh(self.frame_decoder(skips)),
            "flow": self.flow_head(motion),
            "motion": self.motion_head(self._pool(motion)),
            "appearance": self._appearance_vector(appearance_a),
        }

    def motion_tokens(self, video: torch.Tensor, num_tokens: int = 1) -> torch.Tensor:
        """The motion of a clip as conditioning tokens ``(B, num_tokens, motion_dim)``.

        The motion vectors of the pairs (frame 0, frame t) for t = 1 .. T-1 (every displacement from the clip's
        first frame, in one batched pass) are averaged: ``num_tokens=1`` averages all T-1 of them into one token;
        ``num_tokens=N > 1`` splits them, in frame order, into N consecutive groups of (nearly) equal size
        (``torch.tensor_split``: the first ``(T-1) % N`` groups get one extra pair) and averages each group, so that
        token n describes the motion of the n-th part of the clip.

        Args:
            video: ``(B, C, T, H, W)`` with T >= 2 and H, W divisible by ``2 ** (levels - 1)``.
            num_tokens: number of tokens N, in [1, T - 1].
        """
        name = "MotionAppearanceFeatureExtractor.motion_tokens"
        if video.ndim != 5 or video.shape[1] != self.in_channels:
            raise ValueError(f"{name}: video must be (B, {self.in_channels}, T, H, W), got {tuple(video.shape)}.")
        b, c, t, h, w = video.shape
        if t < 2:
            raise ValueError(f"{name}: video has T = {t} frames; at least 2 are needed for one motion pair.")
        if not 1 <= num_tokens <= t - 1:
            raise ValueError(f"{name}: num_tokens must be in [1, T - 1] = [1, {t - 1}] for T = {t}, got {num_tokens}.")
        first = video[:, :, :1].expand(-1, -1, t - 1, -1, -1)
        # (B, C, T-1, H, W) -> (B * (T-1), C, H, W), pair index fastest within each sample
        frame_a = first.permute(0, 2, 1, 3, 4).reshape(b * (t - 1), c, h, w)
        frame_b = video[:, :, 1:].permute(0, 2, 1, 3, 4).reshape(b * (t - 1), c, h, w)
        vectors = self.motion_vector(frame_a, frame_b).reshape(b, t - 1, self.motion_dim)
        return torch.stack([group.mean(dim=1) for group in vectors.tensor_split(num_tokens, dim=1)], dim=1)
