"""Training MCDM's motion and appearance feature extractor with MONAI's stock ``SupervisedTrainer``.

MCDM (Li, Reynaud, Müller, Kainz, "Label-free Motion-Conditioned Diffusion Model for Cardiac Ultrasound
Synthesis", 2025) learns motion without labels by frame interpolation: from frames a and b predict the frame halfway
between them, with two auxiliary terms that keep motion and appearance apart. The trainer calls::

    inputs, targets, args, kwargs = FrameTripletPrepareBatch()(batch, device, non_blocking)
    pred = network(inputs)                      # MotionAppearanceFeatureExtractor: a dict of outputs
    loss = MAFELoss(...)(pred, targets)

Notation, per batch of B triplets (a, m, b) with frames ``(C, H, W)``::

    L_rec  = mean |m_hat - m|                                         (L1 over every pixel)
    L_reid = mean_B (1 - cos(app(a), reid(a)))                         (reid: a frozen re-ID network)
    L_flow = sum_x mask(x) ||f_hat(x) - f(x)||_2 / sum_x mask(x)       (end-point error; mask = 1 without one)
    L      = w_rec L_rec + w_reid L_reid + w_flow L_flow

with ``f`` the pseudo flow of :class:`echo_monai.transforms.PseudoFlowd` (dx, dy in pixels,
``a(x) ~ b(x + f(x))``), which the network's flow head ``f_hat`` learns in the same convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrameTripletPrepareBatch", "MAFELoss"]


class FrameTripletPrepareBatch:
    """Frame pair in, interpolation targets out: ``(cat([frame_a, frame_b], 1), targets, (), {})``.

    ``targets`` is a dict on ``device``: ``"middle"`` ``(B, C, H, W)`` (frame mid), ``"frame_a"`` ``(B, C, H, W)``
    (for the re-ID target), ``"flow"`` ``(B, 2, H, W)`` when ``flow_key`` is given, ``"mask"`` ``(B, 1, H, W)`` when
    ``mask_key`` is given (where the flow term counts, e.g. the ultrasound sector).

    Args:
        frame_keys: batch keys of frames a, mid and b (made by :class:`echo_monai.transforms.FrameTripletd`).
        flow_key: batch key of the pseudo flow (made by :class:`echo_monai.transforms.PseudoFlowd`); None without.
        mask_key: batch key of a flow mask (e.g. :class:`echo_monai.transforms.SectorMaskd`); None without.

    Example:
        >>> prepare = FrameTripletPrepareBatch(flow_key="pseudo_flow", mask_key="sector")
        >>> trainer = SupervisedTrainer(..., network=MotionAppearanceFeatureExtractor(), prepare_batch=prepare,
        ...                             loss_function=MAFELoss(reid_network=reid), inferer=SimpleInferer())
    """

    def __init__(
        self,
        frame_keys: Sequence[str] = ("frame_a", "frame_mid", "frame_b"),
        flow_key: str | None = "pseudo_flow",
        mask_key: str | None = None,
    ) -> None:
        if len(frame_keys) != 3:
            raise ValueError(
                f"FrameTripletPrepareBatch: frame_keys must name 3 keys (a, mid, b), got {list(frame_keys)}."
            )
        self.frame_keys, self.flow_key, self.mask_key = tuple(frame_keys), flow_key, mask_key

    def _fetch(self, batchdata: Mapping[str, Any], key: str, maker: str) -> torch.Tensor:
        if key not in batchdata:
            raise KeyError(
                f"FrameTripletPrepareBatch: batch key '{key}' is missing (made by {maker}); the batch has "
                f"{sorted(batchdata)}."
            )
        return torch.as_tensor(batchdata[key])

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict]:
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"FrameTripletPrepareBatch: expected a dict batch, got {type(batchdata).__name__}.")

        def fetch(key: str, maker: str) -> torch.Tensor:
            return self._fetch(batchdata, key, maker).float().to(device, non_blocking=non_blocking)

        frame_a, frame_mid, frame_b = (fetch(k, "echo_monai.transforms.FrameTripletd") for k in self.frame_keys)
        targets = {"middle": frame_mid, "frame_a": frame_a}
        if self.flow_key is not None:
            targets["flow"] = fetch(self.flow_key, "echo_monai.transforms.PseudoFlowd")
        if self.mask_key is not None:
            targets["mask"] = fetch(self.mask_key, "a mask transform such as echo_monai.transforms.SectorMaskd")
        return torch.cat([frame_a, frame_b], dim=1), targets, (), {}


class MAFELoss(nn.Module):
    """MCDM's MAFE objective: L1 middle-frame reconstruction + re-ID appearance term + optical-flow term.

    ``forward(pred, targets)`` takes the dict of
    :class:`echo_monai.networks.nets.MotionAppearanceFeatureExtractor` and the targets of
    :class:`FrameTripletPrepareBatch` (see the module notation), returns the weighted sum, and keeps the last
    value of each active term as a float in ``self.terms`` (``"reconstruction"``, ``"reid"``, ``"flow"``,
    ``"loss"``) for logging. A term with weight 0 is not computed.

    Args:
        reconstruction_weight: weight of the L1 loss of the middle frame.
        reid_weight: weight of ``1 - cos(pred["appearance"], reid_network(frame_a))``, averaged over the batch.
        flow_weight: weight of the mean end-point error between ``pred["flow"]`` and ``targets["flow"]``,
            restricted to ``targets["mask"]`` ``(B, 1, H, W)`` when present.
        reid_network: the re-identification network whose embeddings ``(B, appearance_dim)`` are the pseudo
            appearance targets (:class:`echo_monai.networks.nets.ReIdentificationNet`); frozen here (no gradients,
            always in eval mode). Required when ``reid_weight > 0``.

    Example:
        >>> reid = ReIdentificationNet(in_channels=1, embedding_dim=128)  # trained, loaded from a local checkpoint
        >>> loss = MAFELoss(reid_weight=0.1, flow_weight=0.1, reid_network=reid)
        >>> loss(net(inputs), targets), loss.terms   # tensor(...), {"reconstruction": ..., "reid": ..., ...}
    """

    def __init__(
        self,
        reconstruction_weight: float = 1.0,
        reid_weight: float = 0.1,
        flow_weight: float = 0.1,
        reid_network: nn.Module | None = None,
    ) -> None:
        super().__init__()
        weights = {"reconstruction_weight": reconstruction_weight, "reid_weight": reid_weight,
                   "flow_weight": flow_weight}  # fmt: skip
        for name, value in weights.items():
            if not float(value) >= 0:
                raise ValueError(f"MAFELoss: {name} must be >= 0, got {value}.")
        if not any(float(v) > 0 for v in weights.values()):
            raise ValueError(f"MAFELoss: at least one weight must be > 0, got {weights}.")
        if float(reid_weight) > 0 and reid_network is None:
            raise ValueError(
                f"MAFELoss: reid_weight = {reid_weight} needs a reid_network (e.g. a trained "
                "echo_monai.networks.nets.ReIdentificationNet); pass one or set reid_weight=0."
            )
        self.reconstruction_weight, self.reid_weight = float(reconstruction_weight), float(reid_weight)
        self.flow_weight = float(flow_weight)
        self.reid_network = reid_network
        if reid_network is not None:
            reid_network.requires_grad_(False)
            reid_network.eval()
        self.terms: dict[str, float] = {}

    def train(self, mode: bool = True) -> MAFELoss:
        """Switch mode; the re-ID network stays in eval mode (it is a fixed target)."""
        super().train(mode)
        if self.reid_network is not None:
            self.reid_network.eval()
        return self

    @staticmethod
    def _get(mapping: Mapping[str, torch.Tensor], key: str, argument: str, maker: str) -> torch.Tensor:
        if not isinstance(mapping, Mapping) or key not in mapping:
            found = sorted(mapping) if isinstance(mapping, Mapping) else type(mapping).__name__
            raise KeyError(f"MAFELoss: {argument}['{key}'] is missing (made by {maker}); got {found}.")
        return mapping[key]

    def reconstruction_term(
        self, pred: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """``mean |pred["middle"] - targets["middle"]|``."""
        middle = self._get(pred, "middle", "pred", "MotionAppearanceFeatureExtractor")
        target = self._get(targets, "middle", "targets", "FrameTripletPrepareBatch")
        if middle.shape != target.shape:
            raise ValueError(
                f"MAFELoss: pred['middle'] {tuple(middle.shape)} and targets['middle'] {tuple(target.shape)} differ."
            )
        return F.l1_loss(middle, target)

    def reid_term(self, pred: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``mean_B (1 - cos(pred["appearance"], reid_network(targets["frame_a"])))``."""
        if self.reid_network is None:
            raise ValueError("MAFELoss: reid_term needs a reid_network; none was given.")
        appearance = self._get(pred, "appearance", "pred", "MotionAppearanceFeatureExtractor")
        frame_a = self._get(targets, "frame_a", "targets", "FrameTripletPrepareBatch")
        self.reid_network.to(frame_a.device).eval()
        with torch.no_grad():
            pseudo = self.reid_network(frame_a)
        if pseudo.shape != appearance.shape:
            raise ValueError(
                f"MAFELoss: pred['appearance'] {tuple(appearance.shape)} and the re-ID embedding "
                f"{tuple(pseudo.shape)} differ; set the network's appearance_dim to the re-ID embedding_dim."
            )
        return (1 - F.cosine_similarity(appearance, pseudo.to(appearance.dtype), dim=1)).mean()

    def flow_term(self, pred: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean end-point error ``||pred["flow"] - targets["flow"]||_2`` over the pixels of ``targets["mask"]``."""
        flow = self._get(pred, "flow", "pred", "MotionAppearanceFeatureExtractor")
        if "flow" not in targets:
            raise KeyError(
                f"MAFELoss: flow_weight = {self.flow_weight} but the targets have no 'flow' (got {sorted(targets)}); "
                "add echo_monai.transforms.PseudoFlowd and FrameTripletPrepareBatch(flow_key=...), or set "
                "flow_weight=0."
            )
        target = targets["flow"]
        if flow.shape != target.shape or flow.shape[1] != 2:
            raise ValueError(
                f"MAFELoss: pred['flow'] {tuple(flow.shape)} and targets['flow'] {tuple(target.shape)} must both be "
                "(B, 2, H, W)."
            )
        end_point_error = torch.linalg.vector_norm(flow - target, dim=1, keepdim=True)  # (B, 1, H, W)
        if "mask" not in targets:
            return end_point_error.mean()
        mask = targets["mask"].to(end_point_error.dtype)
        if mask.shape != end_point_error.shape:
            raise ValueError(
                f"MAFELoss: targets['mask'] {tuple(mask.shape)} must be (B, 1, H, W) = {tuple(end_point_error.shape)}."
            )
        return (end_point_error * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, pred: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the active terms (a scalar tensor); their values go to ``self.terms``."""
        weighted = {
            "reconstruction": (self.reconstruction_weight, self.reconstruction_term),
            "reid": (self.reid_weight, self.reid_term),
            "flow": (self.flow_weight, self.flow_term),
        }
        terms = {name: term(pred, targets) for name, (weight, term) in weighted.items() if weight > 0}
        loss = sum(weighted[name][0] * value for name, value in terms.items())
        self.terms = {name: float(value.detach()) for name, value in terms.items()}
        self.terms["loss"] = float(loss.detach())
        return loss
