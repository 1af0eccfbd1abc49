"""The ``s390emu`` command line: one click group, one module per command.

Exit codes, the same for every command:

== ==========================================================================
0  done; every address translated, nothing broke
1  an unreadable or malformed file, a version file that fails, an output path that
   must not be replaced, or a stdout that is closed or full (one line on stderr)
2  bad usage: a parameter that does not parse (click names it)
3  a translation exception for at least one address (``translate``)
4  a violation found (``explore``, ``check``)
5  incomplete: a search cut by a bound, Ctrl-C or a dead worker process, or a
   scenario operation that never started (``explore``: not clean, not a violation)
== ==========================================================================
"""

from __future__ import annotations

import sys

import click

from .commands import COMMANDS
from .commands.common import EXIT_FILE
from .output import discard_stdout, flush_stdout, stdout_error, stdout_problem


class Cli(click.Group):
    """The group, with the one place where stdout's state is handled for every command:
    a closed stdout is refused before any work, a write that fails (``> /dev/full``) ends
    with one line on stderr and exit 1 instead of a traceback."""

    def main(self, *args, **kwargs):
        problem = stdout_problem()
        if problem is not None:
            _fail(problem)
        try:
            super().main(*args, **kwargs)
        except SystemExit:
            problem = flush_stdout()
            if problem is not None:
                _fail(problem)
            raise
        except OSError as e:              # click passes on every OSError but EPIPE
            if not _in_stdout_echo(e):
                raise
            discard_stdout()
            _fail(stdout_error(e))
        problem = flush_stdout()          # standalone_mode=False returns here
        if problem is not None:
            _fail(problem)


def _in_stdout_echo(e: BaseException) -> bool:
    """Whether ``e`` was raised writing to stdout: inside ``click.echo`` without ``err``."""
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is click.echo.__code__ and not frame.f_locals.get("err"):
            return True
        tb = tb.tb_next
    return False


def _fail(problem: str) -> None:
    click.echo(f"s390emu: {problem}", err=True)
    sys.exit(EXIT_FILE)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="s390emu")
def main() -> None:
    """Byte-level s390x storage, a DAT walker and Linux's s390 page-table allocator.

    Start with the built-in demo address space:

    \b
      s390emu translate 0x10000000
      s390emu translate --help        (lists the demo's interesting addresses)
    """


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
