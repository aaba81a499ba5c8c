"""Every benchmark command quoted in the README, docs/, the bundles' docs and the benchmarks' own docstrings parses
its arguments as written: each script runs up to its ``parse_args`` and stops there (nothing trained or timed), so a
renamed or removed option, or a value a ``choices`` list no longer holds, fails here instead of in a user's shell."""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(REPO.glob("bundles/*/docs/README.md")),
    *sorted((REPO / "benchmarks").glob("*.py")),
]
QUOTED = re.compile(r"(`+)(python benchmarks/\w+\.py.*?)\1", re.DOTALL)
LINE = re.compile(r"^\s*(python benchmarks/\w+\.py[^\n`]*)$", re.MULTILINE)


def _commands() -> list[tuple[str, str]]:
    """(where, command) for every quoted benchmark command, wrapped lines joined, comments and redirections cut."""
    found = {}
    for source in SOURCES:
        text = source.read_text()
        for command in [m.group(2) for m in QUOTED.finditer(text)] + LINE.findall(text):
            command = re.split(r"\s(?:#|>|\||&&|;)", " ".join(command.split()))[0].strip()
            if "[" in command:  # a usage line ([--frames N]), not a command
                continue
            found.setdefault(command, str(source.relative_to(REPO)))
    return sorted((where, command) for command, where in found.items())


COMMANDS = _commands()


class _Parsed(Exception):
    """Raised right after a successful ``parse_args``: the script stops before doing any work."""


def test_the_commands_are_found():
    scripts = {shlex.split(command)[1] for _, command in COMMANDS}
    assert len(COMMANDS) >= 20 and "benchmarks/echo_flow_steps.py" in scripts and "benchmarks/suite.py" in scripts
    # a docstring's command wrapped over two lines is one command
    assert any("--meanflow-velocity conditional teacher" in command for _, command in COMMANDS)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_the_command_parses(where, command, monkeypatch):
    words = shlex.split(command)
    script = REPO / words[1]
    assert script.is_file(), f"{where}: {command}: no such script"
    parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        parse_args(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *words[2:]])
    monkeypatch.syspath_prepend(str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except _Parsed:
        return
    except SystemExit as error:
        pytest.fail(f"{where}: `{command}` does not parse (exit {error.code})")
    pytest.fail(f"{where}: `{command}`: the script ran to the end without parsing arguments")
