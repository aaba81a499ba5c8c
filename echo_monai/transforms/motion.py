"""Motion tokens for motion-conditioned video models (MCDM): from a driving video, or sampled from a prior.

MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound Synthesis",
2025) conditions its latent video model on the motion features of a video, extracted label-free by its motion and
appearance feature extractor (:class:`echo_monai.networks.nets.MotionAppearanceFeatureExtractor`). The same
extraction runs when the latent cache is built (training) and on a driving video (motion transfer); a new motion is
drawn from a prior fitted to the cached features (:class:`echo_monai.data.MotionPrior`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["CheckShaped", "MotionTokensd", "ReferenceFramed", "SampleMotiond"]


class MotionTokensd(MapTransform):
    """The motion tokens ``(N, D)`` of a video ``(C, T, H, W)`` in [-1, 1], from a trained motion extractor.

    Args:
        keys: the video key.
        extractor: anything with ``motion_tokens(video (B, C, T, H, W), num_tokens) -> (B, N, D)`` (the trained
            MAFE, loaded); run without gradients in eval mode on its own device.
        num_tokens: N.
        output_key: where the tokens go.

    Example:
        >>> MotionTokensd("video", mafe, num_tokens=1)({"video": clip})["motion"].shape   # (1, 256)
    """

    def __init__(self, keys: KeysCollection, extractor: Any, num_tokens: int = 1, output_key: str = "motion") -> None:
        super().__init__(keys)
        if int(num_tokens) < 1:
            raise ValueError(f"MotionTokensd: num_tokens must be >= 1, got {num_tokens}.")
        if not callable(getattr(extractor, "motion_tokens", None)):
            raise TypeError(f"MotionTokensd: extractor must have motion_tokens(video, num_tokens), got {extractor!r}.")
        self.extractor, self.num_tokens, self.output_key = extractor, int(num_tokens), output_key

    @torch.no_grad()
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            video = torch.as_tensor(d[key]).as_subclass(torch.Tensor).float()
            if video.ndim != 4:
                raise ValueError(f"MotionTokensd: '{key}' must be a video (C, T, H, W), got {tuple(video.shape)}.")
            device = next(self.extractor.parameters()).device if hasattr(self.extractor, "parameters") else "cpu"
            was_training = getattr(self.extractor, "training", False)
            if hasattr(self.extractor, "eval"):
                self.extractor.eval()
            tokens = self.extractor.motion_tokens(video[None].to(device), self.num_tokens)[0].cpu()
            if was_training:
                self.extractor.train()
            d[self.output_key] = tokens
        return d


class SampleMotiond(MapTransform):
    """Motion tokens drawn from a prior for each item, seeded by the item's ``seed_key`` (a new motion per request).

    Args:
        prior: a :class:`echo_monai.data.MotionPrior` (or anything with ``sample(seed) -> (N, D)``).
        seed_key: the item key of the draw's seed.
        output_key: where the tokens go.

    Example:
        >>> SampleMotiond(prior)({"motion_seed": 3})["motion"].shape   # (N, D)
    """

    def __init__(self, prior: Any, seed_key: str = "motion_seed", output_key: str = "motion") -> None:
        super().__init__(seed_key)
        self.prior, self.seed_key, self.output_key = prior, seed_key, output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.seed_key not in d:
            raise KeyError(f"SampleMotiond: the item has no '{self.seed_key}' (the seed of its motion draw).")
        d[self.output_key] = self.prior.sample(int(d[self.seed_key]))
        return d


class CheckShaped(MapTransform):
    """Refuse an item whose arrays do not have the shapes a network was built for, naming what made them.

    Args:
        keys: item keys.
        shapes: one expected shape per key (``None`` or -1 entries match any size).
        source: what produced the values, named in the error (e.g. "the latent cache's motion features").
        expected_by: what needs these shapes, named in the error (e.g. "the video model's cross_attention_dim").

    Example:
        >>> CheckShaped("motion", [[1, 256]], "the motion feature cache", "the video model")({"motion": m})
    """

    def __init__(
        self,
        keys: KeysCollection,
        shapes: Sequence[Sequence[int | None]],
        source: str = "the data",
        expected_by: str = "the network",
    ) -> None:
        super().__init__(keys)
        if len(shapes) != len(self.keys):
            raise ValueError(f"CheckShaped: give one shape per key ({len(self.keys)}), got {len(shapes)}.")
        self.shapes = [tuple(None if s is None or int(s) < 0 else int(s) for s in shape) for shape in shapes]
        self.source, self.expected_by = source, expected_by

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, shape in zip(self.keys, self.shapes, strict=True):
            actual = tuple(torch.as_tensor(d[key]).shape)
            if len(actual) != len(shape) or any(e is not None and e != a for e, a in zip(shape, actual, strict=False)):
                wanted = tuple("any" if e is None else e for e in shape)
                raise ValueError(
                    f"'{key}' from {self.source} has shape {actual}, but {self.expected_by} expects {wanted}; "
                    "the two were built with different settings (re-run the earlier stage, or set the same sizes)."
                )
        return d


class ReferenceFramed(MapTransform):
    """The reference frame ``(C, H, W)`` of a request: its own image when it names one (prepared by ``transform``),
    else the first frame of its video (``(C, T, H, W)``, already prepared).

    Args:
        keys: the reference key (None or absent: take the video's first frame).
        video_key: the video whose first frame is the default reference.
        transform: prepares a given reference (loads, resizes and scales ``{key: path}``), e.g. ``LoadGreyImaged``,
            ``LetterboxResized`` and ``ScaleIntensityToModelRanged``; None uses the value as is.

    Example:
        >>> ReferenceFramed("reference", "driving")({"reference": None, "driving": clip})["reference"].shape
    """

    def __init__(self, keys: str = "reference", video_key: str = "driving", transform: Any = None) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.video_key, self.transform = video_key, transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if d.get(key) is None:
                if self.video_key not in d:
                    raise KeyError(f"ReferenceFramed: no '{key}' and no '{self.video_key}' to take the first frame of.")
                video = torch.as_tensor(d[self.video_key]).as_subclass(torch.Tensor)
                d[key] = video[:, 0].clone()
            elif self.transform is not None:
                d[key] = self.transform({key: d[key]})[key]
        return d
