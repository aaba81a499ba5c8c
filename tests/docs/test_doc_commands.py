"""Every command in README.md, docs/ and bundles/*/docs/ runs as written, from the repository root, at toy size.

Each page's ```bash blocks run in order as one bash script in a sandbox that looks like the repository root (the
bundles, the test schema and ``.venv``, linked), with ``echo-monai`` on the PATH and every preset replaced by
``tiny`` (``--preset X`` and a ``presets/X.yaml`` config file; ``ECHO_MONAI_PRESET=tiny`` for commands without one).
A line marked ``# real data`` needs a dataset the sandbox does not have: its ``echo-monai`` command runs with
``--dry-run`` (arguments checked, nothing run), and the files another command names must exist. Lines that set up
or test the checkout itself (``.ci/``) are what CI runs, ``# after the demo`` lines are run by
``tests/apps/test_demo.py`` and ``# with the server`` lines (requests to a running MONAI Label server) by
``tests/bundles/test_label_app.py``; all three are skipped here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(REPO.glob("bundles/*/docs/README.md")),
]
SEPARATE = {"adding_a_bundle.md": "tests/docs/test_adding_a_bundle.py runs its commands with its own YAML"}
FENCE = re.compile(r"^```bash[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _lines(page: Path) -> list[str]:
    """The page's commands: its bash blocks' lines, continuation lines joined."""
    lines = []
    for block in FENCE.findall(page.read_text()):
        lines += [line for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line.strip()]
    return lines


def _toy(line: str) -> str | None:
    """The line as the sandbox runs it, or None when it is not run here."""
    if ".ci/" in line or "# after the demo" in line or "# with the server" in line:
        return None
    line = re.sub(r"--preset \w+", "--preset tiny", line)
    line = re.sub(r"presets/\w+\.yaml", "presets/tiny.yaml", line)
    if "# real data" not in line:
        return line
    command = line.split("# real data")[0].strip()
    if "echo-monai" in command:
        words = shlex.split(command.replace("$(which echo-monai)", "echo-monai"))
        return shlex.join([*words[words.index("echo-monai") :], "--dry-run"])
    files = [w for w in re.findall(r"[\w./-]+\.(?:yaml|json|conf)", command)]
    return " && ".join(f"test -f {shlex.quote(f)}" for f in files) or "true"


def _sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "bundles", root / "bundles", ignore=shutil.ignore_patterns("models", "outputs", "latents"))
    for name in ("models",):
        for bundle in (root / "bundles").iterdir():
            (bundle / name).mkdir(exist_ok=True)
    (root / "tests" / "bundles").mkdir(parents=True)
    shutil.copytree(REPO / "tests" / "bundles" / "schema", root / "tests" / "bundles" / "schema")
    (root / ".venv").symlink_to(Path(sys.executable).parents[1])
    return root


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_the_page_commands_run_as_written(page, tmp_path):
    if page.name in SEPARATE:
        pytest.skip(SEPARATE[page.name])
    lines = [toy for toy in map(_toy, _lines(page)) if toy is not None]
    if not lines:
        pytest.skip("no commands")
    root = _sandbox(tmp_path)
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ECHO_MONAI_PRESET": "tiny",
        "ECHO_MONAI_BUNDLES": str(root / "bundles"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{page.name}:\n{script}\n--- stderr ---\n{done.stderr[-4000:]}"


def test_every_real_data_command_parses_its_arguments(tmp_path):
    """Real-data lines are at least argument-checked: their dry run would fail on an unknown key or bad value."""
    count = 0
    for page in PAGES:
        for line in _lines(page):
            if "# real data" in line and "echo-monai" in line:
                count += 1
                assert "--dry-run" in _toy(line)
    assert count >= 5
