"""Locating bundles and composing their config files for a command and stage.

A bundle's stages are its config files: ``configs/inference.yaml`` is the base that loads alone, and
``configs/<command>.yaml`` (the default stage) or ``configs/<command>_<stage>.yaml`` layer on it, for the commands
``train``, ``inference`` and ``evaluate``. ``configs/multi_gpu_train.yaml`` layers on a training stage, and a preset
``configs/presets/<name>.yaml`` (named sizes: ``tiny`` for tests, ``cpu`` for a laptop) on any stage, last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BundleError", "Bundle", "bundles_root", "find_bundle", "list_bundles", "COMMAND_FILES"]

#: CLI command -> config file stem
COMMAND_FILES = {"train": "train", "infer": "inference", "evaluate": "evaluate"}
BASE_CONFIG = "inference.yaml"
DEFAULT_STAGE = "default"
PRESETS = "presets"


class BundleError(ValueError):
    """A bundle, stage or override that does not exist; the message names it and what is available."""


def bundles_root() -> Path:
    """The bundles folder: ``$ECHO_MONAI_BUNDLES``, else the source checkout's ``bundles/``, else ``./bundles``."""
    env = os.environ.get("ECHO_MONAI_BUNDLES")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "bundles"
    return checkout if checkout.is_dir() else Path.cwd() / "bundles"


@dataclass(frozen=True)
class Bundle:
    """A bundle folder with ``configs/inference.yaml``."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def stages(self, command: str) -> list[str]:
        """Stages of a CLI command (``train``, ``infer``, ``evaluate``), ``"default"`` first when it exists."""
        stem = COMMAND_FILES[command]
        found = []
        for path in sorted(self.configs.glob(f"{stem}*.yaml")):
            if path.stem == stem:
                found.insert(0, DEFAULT_STAGE)
            elif path.stem.startswith(stem + "_"):
                found.append(path.stem[len(stem) + 1 :])
        return found

    def layers_on(self, config_file: Path) -> list[Path]:
        """The bundle config files a stage file names in its top-level ``layers_on`` (none when absent).

        Raises:
            BundleError: when ``layers_on`` is not a list of this bundle's config file names.
        """
        import yaml

        with open(config_file) as handle:
            content = yaml.safe_load(handle) or {}
        names = content.get("layers_on", []) if isinstance(content, dict) else []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError(f"{config_file}: layers_on must be a list of config file names, got {names!r}")
        missing = [n for n in names if not (self.configs / n).is_file() or n == BASE_CONFIG]
        if missing:
            raise BundleError(
                f"{config_file}: layers_on names {missing}, which are not stage files of bundle '{self.name}' "
                "(the base inference.yaml is always first)"
            )
        return [self.configs / n for n in names]

    def presets(self) -> list[str]:
        """Named override files ``configs/presets/<name>.yaml`` (``tiny``, ``cpu``...), by name."""
        return sorted(p.stem for p in (self.configs / PRESETS).glob("*.yaml"))

    def config_files(
        self, command: str, stage: str | None = None, multi_gpu: bool = False, preset: str | None = None
    ) -> list[str]:
        """The config files of ``command``/``stage`` (then the preset's overrides) in the order MONAI merges them."""
        if command not in COMMAND_FILES:
            raise BundleError(f"unknown command '{command}'; expected one of {sorted(COMMAND_FILES)}")
        stage = stage or DEFAULT_STAGE
        available = self.stages(command)
        if stage not in available:
            raise BundleError(
                f"bundle '{self.name}' has no {command} stage '{stage}'; available: {', '.join(available) or 'none'}"
            )
        files = [self.configs / BASE_CONFIG]
        stem = COMMAND_FILES[command]
        if stem != "inference" or stage != DEFAULT_STAGE:
            stage_file = self.configs / (f"{stem}.yaml" if stage == DEFAULT_STAGE else f"{stem}_{stage}.yaml")
            files += [*self.layers_on(stage_file), stage_file]
        if multi_gpu:
            if command != "train":
                raise BundleError("--multi-gpu applies to train only")
            overlay = self.configs / "multi_gpu_train.yaml"
            if not overlay.is_file():
                raise BundleError(f"bundle '{self.name}' has no configs/multi_gpu_train.yaml")
            files.append(overlay)
        if preset is not None:
            if preset not in self.presets():
                raise BundleError(
                    f"bundle '{self.name}' has no preset '{preset}'; available: {', '.join(self.presets()) or 'none'}"
                )
            files.append(self.configs / PRESETS / f"{preset}.yaml")
        return [str(f) for f in files]

    @property
    def meta_file(self) -> str:
        return str(self.configs / "metadata.json")

    @property
    def logging_file(self) -> str:
        return str(self.configs / "logging.conf")


def list_bundles(root: Path | None = None) -> list[Bundle]:
    """Every folder of ``root`` with a ``configs/inference.yaml``, by name."""
    root = root or bundles_root()
    if not root.is_dir():
        return []
    return [Bundle(p) for p in sorted(root.iterdir()) if (p / "configs" / BASE_CONFIG).is_file()]


def find_bundle(name: str, root: Path | None = None) -> Bundle:
    """A bundle by name (in ``root``) or by path to its folder."""
    path = Path(name)
    if (path / "configs" / BASE_CONFIG).is_file():
        return Bundle(path.resolve())
    bundles = {b.name: b for b in list_bundles(root)}
    if name not in bundles:
        raise BundleError(f"unknown bundle '{name}'; available: {', '.join(sorted(bundles)) or 'none'}")
    return bundles[name]
