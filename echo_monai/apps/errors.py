"""Errors for people: the first project error of a failed run as one line, the full traceback in a log file.

MONAI's config machinery wraps an error raised while a component is built or an expression is evaluated in
``RuntimeError("Failed to instantiate ...")`` / ``"Failed to evaluate ..."``, several times over, so the last line of
the traceback is generic and the message the reader or network wrote is in the middle. :func:`one_line` digs it
out; the ``echo-monai`` CLI prints it (``--debug`` shows the traceback instead), and :func:`install_excepthook` does
the same for ``python -m monai.bundle run`` (bundles call it from ``initialize``; ``ECHO_MONAI_DEBUG=1`` keeps
Python's default).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import TracebackType

__all__ = ["install_excepthook", "one_line", "project_error", "root_cause", "write_traceback"]

LOG_NAME = "last_error.log"


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception behind ``error`` (following ``raise ... from`` and implicit chaining)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions behind it, outermost first."""
    chain, seen = [error], {id(error)}
    while True:
        inner = chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)
        if inner is None or id(inner) in seen:
            return chain
        seen.add(id(inner))
        chain.append(inner)


def _raised_here(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE)


def project_error(error: BaseException) -> BaseException:
    """The error echo_monai raised for the user (the outermost one raised by its own code, under MONAI's "Failed to
    instantiate / evaluate" wrappers), else the innermost error of the chain."""
    for candidate in _chain(error):
        if _raised_here(candidate):
            return candidate
    return root_cause(error)


def one_line(error: BaseException) -> str:
    """The message of :func:`project_error` (for user errors without the exception's type name)."""
    root = project_error(error)
    message = root.args[0] if isinstance(root, KeyError) and root.args else str(root)
    message = str(message).strip() or type(root).__name__
    if isinstance(root, (ValueError, FileNotFoundError, KeyError, TypeError, PermissionError)):
        return message
    return f"{type(root).__name__}: {message}"


def write_traceback(error: BaseException, log_dir: str | os.PathLike | None = None) -> Path:
    """Write the full traceback of ``error`` to ``<log_dir>/last_error.log`` (the temporary folder by default).

    Returns:
        the log file.
    """
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for folder in (log_dir, Path(tempfile.gettempdir()) / "echo_monai"):
        if folder is None:
            continue
        try:
            path = Path(folder) / LOG_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise OSError("write_traceback: no writable folder for the log")


def install_excepthook(log_dir: str | os.PathLike | None = None) -> None:
    """Make an uncaught error end the process with its first project error on one line (and the traceback in a
    log file), unless ``ECHO_MONAI_DEBUG`` is set. Safe to call more than once."""
    previous = sys.excepthook if not getattr(sys.excepthook, "_echo_monai", False) else sys.__excepthook__

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if os.environ.get("ECHO_MONAI_DEBUG") or issubclass(kind, KeyboardInterrupt):
            previous(kind, error, tb)
            return
        path = write_traceback(error.with_traceback(tb), log_dir)
        print(
            f"error: {one_line(error)}\n(full traceback in {path}; set ECHO_MONAI_DEBUG=1 to print it)", file=sys.stderr
        )

    hook._echo_monai = True  # type: ignore[attr-defined]
    sys.excepthook = hook
