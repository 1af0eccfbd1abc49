"""Every page whose translation some table entry decides, enumerated from the raw tables.

A whole 4 TiB (or 8 EiB) space cannot be walked page by page, but every page's fate is
decided by exactly one entry: a PTE, a large STE/R3TE, or an invalid entry at some
level.  This yields every page of every page table, and the first and last page of
every span an invalid or large entry decides, so two walkers that agree on all of
these agree on the whole space.  Written from the architecture (``dat-spec.md`` §1),
independently of ``dat``.
"""

from __future__ import annotations

import numpy as np

SHIFT = {3: 53, 2: 42, 1: 31, 0: 20}      # region-first .. segment: index shift per TT


def decided_pages(mem, asce: int) -> np.ndarray:
    """Sorted unique page addresses, one or more per deciding entry (see module doc)."""
    out: list[int] = []
    top = (asce >> 2) & 3
    _table(mem, asce & ~0xFFF, top, 0, out)
    return np.unique(np.array(out, dtype=np.uint64))


def _table(mem, origin: int, tt: int, base: int, out: list[int]) -> None:
    shift = SHIFT[tt]
    span = 1 << shift
    entries = mem.table(origin, 2048)
    for i, e in enumerate(entries.tolist()):
        va = base + i * span
        if e & 0x20:                                    # invalid at this level
            out += [va, va + span - 4096]
        elif tt == 0 and e & 0x400 or tt == 1 and e & 0x400:   # 1M / 2G frame
            out += [va, va + span // 2, va + span - 4096]
        elif tt == 0:
            out += [va + (j << 12) for j in range(256)]       # every PTE
        else:
            _table(mem, e & ~0xFFF, tt - 1, va, out)
