#!/usr/bin/env python3
"""Draw the page-table frames of a dump as an SVG fragment map (= ``s390emu pages --svg``).

    python tools/fragmap.py DUMP frames.svg

One cell per 4K page-table frame, its two 2K halves coloured allocated / pending (RCU) /
deferred (pte_free_defer) / free, frames on a pgtable_list outlined in red, PG_active
marked, the mm whose tables reach the frame under each cell, a legend.  Decoded from the
dump alone through its VMCOREINFO (``s390emu.inspect.pagetables``).
"""

from __future__ import annotations

import sys

from s390emu import S390emuError
from s390emu.inspect import fragmap_svg, open_dump, page_table_frames


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    try:
        st = open_dump(args[0])
        frames = page_table_frames(st.mem, st.vmcoreinfo)
    except S390emuError as e:
        print(f"fragmap: {e}", file=sys.stderr)
        return 1
    with open(args[1], "w") as f:
        f.write(fragmap_svg(frames, title=f"page-table frames of {args[0]}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
