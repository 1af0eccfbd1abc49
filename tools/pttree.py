#!/usr/bin/env python3
"""Draw the table tree of an ASCE as Graphviz DOT (what ``s390emu ptdump --dot F`` writes).

    python tools/pttree.py DUMP                      # the kernel's tables (swapper_pg_dir)
    python tools/pttree.py DUMP --cpu 1 --space primary > mm.dot
    python tools/pttree.py DUMP --asce 0x90007 | dot -Tsvg > tree.svg

One box per region/segment/page table (origin, valid entries; a page table says which
2K half of its frame it is), one edge per valid entry labelled with its index and the
virtual address it starts; 1M/2G frames are leaf notes.  DUMP is an ELF dump or a raw
image.  Exit 1 with one line for a bad file (or a stdout that cannot be written), 2 for
bad usage (usage on stderr).
"""

from __future__ import annotations

import argparse
import sys

from s390emu import S390emuError
from s390emu.inspect import SPACES, open_dump, table_tree_dot
from s390emu.output import emit


def hex_u64(text: str) -> int:
    """An argparse type: a 64-bit hexadecimal value (``0x`` and ``_`` allowed), as the CLI takes."""
    digits = text.strip().lower().replace("_", "").removeprefix("0x")
    try:
        value = int(digits, 16) if digits else -1
    except ValueError:
        value = -1
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a 64-bit hexadecimal number")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the tool: 0 when the DOT was written, 1 for a bad file, 2 for bad usage."""
    p = argparse.ArgumentParser(prog="pttree", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump", help="an ELF dump or raw image")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--asce", type=hex_u64, help="the ASCE whose tables to draw (hex)")
    g.add_argument("--cpu", type=int, help="take the ASCE from this CPU's control registers")
    p.add_argument("--space", choices=list(SPACES), default=None,
                   help="with --cpu: which one (default the one the CPU's PSW selects)")
    a = p.parse_args(argv)
    try:
        st = open_dump(a.dump)
        asce = a.asce
        if asce is None and a.cpu is not None:
            asce = st.asce(a.cpu, a.space or st.default_space(a.cpu))
        if asce is None:
            if st.kernel_root is None:
                p.error(f"{st.what()}, no SYMBOL(swapper_pg_dir): give --asce or --cpu")
            asce = st.kernel_asce()
        emit(table_tree_dot(st.mem, asce, title=f"ASCE {asce:#018x} ({a.dump})"))
    except S390emuError as e:
        print(f"pttree: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
