"""What a later stage's weights were trained on: the fingerprints of the earlier stages' networks, kept beside them.

A latent model is only valid with the autoencoder whose latents it learnt. The training stage records the
autoencoder's fingerprint (:func:`echo_monai.data.autoencoder_fingerprint`: its weights and config) in
``<weights file>.trained_on.json`` when it starts (:class:`TrainedOn`); a :class:`StageCheckpointLoader` given
``requires`` compares that record with the networks it is about to be used with and refuses, in one line, weights
trained on another autoencoder (a retrained VAE without a retrained stage 2). Weights without a record load as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from echo_monai.data.atomic import write_json
from echo_monai.data.latent_cache import autoencoder_fingerprint
from echo_monai.engines.utils import rank_and_world_size

__all__ = ["TRAINED_ON_SUFFIX", "TrainedOn", "check_trained_on", "trained_on_path"]

TRAINED_ON_SUFFIX = ".trained_on.json"


def trained_on_path(weights: str | os.PathLike) -> Path:
    """``models/model.pt`` -> ``models/model.pt.trained_on.json``."""
    return Path(f"{os.fspath(weights)}{TRAINED_ON_SUFFIX}")


class TrainedOn:
    """Ignite handler: when training starts (rank 0), record the fingerprints of the networks a stage trains on.

    Args:
        weights: the stage's final weights file (``<ckpt_dir>/<final_filename>``).
        inputs: name -> network the stage depends on (e.g. ``{"autoencoder": autoencoder}``, already loaded).
        stage: the stage that writes the weights, named in the record.

    Example:
        >>> TrainedOn("models/model.pt", {"autoencoder": vae}, stage="us_image_to_video train").attach(trainer)
    """

    def __init__(self, weights: str | os.PathLike, inputs: Mapping[str, torch.nn.Module], stage: str = "") -> None:
        if not inputs:
            raise ValueError("TrainedOn: inputs must name at least one network.")
        self.path, self.inputs, self.stage = trained_on_path(weights), dict(inputs), stage

    def fingerprints(self) -> dict[str, str]:
        return {name: autoencoder_fingerprint(module) for name, module in self.inputs.items()}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if rank_and_world_size()[0] == 0:
            write_json(self.path, {"stage": self.stage, "fingerprints": self.fingerprints()})


def check_trained_on(weights: str | os.PathLike, requires: Mapping[str, Any], stage: str = "training") -> None:
    """Refuse weights whose record names other networks than ``requires`` (name -> network, or a loader with
    ``.load()`` returning it). No record: nothing to check.

    Raises:
        ValueError: naming the weights file, the network and both fingerprints' beginnings.
    """
    path = trained_on_path(weights)
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text()).get("fingerprints", {})
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"'{path}' cannot be read ({error}); re-run the {stage} stage.") from error
    for name, source in requires.items():
        if name not in recorded:
            continue
        module = source.load() if hasattr(source, "load") else source
        actual = autoencoder_fingerprint(module)
        if actual != recorded[name]:
            raise ValueError(
                f"checkpoint '{weights}' was trained on the latents of another {name} (fingerprint "
                f"{recorded[name][:12]}, this {name} is {actual[:12]}): re-run the {stage} stage (after encoding the "
                f"latent cache again), or restore the {name} it was trained with."
            )
