#!/usr/bin/env python3
"""Draw the page-table frames of a dump as an SVG fragment map (= ``s390emu pages --svg``).

    python tools/fragmap.py DUMP frames.svg [--force]

One cell per 4K page-table frame, its two 2K halves coloured allocated / pending (RCU) /
deferred (pte_free_defer) / free, frames on a pgtable_list outlined in red, PG_active
marked, the mm whose tables reach the frame under each cell, a legend.  Decoded from the
dump alone through its VMCOREINFO (``s390emu.inspect.pagetables``).  An existing SVG
file is replaced only with --force, and only a regular file is.  Exit 1 with one line
for a bad dump or output path, 2 for bad usage (usage on stderr).
"""

from __future__ import annotations

import argparse
import sys

from s390emu import S390emuError
from s390emu.inspect import fragmap_svg, open_dump, page_table_frames
from s390emu.output import check_output, write_text
from s390emu.vmcoreinfo import LayoutError


def main(argv: list[str] | None = None) -> int:
    """Run the tool: 0 when the SVG was written, 1 for a bad dump or output, 2 for bad usage."""
    p = argparse.ArgumentParser(prog="fragmap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump", help="an ELF dump or raw image of an s390emu machine")
    p.add_argument("svg", help="the SVG file to write")
    p.add_argument("--force", action="store_true", help="replace an existing SVG file")
    a = p.parse_args(argv)
    try:
        check_output(a.svg, a.force)                  # before the work: a bad path costs nothing
        st = open_dump(a.dump)
        frames = page_table_frames(st.mem, st.vmcoreinfo)
        write_text(a.svg, fragmap_svg(frames, title=f"page-table frames of {a.dump}"), a.force)
    except LayoutError as e:                          # the library's message does not name the file
        print(f"fragmap: {a.dump}: {e}", file=sys.stderr)
        return 1
    except S390emuError as e:
        print(f"fragmap: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
