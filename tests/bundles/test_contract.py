"""The bundle contract (docs/bundles.md), checked for every folder in bundles/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "schema" / "meta_schema_20240725.json"
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if p.is_dir()) if (REPO / "bundles").is_dir() else []
REQUIRED_FILES = [
    "LICENSE",
    "docs/README.md",
    "configs/metadata.json",
    "configs/inference.yaml",
    "configs/train.yaml",
    "configs/evaluate.yaml",
    "configs/multi_gpu_train.yaml",
    "configs/logging.conf",
]

pytestmark = pytest.mark.skipif(not BUNDLES, reason="no bundle in bundles/ yet")


@pytest.fixture(params=BUNDLES, ids=[b.name for b in BUNDLES])
def bundle(request) -> Path:
    return request.param


def _configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / n) for n in names]


def test_layout(bundle):
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    assert not missing, f"{bundle.name} lacks {missing}"
    assert (bundle / "models").is_dir()
    assert not list(bundle.rglob("*.py")), "bundles hold configs and docs, not Python"
    assert not list((bundle / "configs").glob("*.yml")), "MONAI Label/Deploy ignore .yml: use .yaml"
    readme = (bundle / "docs" / "README.md").read_text().lower()
    for section in ("citation", "data", "commands", "expected results"):
        assert section in readme, f"{bundle.name}/docs/README.md has no '{section}' section"


def test_metadata_valid_offline(bundle, monkeypatch):
    import monai.bundle.scripts as scripts
    from monai.bundle import verify_metadata

    def _no_download(url, filepath, **kwargs):
        assert Path(filepath).is_file(), f"the schema would be downloaded from {url}"

    monkeypatch.setattr(scripts, "download_url", _no_download)
    meta_file = bundle / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))
    meta = json.loads(meta_file.read_text())
    versions = {k: meta[k] for k in ("monai_version", "pytorch_version", "numpy_version")}
    versions.update(meta["required_packages_version"])
    for name, value in versions.items():
        version = Version(value)
        assert version.local is None and not version.is_devrelease, f"{name}={value} is not a pip-installable release"


def test_inference_loads_alone_and_owns_network_def(bundle):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle)
    assert isinstance(parser.get_parsed_content("network_def"), torch.nn.Module)
    assert parser.get_parsed_content("inferer") is not None
    for other in sorted((bundle / "configs").glob("*.yaml")):
        if other.name == "inference.yaml":
            continue
        keys = ConfigParser.load_config_file(str(other)).keys()
        assert not any(k == "network_def" or k.startswith("network_def#") for k in keys), (
            f"{other.name} re-declares network_def"
        )


def _smoke_module(bundle: Path):
    """The bundle's smoke-test module; it provides ``make_overrides(root) -> {"train": {...}, "infer": {...}}``."""
    path = REPO / "tests" / "bundles" / f"test_{bundle.name}.py"
    spec = importlib.util.spec_from_file_location(f"_smoke_{bundle.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "workflow_type, command, files",
    [
        ("train", "train", ("inference.yaml", "train.yaml")),
        ("infer", "infer", ("inference.yaml",)),
    ],
)
def test_check_properties(bundle, workflow_type, command, files, tmp_path):
    from monai.bundle import ConfigWorkflow

    overrides = dict(_smoke_module(bundle).make_overrides(tmp_path)[command])
    preset = overrides.pop("preset", None)  # the CLI's --preset: one more config file, last
    presets = [str(bundle / "configs" / "presets" / f"{preset}.yaml")] if preset else []
    workflow = ConfigWorkflow(
        config_file=_configs(bundle, *files) + presets,
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    assert not workflow.check_properties()


@pytest.mark.parametrize(
    "stack",
    [
        ("inference.yaml", "evaluate.yaml"),
        ("inference.yaml", "train.yaml", "multi_gpu_train.yaml"),
    ],
)
def test_overlays_parse(bundle, stack):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(_configs(bundle, *stack))
    parser.parse()
    assert "network_def" in parser


def test_smoke_test_exists(bundle):
    smoke = REPO / "tests" / "bundles" / f"test_{bundle.name}.py"
    assert smoke.is_file(), f"{bundle.name} needs a tiny-override smoke run in {smoke.relative_to(REPO)}"
    module = _smoke_module(bundle)
    assert callable(getattr(module, "make_overrides", None)), f"{smoke.name} must define make_overrides(root)"
    assert [n for n in dir(module) if n.startswith("test_") and "train" in n], f"{smoke.name} has no training test"


def _leaves(node, key=""):
    """(id, value) of every scalar in a config tree, ids joined with '::'."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{key}::{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{key}::{i}")
    else:
        yield key, node


def test_configs_declare_and_python_runs(bundle):
    """The config limits: inference.yaml <= 150 lines; `$` expressions <= 100 characters; the `::` separator; imports
    only in the base; every `run` entry a call (no entry evaluated only for a side effect)."""
    import re

    from monai.bundle import ConfigParser

    inference = bundle / "configs" / "inference.yaml"
    assert len(inference.read_text().splitlines()) <= 150, f"{inference.name} is longer than 150 lines"
    for path in sorted((bundle / "configs").glob("*.yaml")):
        config = ConfigParser.load_config_file(str(path))
        if path.name != "inference.yaml":
            assert "imports" not in config, f"{path.name} repeats the imports of inference.yaml"
        for key in config:
            assert "#" not in key, f"{path.name}: id {key!r} uses the old '#' separator; use '::'"
        for key, value in _leaves(config):
            if not isinstance(value, str):
                continue
            assert not re.search(r"@[\w:]+#", value), f"{path.name}: {key} uses the old '#' separator: {value}"
            if value.startswith("$") and not value.startswith("$import"):
                assert len(value) - 1 <= 100, f"{path.name}: {key} is a {len(value) - 1}-character expression"
        for entry in config.get("run", []):
            assert re.fullmatch(r"\$@[\w:]+(\.\w+)?\(.*\)", entry), f"{path.name}: run entry {entry!r} is not a call"


def test_presets_parse_on_every_stage_and_name_existing_ids(bundle):
    """Each preset (configs/presets/*.yaml) layers on every stage, and each of its ids exists in some stage."""
    from monai.bundle import ConfigParser

    from echo_monai.apps.bundles import COMMAND_FILES, Bundle

    presets = sorted((bundle / "configs" / "presets").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"tiny", "cpu"}, f"{bundle.name} needs tiny and cpu presets"
    stacks = [Bundle(bundle).config_files(c, s) for c in COMMAND_FILES for s in Bundle(bundle).stages(c)]
    for preset in presets:
        keys = ConfigParser.load_config_file(str(preset)).keys()
        known = set()
        for files in stacks:
            parser = ConfigParser()
            parser.read_config([*files, str(preset)])
            parser.parse()
            plain = ConfigParser()
            plain.read_config(files)
            known |= {k for k in keys if k in plain}
        assert set(keys) <= known, f"{preset.name}: {sorted(set(keys) - known)} are ids of no stage"
