#!/usr/bin/env python3
"""Draw the table tree of an ASCE as Graphviz DOT (what ``s390emu ptdump --dot F`` writes).

    python tools/pttree.py DUMP                      # the kernel's tables (swapper_pg_dir)
    python tools/pttree.py DUMP --cpu 1 --space primary > mm.dot
    python tools/pttree.py DUMP --asce 0x90007 | dot -Tsvg > tree.svg

One box per region/segment/page table (origin, valid entries; a page table says which
2K half of its frame it is), one edge per valid entry labelled with its index and the
virtual address it starts; 1M/2G frames are leaf notes.  DUMP is an ELF dump or a raw
image.  Exit 1 with one line for a bad file, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys

from s390emu import S390emuError
from s390emu.inspect import SPACES, open_dump, table_tree_dot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--asce", type=lambda s: int(s, 16))
    g.add_argument("--cpu", type=int)
    p.add_argument("--space", choices=list(SPACES), default="home")
    a = p.parse_args(argv)
    try:
        st = open_dump(a.dump)
        asce = a.asce
        if asce is None and a.cpu is not None:
            asce = st.asce(a.cpu, a.space)
        if asce is None:
            if st.kernel_root is None:
                p.error("the dump has no SYMBOL(swapper_pg_dir): give --asce or --cpu")
            asce = st.kernel_asce()
    except S390emuError as e:
        print(f"pttree: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(table_tree_dot(st.mem, asce, title=f"ASCE {asce:#018x} ({a.dump})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
