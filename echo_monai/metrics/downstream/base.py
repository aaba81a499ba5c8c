"""Shared machinery of the downstream-utility evaluators: data mixes, batch preparation, Ignite training and testing.

"Train on synthetic, test on real" (TSTR) is how the echo generation papers judge utility: a downstream network is
trained on real data only, synthetic data only, or both, always from the same initial weights, and tested on held-out
real data. Training runs through MONAI's :class:`~monai.engines.SupervisedTrainer`, testing through
:class:`~monai.engines.SupervisedEvaluator`; a subclass chooses the network, the loss and the metrics.
"""

from __future__ import annotations

import contextlib
import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys, StrEnum
from torch import nn

from echo_monai.metrics.encoders import InputKind, NetworkEncoder

__all__ = ["TrainingMix", "KeyedPrepareBatch", "DownstreamEvaluator", "training_set", "seeded_initialisation"]


@contextlib.contextmanager
def seeded_initialisation(seed: int) -> Iterator[None]:
    """Build a network inside this block to draw its initial weights from ``seed``, whatever the process's global
    torch RNG holds (PyTorch seeds it at random at start-up); the global CPU RNG is restored on exit.

    Example:
        >>> with seeded_initialisation(0):
        ...     network = torch.nn.Linear(2, 1)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class TrainingMix(StrEnum):
    """Which data a downstream network is trained on; testing is always on held-out real data."""

    REAL = "real"
    SYNTHETIC = "synthetic"
    REAL_AND_SYNTHETIC = "real+synthetic"


def training_set(
    mix: TrainingMix | str,
    real: Sequence[Mapping[str, Any]] | None,
    synthetic: Sequence[Mapping[str, Any]] | None,
) -> list[Mapping[str, Any]]:
    """The training samples of one mix.

    Args:
        mix: a :class:`TrainingMix` value.
        real: real training samples (dicts).
        synthetic: synthetic training samples (dicts).

    Returns:
        the concatenated list for `mix`.

    Raises:
        ValueError: for an unknown `mix` or when a set the mix needs is missing or empty.
    """
    if mix not in list(TrainingMix):
        raise ValueError(f"training_set: mix must be one of {[str(m) for m in TrainingMix]}, got {mix!r}.")
    mix = TrainingMix(mix)
    needs_real = mix in (TrainingMix.REAL, TrainingMix.REAL_AND_SYNTHETIC)
    needs_synthetic = mix in (TrainingMix.SYNTHETIC, TrainingMix.REAL_AND_SYNTHETIC)
    if needs_real and not real:
        raise ValueError(f"training_set: mix {str(mix)!r} needs a non-empty real set, got {real!r:.40}.")
    if needs_synthetic and not synthetic:
        raise ValueError(f"training_set: mix {str(mix)!r} needs a non-empty synthetic set, got {synthetic!r:.40}.")
    return (list(real) if needs_real else []) + (list(synthetic) if needs_synthetic else [])


class KeyedPrepareBatch(PrepareBatch):
    """Read ``(inputs, targets)`` from a collated dict batch under configurable keys.

    Args:
        input_key: key of the network input (``"image"``, ``"video"``).
        target_key: key of the target (``"label"``, ``"ejection_fraction"``).
        target_transform: applied to the collated target before it moves to the device (e.g. reshape, dtype).
    """

    def __init__(
        self,
        input_key: str,
        target_key: str,
        target_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.input_key = input_key
        self.target_key = target_key
        self.target_transform = target_transform

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.as_tensor(batchdata[self.input_key]).float()
        targets = torch.as_tensor(batchdata[self.target_key])
        if self.target_transform is not None:
            targets = self.target_transform(targets)
        return (
            inputs.to(device=device, non_blocking=non_blocking, **kwargs),
            targets.to(device=device, non_blocking=non_blocking, **kwargs),
        )


class DownstreamEvaluator(ABC):
    """Train a downstream network on a chosen data mix with MONAI's Ignite engines and score it on real test data.

    Subclasses set the network, loss and metrics; every mix starts from the same initial weights.

    Args:
        network: the downstream network.
        loss_function: training loss, ``loss(pred, target)``.
        input_key: sample key of the network input.
        target_key: sample key of the target.
        target_transform: applied to collated targets (reshape/dtype) for both training and testing.
        max_epochs: training epochs (>= 1).
        batch_size: samples per batch (>= 1).
        learning_rate: Adam learning rate (> 0).
        weight_decay: Adam weight decay (>= 0).
        device: where training and testing run.
        seed: seeds the shuffling and the global RNG at the start of each fit (a subclass's default network is also
            built under it, :func:`seeded_initialisation`, so two processes train the same judge).
        train_transform: optional MONAI transform applied to each training sample dict (augmentation).
        train_handlers: extra Ignite handlers for the trainer (checkpointing, logging).
        amp: mixed precision (GPU).
        feature_layer: dotted name of the submodule whose input holds the penultimate features (for
            :meth:`feature_encoder`), or None.
        input_kind: ``"image"`` or ``"video"`` (for :meth:`feature_encoder`).
        max_steps: train every mix for exactly this many optimisation steps (the data is cycled), so that a large
            synthetic set does not get more updates than a small real one; None trains ``max_epochs`` epochs.

    Raises:
        ValueError: when a numeric argument is out of range.

    Example:
        >>> evaluator = SegmentationEvaluator(max_epochs=50)  # a subclass; all share fit/evaluate/run
        >>> results = evaluator.run(test_data=real_test, real=real_train, synthetic=synthetic_train)
        >>> results["real+synthetic"]["dice_lv_endo"], results["synthetic"]["num_train_samples"]
    """

    def __init__(
        self,
        network: nn.Module,
        loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        input_key: str,
        target_key: str,
        target_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_epochs: int = 20,
        batch_size: int = 16,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        train_transform: Callable | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        feature_layer: str | None = None,
        input_kind: InputKind | str = InputKind.IMAGE,
        max_steps: int | None = None,
    ) -> None:
        name = type(self).__name__
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"{name}: max_steps must be None or >= 1, got {max_steps}.")
        if max_epochs < 1:
            raise ValueError(f"{name}: max_epochs must be >= 1, got {max_epochs}.")
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}.")
        if not learning_rate > 0:
            raise ValueError(f"{name}: learning_rate must be > 0, got {learning_rate}.")
        if weight_decay < 0:
            raise ValueError(f"{name}: weight_decay must be >= 0, got {weight_decay}.")
        self.device = torch.device(device)
        self.network = network.to(self.device)
        self.initial_state = copy.deepcopy(network.state_dict())
        self.loss_function = loss_function
        self.input_key = input_key
        self.target_key = target_key
        self.prepare_batch = KeyedPrepareBatch(input_key, target_key, target_transform)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed
        self.train_transform = train_transform
        self.train_handlers = list(train_handlers or [])
        self.amp = amp
        self.feature_layer = feature_layer
        self.input_kind = InputKind(input_kind)
        self.max_steps = max_steps
        self.losses: list[float] = []

    # ----------------------------------------------------------------------------------------------- data checks
    def _check_samples(self, data: Sequence[Mapping[str, Any]], name: str) -> None:
        """Raise ValueError unless `data` is a non-empty sequence of dicts holding the input and target keys."""
        if data is None or len(data) == 0:
            raise ValueError(f"{type(self).__name__}: {name} must be a non-empty sequence of sample dicts.")
        for index, sample in enumerate(data):
            if not isinstance(sample, Mapping) or self.input_key not in sample or self.target_key not in sample:
                found = sorted(sample) if isinstance(sample, Mapping) else type(sample).__name__
                raise ValueError(
                    f"{type(self).__name__}: {name}[{index}] must be a dict with keys {self.input_key!r} and "
                    f"{self.target_key!r}, got {found}."
                )

    # ----------------------------------------------------------------------------------------------- training
    def reset(self) -> None:
        """Restore the initial weights, so every mix starts from the same network."""
        self.network.load_state_dict(self.initial_state)

    def fit(self, train_data: Sequence[Mapping[str, Any]]) -> nn.Module:
        """Train the network from its initial weights with :class:`~monai.engines.SupervisedTrainer`.

        Args:
            train_data: sample dicts holding `input_key` (tensor) and `target_key`.

        Returns:
            the trained network (also kept as ``self.network``); the per-iteration losses are in ``self.losses``.

        Raises:
            ValueError: when `train_data` is empty or a sample lacks a key.
        """
        self._check_samples(train_data, "train_data")
        self.reset()
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        dataset = Dataset(list(train_data), transform=self.train_transform)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=True, num_workers=0, generator=generator)
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        trainer = SupervisedTrainer(
            device=self.device,
            max_epochs=self.max_epochs if self.max_steps is None else 1,
            epoch_length=self.max_steps,
            train_data_loader=loader,
            network=self.network,
            optimizer=optimizer,
            loss_function=self.loss_function,
            prepare_batch=self.prepare_batch,
            train_handlers=self.train_handlers,
            amp=self.amp,
            decollate=False,
        )
        self.losses = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda engine: self.losses.append(float(engine.state.output[CommonKeys.LOSS].detach())),
        )
        trainer.run()
        return self.network

    # ----------------------------------------------------------------------------------------------- testing
    def predict(self, test_data: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run :class:`~monai.engines.SupervisedEvaluator` and gather the raw outputs and targets.

        Args:
            test_data: sample dicts holding `input_key` and `target_key`.

        Returns:
            `(predictions, targets)` concatenated over the batches, on the CPU, in the network's output layout.

        Raises:
            ValueError: when `test_data` is empty or a sample lacks a key.
        """
        self._check_samples(test_data, "test_data")
        loader = DataLoader(list(test_data), batch_size=self.batch_size, shuffle=False, num_workers=0)
        evaluator = SupervisedEvaluator(
            device=self.device,
            val_data_loader=loader,
            network=self.network,
            prepare_batch=self.prepare_batch,
            amp=self.amp,
            decollate=False,
        )
        predictions: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []

        def _gather(engine: SupervisedEvaluator) -> None:
            predictions.append(torch.as_tensor(engine.state.output[CommonKeys.PRED]).detach().float().cpu())
            targets.append(torch.as_tensor(engine.state.output[CommonKeys.LABEL]).detach().cpu())

        evaluator.add_event_handler(Events.ITERATION_COMPLETED, _gather)
        evaluator.run()
        return torch.cat(predictions), torch.cat(targets)

    @abstractmethod
    def compute_metrics(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Task metrics from the outputs of :meth:`predict`."""

    def evaluate(self, test_data: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Score the current network on `test_data` (held-out real samples).

        Args:
            test_data: sample dicts holding `input_key` and `target_key`.

        Returns:
            the task metrics (see the subclass).
        """
        return self.compute_metrics(*self.predict(test_data))

    def run(
        self,
        test_data: Sequence[Mapping[str, Any]],
        real: Sequence[Mapping[str, Any]] | None = None,
        synthetic: Sequence[Mapping[str, Any]] | None = None,
        mixes: Sequence[TrainingMix | str] | None = None,
    ) -> dict[str, dict[str, float]]:
        """Train once per mix, from the same initial weights, and test each on `test_data`.

        Args:
            test_data: held-out real samples.
            real: real training samples.
            synthetic: synthetic training samples.
            mixes: the mixes to run (default: every mix the given sets allow).

        Returns:
            ``{mix: metrics}``, each metrics dict also holding ``num_train_samples``.

        Raises:
            ValueError: when no mix can be run or a requested mix lacks its data.
        """
        if mixes is None:
            mixes = [
                mix
                for mix, ok in (
                    (TrainingMix.REAL, bool(real)),
                    (TrainingMix.SYNTHETIC, bool(synthetic)),
                    (TrainingMix.REAL_AND_SYNTHETIC, bool(real) and bool(synthetic)),
                )
                if ok
            ]
        if not mixes:
            raise ValueError(f"{type(self).__name__}.run: pass real and/or synthetic training samples, got neither.")
        results: dict[str, dict[str, float]] = {}
        for mix in mixes:
            data = training_set(mix, real, synthetic)
            self.fit(data)
            results[str(TrainingMix(mix))] = {**self.evaluate(test_data), "num_train_samples": len(data)}
        return results

    def save_network(self, path: str | os.PathLike) -> str:
        """Save the current network's state dict atomically (temporary name, then ``os.replace``).

        Args:
            path: destination file.

        Returns:
            the destination path as a string.
        """
        path = os.fspath(path)
        temporary = f"{path}.tmp-{os.getpid()}"
        torch.save(self.network.state_dict(), temporary)
        os.replace(temporary, path)
        return path

    def load_network(self, path: str | os.PathLike) -> nn.Module:
        """Load weights saved by :meth:`save_network` (``weights_only=True``), e.g. a view classifier trained once on
        the user's real data and reused as the image encoder.

        Args:
            path: local state-dict file.

        Returns:
            the network with the loaded weights.

        Raises:
            FileNotFoundError: when `path` is not a file.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{type(self).__name__}.load_network: path {os.fspath(path)!r} is not a file.")
        self.network.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return self.network

    def feature_encoder(self, name: str) -> NetworkEncoder:
        """The current (trained) network's penultimate features as a :class:`NetworkEncoder`.

        Args:
            name: encoder name for metric names (e.g. ``"view_classifier"`` gives ``FD_view_classifier``).

        Returns:
            an encoder sharing a frozen copy of the network.

        Raises:
            ValueError: when this evaluator has no `feature_layer`.
        """
        if self.feature_layer is None:
            raise ValueError(f"{type(self).__name__}.feature_encoder: this evaluator has no feature_layer.")
        network = copy.deepcopy(self.network).eval()
        return NetworkEncoder(
            network, name, self.input_kind, layer=self.feature_layer, capture="input", device=self.device
        )
