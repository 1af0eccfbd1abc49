"""A CPU's TLB as the architecture allows it to be, kept to the entries that name a table.

What the z/Architecture says (reference ``walkers-and-tlb.md`` §1, from the PoP text
Linux quotes and its ancestors): an entry may be placed in the TLB *at any time* while
an ASCE is loaded in a control register, but only from a table entry that is attached
(reached from that ASCE) and valid, and that would not cause a translation-specification
exception; once formed it may be used after the entry in storage is invalidated or
changed, until a purge (IPTE, IDTE, CSP, PTLB) clears it.

The emulator keeps, per CPU, only the entries that name a table, because those are the
ones that matter once a table is freed:

* a region or segment entry, as ``(asce, table, designates, level)``: read from the
  region or segment table at ``table`` (of ``level``: 0 segment, 1 region third, 2
  region second, 3 region first), designating the next-level table at ``designates``;
* the PTEs of one page table, as ``(asce, table, 0, -1)``: at least one valid PTE read
  from the page table at ``table`` (PTEs are kept per table: every zap the modelled paths do
  clears a whole table, and every purge that clears one PTE of a table here clears all).

``formable`` is what a CPU with ``asce`` loaded may form now (the same rules of the
walker as ``reach.reachable_tables``); the ``purge_*`` functions are the clearing the
instructions do.  Because an entry *may* be formed at any instant, a model that forms
every formable entry as soon as it is formable (``fill``) holds a superset of what any
run of the machine can hold: every stale entry any run can have, it has.

>>> from s390emu.memory import PhysicalMemory
>>> mem = PhysicalMemory(1 << 20)
>>> mem.table(0x10000, 2048)[:] = 0x20              # a segment table, every entry empty
>>> mem.write_u64(0x10000 + 8 * 3, 0x30800)          # STE 3 -> page table 0x30800
>>> mem.table(0x30800, 256)[:] = 0x400               # its PTEs invalid, but one:
>>> mem.write_u64(0x30800, 0x7000)
>>> sorted((hex(t), hex(d)) for _, t, d, _ in formable(mem, 0x10003))
[('0x10000', '0x30800'), ('0x30800', '0x0')]
"""

from __future__ import annotations

import numpy as np

from s390emu.memory import PhysicalMemory

from .entries import ASCE_ORIGIN, ASCE_PRIVATE, ASCE_REAL_SPACE, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK

_U = np.uint64
_PTE_INVALID_OR_ZERO = _U(0x400 | 0x800)      # I bit, and bit 52 that must be zero
_PTRS_PER_PTE = 256
_ENTRIES = 2048


def _crst(mem: PhysicalMemory, origin: int, tf: int, tl: int) -> np.ndarray | None:
    """Entries TF..TL of the region or segment table at ``origin``, or None when the table
    is not wholly in storage (a walk there ends in an addressing exception)."""
    lo, hi = origin + 512 * 8 * tf, origin + 512 * 8 * (tl + 1)
    if hi > mem.size:
        return None
    return mem.u64[lo >> 3:hi >> 3]


def formable(mem: PhysicalMemory, asce: int, *, edat1: bool = True, edat2: bool = True,
             read: list | None = None) -> frozenset:
    """Every table-naming TLB entry a CPU with ``asce`` loaded may form now, as
    ``(asce, table, designates, level)`` (see the module docstring).  ``read``, a list,
    gets the ``(lo, hi)`` byte range of every table read: the answer depends on nothing
    else in storage."""
    if asce & ASCE_REAL_SPACE:
        return frozenset()
    edat2 = edat2 and edat1   # EDAT-2 needs EDAT-1 enabled (as in the walker)
    private = bool(asce & ASCE_PRIVATE)
    out = []
    level = (asce & ASCE_TYPE_MASK) >> 2
    todo = [(asce & ASCE_ORIGIN, 0, asce & ASCE_TABLE_LENGTH)]
    while todo and level >= 0:
        nxt = []
        for origin, tf, tl in todo:
            ents = _crst(mem, origin, tf, tl)
            if ents is None:
                continue
            if read is not None:
                read.append((origin + 512 * 8 * tf, origin + 512 * 8 * (tl + 1)))
            for i in np.flatnonzero((ents & _U(0x20 | 0xC)) == _U(level << 2)).tolist():
                e = int(ents[i])
                if level == 0:
                    if (private and e & 0x10) or (edat1 and e & 0x400):
                        continue
                    pt = e & ~0x7FF
                    if pt + 8 * _PTRS_PER_PTE > mem.size:
                        continue
                    out.append((asce, origin, pt, 0))
                    if read is not None:
                        read.append((pt, pt + 8 * _PTRS_PER_PTE))
                    if np.any((mem.u64[pt >> 3:(pt >> 3) + _PTRS_PER_PTE] & _PTE_INVALID_OR_ZERO) == 0):
                        out.append((asce, pt, 0, -1))
                    continue
                if level == 1 and edat2 and e & (0x410 if private else 0x400):
                    continue
                child = e & ~0xFFF
                out.append((asce, origin, child, level))
                nxt.append((child, (e >> 6) & 3, e & 3))
        todo = nxt
        level -= 1
    return frozenset(out)


def naming(entries, lo: int, hi: int) -> list:
    """The entries that were read from, or designate, a table in ``[lo, hi)``."""
    return [e for e in entries if lo <= e[1] < hi or lo <= e[2] < hi]


def purge_asce(entries: frozenset, asce: int) -> frozenset:
    """IDTE clearing-by-ASCE: every entry formed through ``asce`` goes."""
    return frozenset(e for e in entries if e[0] != asce)


def purge_table(entries: frozenset, table: int) -> frozenset:
    """IDTE invalidation-and-clearing of the entry that designates ``table``, or IPTE of the
    PTEs of page table ``table``: the entries that designate it, were read from it, or
    were read from a table below it (the dependent entries, reference §1.2)."""
    gone = {table}
    out = set(entries)
    changed = True
    while changed:
        changed = False
        for e in list(out):
            if e[2] in gone or e[1] in gone:
                out.discard(e)
                if e[2] and e[1] in gone and e[2] not in gone:
                    gone.add(e[2])
                changed = True
    return frozenset(out)


_LEVEL = {0: "STE", 1: "RTTE", 2: "RSTE", 3: "RFTE"}


def describe(entry: tuple) -> str:
    """One entry as a trace row shows it: ``STE 0x18000->0x1c000``, ``PTEs of 0x1c000``."""
    asce, table, designates, level = entry
    if level < 0:
        return f"PTEs of {table:#x}"
    return f"{_LEVEL[level]} {table:#x}->{designates:#x}"
