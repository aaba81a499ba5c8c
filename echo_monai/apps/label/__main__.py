"""Make a MONAI Label app folder serving trained echo_monai bundles.

    python -m echo_monai.apps.label APP_DIR work/seg work/flow          # tasks named by their bundle
    python -m echo_monai.apps.label APP_DIR seg=work/seg flow=work/flow  # tasks named here
    $(bash .ci/label-env) -m monailabel.main start_server --app APP_DIR --studies STUDIES --host 127.0.0.1 --port 8000

It writes ``APP_DIR/main.py`` (the app class, :class:`echo_monai.apps.label.app.EchoMonaiLabelApp`) and links each
trained bundle root (the ``--bundle_root`` of ``echo-monai train``) as ``APP_DIR/model/<task>``. MONAI Label writes
its ``logs/`` there too, so the app folder is a folder of yours, not the package.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from echo_monai.apps.serving import ServeError, trained_bundle

MAIN = '''"""MONAI Label app: echo_monai's trained bundles in ./model/ (made by python -m echo_monai.apps.label)."""

from echo_monai.apps.label.app import EchoMonaiLabelApp  # noqa: F401 (MONAI Label finds the app class here)
'''


def make_app(app_dir: str | os.PathLike, bundles: list[str]) -> dict[str, Path]:
    """Write the app folder; returns its tasks and their model folders.

    Raises:
        ServeError: a bundle root that cannot be served, two tasks of one name, or a task name taken by another link.
    """
    app = Path(app_dir)
    tasks: dict[str, Path] = {}
    for entry in bundles:
        name, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
        root = Path(path).resolve()
        bundle = trained_bundle(root)
        name = name or bundle
        if name in tasks:
            raise ServeError(f"two bundle folders for task '{name}': name them NAME=PATH.")
        tasks[name] = root
    models = app / "model"
    models.mkdir(parents=True, exist_ok=True)
    for name, root in tasks.items():
        link = models / name
        if link.is_symlink() and link.resolve() != root:
            link.unlink()
        elif link.exists() and not link.is_symlink():
            raise ServeError(f"'{link}' exists and is not a link to a bundle folder; remove it or choose another name.")
        if not link.exists():
            link.symlink_to(root, target_is_directory=True)
    tmp = app / "main.py.tmp"
    tmp.write_text(MAIN)
    tmp.replace(app / "main.py")
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echo_monai.apps.label", description=__doc__.split("\n\n")[0])
    parser.add_argument("app_dir", help="the MONAI Label app folder to write (made if absent)")
    parser.add_argument("bundles", nargs="+", help="trained bundle roots, each PATH or TASK=PATH")
    args = parser.parse_args(argv)
    try:
        tasks = make_app(args.app_dir, args.bundles)
    except ServeError as error:
        print(f"echo_monai label: error: {error}", file=sys.stderr)
        return 2
    for name, root in tasks.items():
        print(f"task {name}: {root}")
    print(f"start it (MONAI Label's python): python -m monailabel.main start_server --app {args.app_dir} "
          "--studies STUDIES --host 127.0.0.1 --port 8000")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
