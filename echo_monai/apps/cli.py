"""echo-monai: a thin command line over ``monai.bundle run``.

Usage::

    echo-monai list
    echo-monai train    BUNDLE [--stage S] [--preset P] [--multi-gpu] [--dry-run] [--debug] [--KEY VALUE ...]
    echo-monai infer    BUNDLE [--stage S] [--preset P] [--dry-run] [--debug] [--KEY VALUE ...]
    echo-monai evaluate BUNDLE [--stage S] [--preset P] [--dry-run] [--debug] [--KEY VALUE ...]
    echo-monai simulate {echonet,pediatric,camus,busi,busv,dicom} OUT [--n N] [--seed S] [--image-size H W]
                     [--frames F] [--variability {standard,hard}]
    echo-monai demo [--out DIR] [--epochs N] ...

``--KEY VALUE`` overrides a config id exactly as ``python -m monai.bundle run --KEY VALUE`` does
(``--epochs 2``, ``--train::trainer::max_epochs 2``). An unknown bundle, stage, preset or override key, a value of
the wrong type, or a missing ``dataset_dir`` is reported on one line with exit code 2; a failed run prints its error
on one line with exit code 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echo_monai.apps.bundles import COMMAND_FILES, Bundle, BundleError, find_bundle, list_bundles
from echo_monai.apps.errors import one_line, write_traceback
from echo_monai.apps.provenance import RECORD_FILE, carried_settings, read_record, write_record

__all__ = ["check_override", "main", "parse_overrides", "resolve_run"]

SIMULATE_KINDS = ("echonet", "pediatric", "camus", "busi", "busv", "dicom")
PRESET_ENV = "ECHO_MONAI_PRESET"  # the preset every bundle run uses unless --preset says otherwise (tests, docs)


class CLIError(Exception):
    """A user error reported on one line with exit code 2."""


class RunError(Exception):
    """A bundle run that failed: its first project error on one line, exit code 1."""


def _value(text: str) -> Any:
    """Parse an override value like the bundle CLI (fire): Python literals, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--a", "1", "--b=x"]`` -> ``{"a": 1, "b": "x"}``; a flag without a value is ``True``."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise CLIError(f"unexpected argument '{token}'; overrides are given as --KEY VALUE")
        key = token[2:]
        if "=" in key:
            key, text = key.split("=", 1)
            overrides[key] = _value(text)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            overrides[key] = _value(tokens[i + 1])
            i += 2
        else:
            overrides[key] = True
            i += 1
    return overrides


def resolve_run(
    bundle: Bundle,
    command: str,
    stage: str | None,
    overrides: dict[str, Any],
    multi_gpu: bool = False,
    preset: str | None = None,
    check_dataset: bool = True,
    record: bool = True,
) -> dict:
    """Check the command, stage, preset and overrides against the bundle's configs; return ``monai.bundle.run``
    arguments.

    Args:
        bundle: the bundle.
        command: ``train``, ``infer`` or ``evaluate``.
        stage: the stage (None: the default one).
        overrides: config id -> value.
        multi_gpu: layer ``multi_gpu_train.yaml``.
        preset: layer ``configs/presets/<preset>.yaml`` last; None: ``$ECHO_MONAI_PRESET`` when the bundle has it.
        check_dataset: refuse a ``dataset_dir`` that does not exist (unless the stage declares
            ``reads_dataset: false``, as an export that reads only the checkpoint does).
        record: for ``train``, write the preset and settings beside the checkpoints (:mod:`echo_monai.apps.provenance`);
            every command reads them back from there (or from beside ``--ckpt_path``).

    Raises:
        CLIError: for an unknown stage or preset, an override key that no config defines, a value that does not fit,
            or a missing ``dataset_dir``.
    """

    given_preset = preset
    if preset is None and os.environ.get(PRESET_ENV) in bundle.presets():
        preset = os.environ[PRESET_ENV]
    user = {"bundle_root": str(bundle.root), **overrides}
    config_files, parser = _read(bundle, command, stage, multi_gpu, preset)
    # what the checkpoints were trained with: the recorded preset and settings this command does not set itself
    folder = _checkpoint_folder(parser, user)
    try:
        recorded_preset, recorded = carried_settings(read_record(folder), bundle.name) if folder else (None, {})
    except ValueError as error:
        raise CLIError(str(error)) from error
    if given_preset is None and recorded_preset and recorded_preset != preset:
        preset = recorded_preset
        config_files, parser = _read(bundle, command, stage, multi_gpu, preset)
    carried = {k: v for k, v in recorded.items() if k not in user and (k in parser or _component_argument(parser, k))}
    for key, value in recorded.items():
        if key in user and user[key] != value:
            print(f"echo-monai: warning: --{key} {user[key]!r} differs from the {value!r} the checkpoints in "
                  f"{folder} were trained with", file=sys.stderr)  # fmt: skip
    if carried or (recorded_preset and given_preset is None):
        shown = ", ".join(f"{k}={v!r}" for k, v in carried.items())
        print(f"echo-monai: with the settings {folder}/{RECORD_FILE} records: preset {preset}; {shown}",
              file=sys.stderr)  # fmt: skip
    overrides = {**carried, **user}
    unknown = [key for key in overrides if key not in parser and not _component_argument(parser, key)]
    if unknown:
        raise CLIError(
            f"bundle '{bundle.name}' {command} has no config key {', '.join(repr(k) for k in unknown)} "
            f"(keys are config ids such as 'epochs' or 'train::trainer::max_epochs')"
        )
    for key, value in overrides.items():
        check_override(parser, key, value)
    parser.update(overrides)
    if check_dataset and "dataset_dir" in parser and parser.get("reads_dataset", True) is not False:
        dataset_dir = parser.get_parsed_content("dataset_dir")
        if isinstance(dataset_dir, str) and not Path(dataset_dir).is_dir():
            raise CLIError(f"dataset_dir '{dataset_dir}' does not exist (override it with --dataset_dir PATH)")
    if record and command == "train" and folder is not None:
        version = _bundle_version(bundle)
        write_record(folder, bundle.name, version, stage or "default", preset, overrides)
    # MONAI's runner drops None-valued overrides: pass None as the expression "$None"
    run_args: dict[str, Any] = {
        "config_file": config_files,
        **{k: "$None" if v is None else v for k, v in overrides.items()},
    }
    if Path(bundle.meta_file).is_file():
        run_args["meta_file"] = bundle.meta_file
    if Path(bundle.logging_file).is_file():
        run_args["logging_file"] = bundle.logging_file
    return run_args


_KINDS = ((bool, "True or False"), (int, "an integer"), (float, "a number"), (list, "a list"), (dict, "a mapping"))
_INDEXED = re.compile(r"@([\w:]+)\[@([\w:]+)\]")


def _kind(value: Any) -> tuple[type, str] | None:
    for kind, words in _KINDS:
        if isinstance(value, kind):
            return kind, words
    return None


def _config_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _config_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _config_strings(v)]
    return [node] if isinstance(node, str) else []


def _read(bundle: Bundle, command: str, stage: str | None, multi_gpu: bool, preset: str | None) -> tuple:
    """The config files of a command and a parser of them (without the overrides)."""
    from monai.bundle import ConfigParser

    try:
        config_files = bundle.config_files(command, stage, multi_gpu, preset)
    except BundleError as e:
        raise CLIError(str(e)) from e
    parser = ConfigParser()
    parser.read_config(config_files)
    return config_files, parser


def _checkpoint_folder(parser: Any, user: dict) -> Path | None:
    """Where the command's checkpoints are: beside ``--ckpt_path`` when given, else ``ckpt_dir``."""
    if user.get("ckpt_path"):
        return Path(str(user["ckpt_path"])).parent
    if "ckpt_dir" not in parser:
        return None
    probe = parser.get("bundle_root")
    parser["bundle_root"] = user["bundle_root"]
    try:
        folder = user.get("ckpt_dir") or parser.get_parsed_content("ckpt_dir")
    except Exception:  # noqa: BLE001 - an unusual ckpt_dir expression: no record then
        folder = None
    finally:
        parser["bundle_root"] = probe
        parser.ref_resolver.reset()
    return Path(str(folder)) if folder else None


def _bundle_version(bundle: Bundle) -> str | None:
    try:
        return json.loads(Path(bundle.meta_file).read_text()).get("version")
    except (OSError, ValueError):
        return None


def _component_argument(parser: Any, key: str) -> bool:
    """``generation::overwrite``: an argument of a ``_target_`` component that the config leaves at its default
    (checked against the target's signature when it can be located)."""
    import inspect
    import pydoc

    from monai.bundle.config_item import ConfigComponent

    parent, _, name = key.rpartition("::")
    config = parser.get(parent) if parent and parent in parser else None
    if not isinstance(config, dict) or "_target_" not in config or name.startswith("_"):
        return False
    try:
        target = pydoc.locate(ConfigComponent(config).resolve_module_name())
        parameters = inspect.signature(target).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError, ModuleNotFoundError):
        return True
    return name in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def check_override(parser: Any, key: str, value: Any) -> None:
    """Refuse an override whose value does not fit the config before anything runs.

    The value must have the type of the config's literal default (an integer for ``epochs: 100``, a number for
    ``learning_rate: 0.0001``, a list for a list; string defaults, which readers often also take as lists, and
    defaults that are expressions, references or None accept anything), and a key used to
    pick an entry of a mapping (``$@schedulers[@sampler_name]``) must name one of its entries.

    Raises:
        CLIError: naming the key, what it expects and the value given.
    """
    default = parser.get(key)
    if key == "bundle_root" or default is None or (isinstance(default, str) and default[:1] in "$@%"):
        kind = None
    else:
        kind = _kind(default)
    if kind is not None:
        expected, words = kind
        fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        fits = fits or (expected is float and isinstance(value, int) and not isinstance(value, bool))
        fits = fits or (expected is list and isinstance(value, tuple))
        if not fits:
            raise CLIError(f"--{key} expects {words} (its default is {default!r}), got {value!r}")
    for mapping, index in _INDEXED.findall("\n".join(_config_strings(parser.config))):
        options = parser.get(mapping)
        if index == key and isinstance(options, dict) and value not in options:
            raise CLIError(f"--{key} must be one of {sorted(options)}, got {value!r}")


class _DropRecords:
    """A logging filter dropping records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        self.prefixes = prefixes

    def filter(self, record: Any) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def quiet_bundle_runner() -> None:
    """Silence what MONAI's runner says at every run that a user of these bundles cannot act on: its warning that a
    config runs code (these are the project's own configs, or the user's), and that a preset file lies in a subfolder
    of ``configs/`` (the meta and logging files are always given)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
    drop = _DropRecords("Not all config files are in")
    for name in ("monai.bundle.workflows", "monai.bundle"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRecords) for f in logger.filters):
            logger.addFilter(drop)


def _cmd_list(_: argparse.Namespace) -> int:
    bundles = list_bundles()
    if not bundles:
        print("no bundles found (set ECHO_MONAI_BUNDLES to the folder holding them)")
    for bundle in bundles:
        stages = "; ".join(f"{cmd}: {', '.join(bundle.stages(cmd)) or '-'}" for cmd in COMMAND_FILES)
        print(f"{bundle.name:24s} {stages}; presets: {', '.join(bundle.presets()) or '-'}")
    return 0


def _cmd_bundle(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        bundle = find_bundle(args.bundle)
    except BundleError as e:
        raise CLIError(str(e)) from e
    run_args = resolve_run(
        bundle,
        args.command,
        args.stage,
        parse_overrides(extra),
        getattr(args, "multi_gpu", False),
        args.preset,
        check_dataset=not args.dry_run,
        record=not args.dry_run,
    )
    if args.dry_run:
        print(json.dumps(run_args, indent=1, default=str))
        return 0
    from monai.bundle import run

    quiet_bundle_runner()
    try:
        run(**run_args)
    except Exception as error:  # noqa: BLE001 - reported on one line, the traceback goes to a log (or --debug)
        if args.debug:
            raise
        path = write_traceback(error, Path(run_args["bundle_root"]) / "logs")
        raise RunError(f"{one_line(error)}\n(the full traceback is in {path}; --debug prints it)") from error
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from echo_monai.apps.simulate import MIN_SUBJECTS, simulate

    least = MIN_SUBJECTS.get(args.kind, 1)
    if args.n < least:
        raise CLIError(f"--n {args.n} is too small for the {args.kind} layout's splits; give --n {least} or more")
    options: dict[str, Any] = {}
    if args.image_size is not None:
        options["image_size"] = tuple(args.image_size)
    if args.frames is not None:
        options["n_frames"] = args.frames
    if args.variability is not None:
        options["variability"] = args.variability
    try:
        out = simulate(args.kind, args.out, n=args.n, seed=args.seed, **options)
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(f"wrote {args.kind} phantom dataset to {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from echo_monai.apps.demo import run_demo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        report = run_demo(
            args.out,
            patients=args.patients,
            epochs=args.epochs,
            copies=args.copies,
            sampling_steps=args.steps,
            seg_epochs=args.seg_epochs,
            seed=args.seed,
        )
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(f"report: {report / 'report.md'}")
    return 0


def bundle_parser(bundle: str, overrides: dict[str, Any], command: str = "infer", stage: str | None = None):
    """The parsed configs of a trained `bundle` (``bundle_root`` in `overrides`) for `command`/`stage`, with its
    recorded training settings and `overrides`, checked as the CLI checks them; for code that runs a trained bundle
    in-process (the Deploy application, side-by-side evaluation).

    Raises:
        CLIError: an override key that no config defines, or a value that does not fit.
    """
    from monai.bundle import ConfigParser

    from echo_monai.apps.bundles import find_bundle

    args = resolve_run(find_bundle(bundle), command, stage, overrides, check_dataset=False, record=False)
    parser = ConfigParser()
    parser.read_config(args.pop("config_file"))
    parser.update({k: v for k, v in args.items() if k not in ("meta_file", "logging_file")})
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo-monai",
        description="MONAI bundles for synthetic ultrasound: a thin command line over 'python -m monai.bundle run'.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="bundles and their stages")
    for command, help_text in (("train", "train a bundle stage"), ("infer", "run inference"), ("evaluate", "evaluate")):
        p = sub.add_parser(command, help=help_text, epilog="config overrides: --KEY VALUE ... (see echo-monai --help)")
        p.add_argument("bundle", help="bundle name or folder")
        p.add_argument("--stage", default=None, help="stage (configs/<command>_<stage>.yaml); default stage otherwise")
        if command == "train":
            p.add_argument(
                "--multi-gpu", dest="multi_gpu", action="store_true", help="layer multi_gpu_train.yaml (torchrun)"
            )
        p.add_argument("--preset", default=None, help="named sizes: configs/presets/<name>.yaml (e.g. tiny, cpu)")
        p.add_argument("--dry-run", dest="dry_run", action="store_true", help="check the arguments, print, run nothing")
        p.add_argument("--debug", action="store_true", help="on an error, print the full traceback")
    p = sub.add_parser("simulate", help="write a phantom dataset in a public dataset's layout")
    p.add_argument("kind", choices=SIMULATE_KINDS)
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=8, help="subjects/videos to simulate (every split present from 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", dest="image_size", type=int, nargs=2, metavar=("H", "W"), help="frame size")
    p.add_argument("--frames", type=int, default=None, help="frames per video (video kinds)")
    p.add_argument(
        "--variability", default=None, choices=("standard", "hard"), help="camus: shape, pose and intensity spread"
    )
    p = sub.add_parser("demo", help="echo_seg_ddpm end to end on phantom data (CPU, minutes)")
    p.add_argument("--out", default="echo_monai_demo", help="working folder")
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--epochs", type=int, default=35, help="generator training epochs")
    p.add_argument("--copies", type=int, default=2, help="synthetic label maps per training label map")
    p.add_argument("--steps", type=int, default=10, help="DPM-Solver++ sampling steps")
    p.add_argument("--seg-epochs", dest="seg_epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return parser


EPILOG = """bundle commands take config overrides as --KEY VALUE, exactly as 'python -m monai.bundle run' does:
  echo-monai train echo_seg_ddpm --dataset_dir /data/CAMUS --epochs 2 --image_size 128
  echo-monai train echo_flow --stage vae --preset cpu --network_def::denoiser::channels "[32, 64]"
values are Python literals; --dry-run checks them and prints the run's arguments; a failed run prints its error on
one line and writes the traceback to <bundle_root>/logs/last_error.log (--debug prints it). 'echo-monai list'
shows each bundle's stages and presets."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``echo-monai``; returns the exit code (2 for user errors)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "list":
            code = _cmd_list(args)
        elif args.command in COMMAND_FILES:
            code = _cmd_bundle(args, extra)
        elif args.command == "demo":
            if extra:
                raise CLIError(f"unexpected arguments {extra}")
            code = _cmd_demo(args)
        else:
            if extra:
                raise CLIError(f"unexpected arguments {extra}")
            code = _cmd_simulate(args)
    except CLIError as e:
        print(f"echo-monai: error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"echo-monai: error: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
