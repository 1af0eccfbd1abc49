"""What every command shares: address parsing, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from ..errors import InvalidArgument

EXIT_OK = 0
EXIT_FILE = 1
EXIT_USAGE = 2
EXIT_TRANSLATION = 3
EXIT_VIOLATION = 4
EXIT_INCOMPLETE = 5            # a search that did not look everywhere: not clean, not a violation
EXIT_CHECKPOINT = 6            # a --checkpoint DIR this search must neither resume nor overwrite

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
    from pgalloc.registry import VersionError, load_version

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


def refuse_overwrite(path, force: bool, option: str | None = None) -> None:
    """Exit 1 unless ``path`` may be written (``s390emu.output.check_output``): an
    existing file without ``--force``, or anything but a regular file, is never replaced."""
    from ..output import OutputError, check_output

    try:
        check_output(path, force, option)
    except OutputError as e:
        fail_file(str(e))


@contextmanager
def version_code(version: str | None = None) -> Iterator[None]:
    """Run code that executes an allocator version's steps.  Whatever a version file
    raises there (its step raising, returning a label its class does not have, calling
    ``sys.exit``) is that file's failure: one line naming the file and where, exit 1.
    The file is ``version``'s when it is one, or any version file the traceback passes
    through; an exception of a built-in version is a bug of s390emu and is raised."""
    from pgalloc.registry import BUILT_IN, VERSIONS, describe_error

    files = {m.__file__: n for n, m in VERSIONS.items() if n not in BUILT_IN and getattr(m, "__file__", None)}
    try:
        yield
    except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
        raise
    except BaseException as e:  # noqa: BLE001 - a version file's failure is reported, not raised
        where = _frame_in(e, files)
        path = where[0] if where else getattr(VERSIONS.get(version), "__file__", None)
        if path not in files:
            raise
        at = f" (in {where[1]}, line {where[2]})" if where else ""
        fail_file(f"{path}: version {files[path]} failed{at}: {describe_error(e)}")


def _frame_in(e: BaseException, files) -> tuple[str, str, int] | None:
    """The innermost frame of ``e``'s traceback in one of ``files``: (file, function, line)."""
    found = None
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in files:
            found = (code.co_filename, code.co_qualname, tb.tb_lineno)
        tb = tb.tb_next
    return found


def demo_storage(spec: str, param_hint: str):
    """The demo (``s390emu.inspect.open_demo``) built with version ``spec``
    (``allocator_version``), a version file's failure reported by ``version_code``."""
    from ..inspect import open_demo

    version = allocator_version(spec, param_hint)
    with version_code(version):
        return open_demo(version)


def hex64(value: int) -> str:
    """A 64-bit value the way ``--json`` writes it: ``"0x..."``."""
    return f"{value:#x}"


def echo_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    click.echo(json.dumps(document, indent=2))
