"""``s390emu demo``: build the built-in demo and say what the allocator did."""

from __future__ import annotations

import click

from .common import allocator_version, echo_json, hex64, version_code


@click.command()
@click.option("--version", "version", default="v66", show_default=True, metavar="V",
              help="The allocator version that builds the demo: v515, v64, seed, v66, v67, or a "
                   "version file (a patch).")
@click.option("--json", "as_json", is_flag=True, help="The same as one JSON document.")
def demo(version, as_json):
    """Build the demo address spaces and print what was allocated, freed and reused.

    Two processes on a 64 MiB, 2-CPU machine: A with a 3-level ASCE, B upgraded to 5
    levels; a munmap whose page tables go through mmu_gather and RCU; a THP collapse
    through pte_free_defer.  Ends with translate commands to try.

    \b
    Examples:
      s390emu demo
      s390emu demo --version seed --json
    """
    from pgalloc.demo import ADDRESSES, build_demo

    spec = version                      # what to type again: a name, or a version file's path
    version = allocator_version(spec, "'--version'")
    with version_code(version):
        d = build_demo(version)
    if as_json:
        echo_json({"version": version, "asce3": hex64(d.asce3), "asce5": hex64(d.asce5),
                   "mm3": hex64(d.mm3), "mm5": hex64(d.mm5), "log": d.log,
                   "addresses": [{"vaddr": hex64(a), "what": w} for a, w in ADDRESSES]})
        return
    click.echo("\n".join(d.log))
    click.echo(f"\nProcess A's ASCE {d.asce3:#x}, process B's {d.asce5:#x} (the default). Try:")
    tries = [(f"{a:#x}", what) for a, what in ADDRESSES]
    tries.append((f"--write {ADDRESSES[0][0]:#x}", "a store to the text: protection 0x04"))
    tries.append((f"--asce {d.asce3:#x} {ADDRESSES[-1][0]:#x}", "beyond the 3-level space: ASCE-type 0x38"))
    for args, what in tries:
        click.echo(f"  {'s390emu translate --demo ' + spec + ' ' + args:<62} # {what}")
