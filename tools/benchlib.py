"""What the benchmark tools share: positive-number arguments, and their ``--markdown FILE``
option, which rewrites the tool's own section of a Markdown file (docs/benchmarks.md) with
the tables it measured.

A section lies between two marker comments, ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; everything outside them is the writer's and is kept byte for byte.
A file without the tool's markers gets the section appended; a missing file is created.
The new text replaces the old in one rename, so a failed run leaves the file as it was.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (anything else is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_markdown_option(ap: argparse.ArgumentParser) -> None:
    """Give a tool's parser ``--markdown FILE``."""
    ap.add_argument("--markdown", metavar="FILE", type=Path,
                    help="also rewrite this tool's section of FILE (between its marker comments) "
                         "with the tables measured, e.g. docs/benchmarks.md")


def check_markdown(ap: argparse.ArgumentParser, path: Path | None) -> None:
    """A usage error (exit 2) before anything is measured when ``path`` cannot be written:
    a directory, or in a directory that does not exist."""
    if path is None:
        return
    if path.is_dir():
        ap.error(f"--markdown: {path} is a directory")
    if not path.parent.resolve().is_dir():
        ap.error(f"--markdown: {path.parent} is not a directory")


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table, the first column left-aligned and the measured ones right-aligned."""
    lines = [header, ["---"] + ["---:"] * (len(header) - 1), *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def provenance() -> str:
    """When, where and how the tables were measured: the date, the machine (CPU count, model,
    and its load average, since a shared machine's seconds are noisy), Python, and the command
    line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    command = "python " + " ".join(shlex.quote(a) for a in [_tool_path(), *sys.argv[1:]])
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return (f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} CPUs ({cpu}{load}), "
            f"Python {platform.python_version()}, by\n`{command}`.")


def _tool_path() -> str:
    """The running tool as the repository names it (``tools/bench_x.py``)."""
    script = Path(sys.argv[0]).resolve()
    return f"{script.parent.name}/{script.name}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of ``path`` with ``body`` (appended when absent)."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    section = f"{begin}\n{body.strip()}\n{end}"
    if begin in old and end in old.split(begin, 1)[1]:
        head, rest = old.split(begin, 1)
        new = head + section + rest.split(end, 1)[1]
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + section + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent.resolve(), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"\n{path}: section {name} rewritten")
