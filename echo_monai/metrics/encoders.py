"""Pluggable feature encoders for distribution, diversity, perceptual and privacy metrics.

Every encoder maps a batch of images `(N, C, H, W)` or videos `(N, C, T, H, W)` in model space ([-1, 1]) to features
`(N, D)`. Nothing is downloaded: the defaults are networks this project trains on the user's own real data (the view /
phase classifier's backbone for images, the EF regressor's backbone for videos, see ``echo_monai.metrics.downstream``),
and the standard Inception-v3 (FID) and I3D (FVD) feature networks are read from TorchScript files the user already has
(``pt_inception-2015-12-05-6726825d.pt`` as used by StyleGAN2-ADA / clean-fid, ``i3d_torchscript.pt`` as used by
StyleGAN-V). Metric names follow :func:`metric_name`: ``FID``/``FVD`` only for those standard weights, otherwise
``FD_<encoder>``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from monai.networks.nets import ResNet
from monai.utils import StrEnum
from torch import nn

__all__ = [
    "InputKind",
    "FeatureEncoder",
    "NetworkEncoder",
    "TorchScriptEncoder",
    "resnet10",
    "resnet_encoder",
    "inception_v3_encoder",
    "i3d_encoder",
    "metric_name",
]


class InputKind(StrEnum):
    """What an encoder consumes: images `(N, C, H, W)` or videos `(N, C, T, H, W)`."""

    IMAGE = "image"
    VIDEO = "video"


class FeatureEncoder(ABC):
    """Interface of every feature encoder: ``encode(x) -> (N, D)`` plus a name and the input kind.

    Attributes:
        name: short identifier used in metric names (``FD_<name>``).
        input_kind: :class:`InputKind` of the inputs.
        is_standard: True only for the standard Inception-v3 / I3D weights, which make a Fréchet distance an FID / FVD.

    Example:
        >>> class FrameMeans(FeatureEncoder):  # any callable turned into an encoder
        ...     name, input_kind = "frame_means", InputKind.VIDEO
        ...     def encode(self, x): return x.mean(dim=(1, 3, 4))
    """

    name: str
    input_kind: InputKind
    is_standard: bool = False

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features of one batch.

        Args:
            x: images `(N, C, H, W)` or videos `(N, C, T, H, W)` in model space [-1, 1].

        Returns:
            float32 features `(N, D)` on the CPU.
        """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when `x` does not have the rank this encoder's input kind expects."""
        expected = 4 if self.input_kind == InputKind.IMAGE else 5
        layout = "(N, C, H, W)" if expected == 4 else "(N, C, T, H, W)"
        if not isinstance(x, torch.Tensor) or x.ndim != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} '{self.name}': x must be a {self.input_kind} tensor {layout}, got {shape}."
            )

    def encode_batched(self, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Encode a large tensor in batches of `batch_size`.

        Args:
            x: images `(N, C, H, W)` or videos `(N, C, T, H, W)`.
            batch_size: samples per forward pass (>= 1).

        Returns:
            features `(N, D)`.

        Raises:
            ValueError: when `batch_size < 1`.
        """
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}.encode_batched: batch_size must be >= 1, got {batch_size}.")
        return torch.cat([self.encode(x[start : start + batch_size]) for start in range(0, x.shape[0], batch_size)])


def _pool_to_vector(value: torch.Tensor) -> torch.Tensor:
    """Global-average-pool every axis after the channel axis: `(N, C, ...) -> (N, C)`."""
    if value.ndim > 2:
        value = value.flatten(2).mean(dim=2)
    return value.flatten(1)


class NetworkEncoder(FeatureEncoder):
    """Features of any ``torch.nn.Module``: its output, or the input/output of a named submodule via a forward hook.

    Args:
        network: the feature network (e.g. a trained classifier; its weights are not changed).
        name: identifier used in metric names.
        input_kind: ``"image"`` or ``"video"``.
        layer: dotted name of the submodule whose activation is the feature (``None``: the network output).
        capture: ``"output"`` of `layer` or its ``"input"`` (e.g. ``layer="fc", capture="input"`` gives the
            penultimate features of MONAI's ResNet).
        weights_path: optional local state-dict file (``torch.load(weights_only=True)``), never a URL.
        device: where the network runs.

    Raises:
        ValueError: for an unknown `input_kind`, `capture` or `layer`.
        FileNotFoundError: when `weights_path` does not exist.

    Example:
        >>> net = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1, num_classes=3)
        >>> encoder = NetworkEncoder(net, "view_classifier", layer="fc", capture="input")
        >>> encoder.encode(torch.randn(4, 1, 64, 64)).shape  # (4, 64)
    """

    def __init__(
        self,
        network: nn.Module,
        name: str,
        input_kind: InputKind | str = InputKind.IMAGE,
        layer: str | None = None,
        capture: str = "output",
        weights_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if input_kind not in list(InputKind):
            raise ValueError(
                f"NetworkEncoder: input_kind must be one of {list(map(str, InputKind))}, got {input_kind!r}."
            )
        if capture not in ("output", "input"):
            raise ValueError(f"NetworkEncoder: capture must be 'output' or 'input', got {capture!r}.")
        module_names = dict(network.named_modules())
        if layer is not None and layer not in module_names:
            raise ValueError(f"NetworkEncoder: layer {layer!r} is not a submodule of {type(network).__name__}.")
        if weights_path is not None:
            if not os.path.isfile(weights_path):
                raise FileNotFoundError(f"NetworkEncoder: weights_path {str(weights_path)!r} is not a file.")
            network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.network = network.to(device).eval()
        self.name = name
        self.input_kind = InputKind(input_kind)
        self.layer = layer
        self.capture = capture
        self.device = torch.device(device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.network.eval()
        x = x.to(self.device, torch.float32)
        if self.layer is None:
            return _pool_to_vector(self.network(x)).float().cpu()
        captured: list[torch.Tensor] = []
        module = dict(self.network.named_modules())[self.layer]
        if self.capture == "input":
            handle = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        else:
            handle = module.register_forward_hook(lambda _m, _args, out: captured.append(out))
        try:
            self.network(x)
        finally:
            handle.remove()
        return _pool_to_vector(captured[0]).float().cpu()


def resnet10(
    spatial_dims: int,
    in_channels: int,
    block_inplanes: tuple[int, ...] | list[int],
    num_classes: int,
    conv1_t_size: int = 7,
) -> ResNet:
    """MONAI's ``ResNet`` in the ResNet-10 layout (one basic block per stage): the backbone of the evaluation suite's
    encoders and downstream judges.

    Args:
        spatial_dims: 2 (images) or 3 (videos).
        in_channels: input channels.
        block_inplanes: widths of the four stages; the feature dimension is the last one.
        num_classes: outputs of the final ``fc`` layer.
        conv1_t_size: size of the first convolution's kernel (along time for videos).
    """
    return ResNet(
        "basic",
        [1, 1, 1, 1],
        list(block_inplanes),
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=conv1_t_size,
        num_classes=num_classes,
    )


def resnet_encoder(
    name: str,
    input_kind: InputKind | str = InputKind.IMAGE,
    in_channels: int = 1,
    block_inplanes: tuple[int, int, int, int] = (16, 32, 64, 128),
    weights_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> NetworkEncoder:
    """A MONAI ResNet-10-style backbone (2D for images, 3D for videos) read as penultimate features.

    The usual source of weights is :meth:`echo_monai.metrics.downstream.DownstreamEvaluator.feature_encoder` on a
    classifier/regressor trained on the user's real data, or a state dict saved from one (`weights_path`).

    Args:
        name: encoder name used in metric names.
        input_kind: ``"image"`` (2D ResNet) or ``"video"`` (3D ResNet).
        in_channels: input channels.
        block_inplanes: widths of the four ResNet stages; the feature dimension is the last one.
        weights_path: optional local state-dict file of a network built with the same arguments.
        device: where the network runs.

    Returns:
        a :class:`NetworkEncoder` capturing the input of the final ``fc`` layer.
    """
    spatial_dims = 2 if InputKind(input_kind) == InputKind.IMAGE else 3
    network = resnet10(spatial_dims, in_channels, block_inplanes, num_classes=1)
    return NetworkEncoder(
        network, name, input_kind, layer="fc", capture="input", weights_path=weights_path, device=device
    )


class TorchScriptEncoder(FeatureEncoder):
    """A feature network stored as TorchScript at a local path (e.g. the standard Inception-v3 or I3D files).

    Inputs in `source_range` are mapped linearly to `input_range`, grey inputs are repeated to `channels`, optionally
    rounded to uint8, and passed as ``module(x, **forward_kwargs)``.

    Args:
        path: local TorchScript file; nothing is downloaded.
        name: identifier used in metric names.
        input_kind: ``"image"`` or ``"video"``.
        is_standard: True when the file holds the standard weights (names the metric FID / FVD).
        source_range: intensity range of the tensors given to :meth:`encode` (model space: (-1, 1)).
        input_range: intensity range the TorchScript module expects.
        channels: channel count the module expects (grey inputs are repeated).
        as_uint8: round and cast to uint8 before the call (StyleGAN2-ADA feeds Inception uint8 images).
        forward_kwargs: extra keyword arguments for the module call.
        device: where the module runs.

    Raises:
        FileNotFoundError: when `path` is not a file.
        ValueError: for an unknown `input_kind` or an empty range.

    Example:
        >>> encoder = inception_v3_encoder("/data/weights/pt_inception-2015-12-05-6726825d.pt")
        >>> encoder.encode(images).shape  # (N, 2048)
        >>> metric_name("FD", encoder)  # "FID"
    """

    def __init__(
        self,
        path: str | os.PathLike,
        name: str,
        input_kind: InputKind | str = InputKind.IMAGE,
        is_standard: bool = False,
        source_range: tuple[float, float] = (-1.0, 1.0),
        input_range: tuple[float, float] = (0.0, 255.0),
        channels: int = 3,
        as_uint8: bool = False,
        forward_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"TorchScriptEncoder: path {str(path)!r} is not a file; pass a local copy of the weights "
                "(nothing is downloaded)."
            )
        if input_kind not in list(InputKind):
            raise ValueError(f"TorchScriptEncoder: input_kind must be 'image' or 'video', got {input_kind!r}.")
        for arg, (low, high) in (("source_range", source_range), ("input_range", input_range)):
            if not high > low:
                raise ValueError(f"TorchScriptEncoder: {arg} must satisfy high > low, got {(low, high)}.")
        self.device = torch.device(device)
        self.module = torch.jit.load(str(path), map_location=self.device).eval()
        self.name = name
        self.input_kind = InputKind(input_kind)
        self.is_standard = is_standard
        self.source_range = source_range
        self.input_range = input_range
        self.channels = channels
        self.as_uint8 = as_uint8
        self.forward_kwargs = dict(forward_kwargs or {})

    def _to_module_space(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale intensities and repeat grey channels: `(N, C, ...) -> (N, channels, ...)`."""
        (s_low, s_high), (i_low, i_high) = self.source_range, self.input_range
        x = (x.float() - s_low) / (s_high - s_low) * (i_high - i_low) + i_low
        x = x.clamp(min(i_low, i_high), max(i_low, i_high))
        if x.shape[1] == 1 and self.channels != 1:
            x = x.repeat_interleave(self.channels, dim=1)
        if self.as_uint8:
            x = x.round().to(torch.uint8)
        return x

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.module(self._to_module_space(x.to(self.device)), **self.forward_kwargs)
        return _pool_to_vector(features).float().cpu()


def inception_v3_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> TorchScriptEncoder:
    """The standard FID network: StyleGAN2-ADA's / clean-fid's TorchScript Inception-v3 (2048-D pool features).

    Args:
        path: local copy of ``pt_inception-2015-12-05-6726825d.pt``.
        device: where the module runs.

    Returns:
        a standard image encoder named ``inception_v3`` (uint8 RGB in [0, 255], resized inside the module).
    """
    return TorchScriptEncoder(
        path,
        "inception_v3",
        InputKind.IMAGE,
        is_standard=True,
        input_range=(0.0, 255.0),
        channels=3,
        as_uint8=True,
        forward_kwargs={"return_features": True},
        device=device,
    )


def i3d_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> TorchScriptEncoder:
    """The standard FVD network: StyleGAN-V's TorchScript I3D (400-D logits-layer features).

    Args:
        path: local copy of ``i3d_torchscript.pt``.
        device: where the module runs.

    Returns:
        a standard video encoder named ``i3d``, called as StyleGAN-V does: uint8 RGB clips `(N, 3, T, H, W)` in
        [0, 255] with ``rescale=True, resize=True`` (the module maps them to [-1, 1] and resizes to 224 px).
    """
    return TorchScriptEncoder(
        path,
        "i3d",
        InputKind.VIDEO,
        is_standard=True,
        input_range=(0.0, 255.0),
        channels=3,
        as_uint8=True,
        forward_kwargs={"rescale": True, "resize": True, "return_features": True},
        device=device,
    )


def metric_name(kind: str, encoder: FeatureEncoder) -> str:
    """Report name of a distribution metric computed on `encoder`'s features.

    Args:
        kind: ``"FD"`` (Fréchet distance) or ``"KD"`` (kernel distance).
        encoder: the encoder that produced the features.

    Returns:
        ``FID``/``KID`` for standard image weights, ``FVD``/``KVD`` for standard video weights, else
        ``FD_<name>``/``KD_<name>``.

    Raises:
        ValueError: for an unknown `kind`.
    """
    if kind not in ("FD", "KD"):
        raise ValueError(f"metric_name: kind must be 'FD' or 'KD', got {kind!r}.")
    if encoder.is_standard:
        return kind[0] + ("I" if encoder.input_kind == InputKind.IMAGE else "V") + "D"
    return f"{kind}_{encoder.name}"
