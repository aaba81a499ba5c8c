"""docs/adding_a_bundle.md: its example bundle (the YAML blocks named after their files) trains and generates with
the commands the page gives."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from echo_monai.apps import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding_a_bundle.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(kind: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for lang, info, body in FENCE.findall(DOC.read_text()) if lang == kind]


def test_the_example_bundle_trains_and_generates(tmp_path, monkeypatch):
    files = dict(_blocks("yaml"))
    assert set(files) == {"configs/inference.yaml", "configs/train.yaml"}
    bundle = tmp_path / "my_bundle"
    for name, text in files.items():
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text(text)
    assert sum(len(text.splitlines()) for text in files.values()) < 80  # "a few dozen lines of YAML"
    monkeypatch.chdir(tmp_path)
    (commands,) = _blocks("bash")
    for line in commands[1].splitlines():
        words = shlex.split(line.split("#")[0])
        assert words[0] == "echo-monai", line
        assert cli.main(words[1:]) == 0, line
    assert (bundle / "models" / "model.pt").is_file()
    images = sorted((bundle / "outputs" / "images").glob("synthetic_*.png"))
    assert len(images) == 8
    report = json.loads((bundle / "outputs" / "generation_report.json").read_text())
    assert report["requested"] == 8 and len(report["written"]) == 8
