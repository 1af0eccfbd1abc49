"""The ``s390emu`` command line: one click group, one module per command.

Exit codes, the same for every command:

== ==========================================================================
0  done; every address translated, nothing broke
1  an unreadable or malformed file (one line on stderr)
2  bad usage: a parameter that does not parse (click names it)
3  a translation exception for at least one address (``translate``)
4  a violation found (``explore``, ``check``)
== ==========================================================================
"""

from __future__ import annotations

import click

from .commands import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
