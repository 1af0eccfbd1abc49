"""What every command shares: address parsing, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from ..errors import InvalidArgument

EXIT_OK = 0
EXIT_FILE = 1
EXIT_USAGE = 2
EXIT_TRANSLATION = 3
EXIT_VIOLATION = 4
EXIT_INCOMPLETE = 5            # a search that did not look everywhere: not clean, not a violation

U64_MAX = (1 << 64) - 1


def parse_u64(text: str) -> int:
    """Parse a 64-bit value: ``0x`` hex (or plain hex digits), ``_`` separators allowed.

    >>> hex(parse_u64("0x7fff_ffff"))
    '0x7fffffff'
    """
    t = text.strip().lower().replace("_", "")
    if t.startswith("0x"):
        t = t[2:]
    if not t or any(c not in "0123456789abcdef" for c in t):
        raise InvalidArgument(f"{text!r} is not a hexadecimal number")
    value = int(t, 16)
    if value > U64_MAX:
        raise InvalidArgument(f"{text!r} does not fit in 64 bits")
    return value


class U64(click.ParamType):
    """A click parameter type for 64-bit addresses and entries (hex, ``0x``, ``_``)."""

    name = "HEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_u64(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


HEX = U64()


def allocator_version(spec: str, param_hint: str) -> str:
    """The allocator version ``spec`` names: a built-in one (v515, v64, seed, v66, v67) or
    a version file (a patch, ``pgalloc.versions.load_version``), loaded.  An unknown name
    is bad usage (exit 2); a version file that does not load exits 1 with the reason."""
    from pgalloc.versions import VersionError, load_version

    try:
        return load_version(spec)
    except VersionError as e:
        if spec.endswith(".py"):
            fail_file(str(e))
        raise click.BadParameter(str(e), param_hint=param_hint) from None


def fail_file(message: str) -> NoReturn:
    """Report an unreadable or malformed file in one line and exit 1."""
    click.echo(f"s390emu: {message}", err=True)
    sys.exit(EXIT_FILE)


def refuse_overwrite(path, force: bool, option: str) -> None:
    """Exit 1 when ``path`` exists and ``--force`` was not given: nothing is overwritten unasked."""
    if not force and os.path.lexists(path):
        fail_file(f"{path} exists; pass --force to overwrite it ({option})")


def hex64(value: int) -> str:
    """A 64-bit value the way ``--json`` writes it: ``"0x..."``."""
    return f"{value:#x}"


def echo_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    click.echo(json.dumps(document, indent=2))
