"""Where results go: output files that replace only what may be replaced, and a stdout
that cannot be written reported in one line.  The CLI and ``tools/`` share them.

``check_output`` is called before any work is done, so that a bad output path costs
nothing: it refuses a directory, a device node, a fifo or a socket by name (writing or
renaming over one would replace something of the user's that is not a result file), an
existing regular file unless ``force``, and a path whose directory does not exist.
``stdout_problem`` and ``flush_stdout`` (the CLI) and ``emit`` (``tools/``) turn a closed
or full stdout into one line.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import S390emuError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"))


class OutputError(S390emuError):
    """An output path that must not or cannot be written; the message names it."""


def path_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file (``"a fifo"``, ...); None for a regular
    file (or a link to one) and for a path that does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def check_output(path: str | os.PathLike, force: bool, option: str | None = None) -> None:
    """Raise ``OutputError`` unless ``path`` may be written as a new result file.

    >>> import tempfile
    >>> check_output(tempfile.gettempdir(), True, "--svg")
    Traceback (most recent call last):
    ...
    s390emu.output.OutputError: ...: is a directory (only a regular file is written or replaced) (--svg)
    """
    kind = refused_kind(path)
    if kind is not None:
        raise OutputError(kind + (f" ({option})" if option else ""))
    if os.path.lexists(path) and not force:
        raise OutputError(f"{path}: exists (use --force to overwrite{' ' + option if option else ''})")
    parent = Path(path).parent
    if not parent.is_dir():
        raise OutputError(f"{path}: No such file or directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: Permission denied (directory {parent} is not writable)")


def refused_kind(path: str | os.PathLike) -> str | None:
    """The one line refusing ``path`` as an output because it is no regular file, or None."""
    kind = path_kind(path)
    return None if kind is None else f"{path}: is {kind} (only a regular file is written or replaced)"


def write_text(path: str | os.PathLike, text: str, force: bool, option: str | None = None) -> None:
    """Write ``text`` to ``path`` after ``check_output``; raises ``OutputError``."""
    check_output(path, force, option)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{path}: {e.strerror or e}") from None


def emit(text: str) -> None:
    """Write ``text`` to stdout and flush it; raises ``OutputError`` when stdout is closed
    or cannot be written (what ``tools/`` print their results with)."""
    problem = stdout_problem()
    if problem is not None:
        raise OutputError(problem)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        discard_stdout()
        raise OutputError(stdout_error(e)) from None


def stdout_problem() -> str | None:
    """Why nothing can be written to stdout (it is closed), or None."""
    if sys.stdout is None or getattr(sys.stdout, "closed", False):
        return "stdout is closed: the output would be lost"
    return None


def flush_stdout() -> str | None:
    """Flush stdout; on failure (a full disk, ``> /dev/full``) the reason, after pointing
    the descriptor at /dev/null so that Python's flush at exit adds no second message."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        return None
    except OSError as e:
        discard_stdout()
        return stdout_error(e)


def stdout_error(e: OSError) -> str:
    """The one line for a failed write to stdout."""
    return f"cannot write to stdout: {e.strerror or e}"


def discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null (its buffered bytes can go nowhere else)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
