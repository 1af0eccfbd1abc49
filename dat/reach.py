"""Reachability: every table a new DAT walk through an ASCE could use.

Works a whole level at a time: all tables of one level are read as one
``(tables, 2048)`` numpy block, the entries a walk would follow are selected with the
walker's own rules (index within the table's TF..TL, I=0, the right table type, no
common bit under a private ASCE, not an EDAT large frame), and their origins become the
next level.  An mm with 10,000 page tables is a few block reads.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from s390emu.memory import PhysicalMemory

from .entries import ASCE_ORIGIN, ASCE_PRIVATE, ASCE_REAL_SPACE, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK, Level

_U = np.uint64
_HI = np.arange(2048, dtype=np.int64) >> 9      # the two high index bits of each entry


class Reach(NamedTuple):
    """Tables reachable from one ASCE.

    ``crst[level]`` holds the origins of the region/segment tables of that level;
    ``page_tables`` the 2K page-table origins, with ``pt_parents`` the address of the
    segment-table entry that points at each.
    """

    crst: dict[Level, np.ndarray]
    page_tables: np.ndarray
    pt_parents: np.ndarray

    def tables(self) -> list[tuple[str, int, int]]:
        """Every reachable table as ``(kind, origin, size)``; kind is the level name or PT."""
        out = [(lvl.name, int(o), 0x4000) for lvl, arr in self.crst.items() for o in arr]
        return out + [("PT", int(o), 0x800) for o in self.page_tables]


def reachable_tables(mem: PhysicalMemory, asce: int, *, edat1: bool = True,
                     edat2: bool = True) -> Reach:
    """Every table a walk through ``asce`` can reach in ``mem``.

    Only what the architecture would follow counts: a table is reached through a
    valid entry of the right type, at an index inside the parent's TF..TL, and only
    the 4K pages of a table that TF..TL admit are read.

    >>> from s390emu.memory import PhysicalMemory
    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20
    >>> mem.write_u64(0x10000 + 8 * 3, 0x30800)
    >>> r = reachable_tables(mem, 0x10003)
    >>> [hex(x) for x in r.page_tables], [hex(x) for x in r.pt_parents]
    (['0x30800'], ['0x10018'])
    """
    empty = np.zeros(0, dtype=_U)
    crst: dict[Level, np.ndarray] = {}
    if asce & ASCE_REAL_SPACE:
        return Reach(crst, empty, empty)
    edat2 = edat2 and edat1
    private = bool(asce & ASCE_PRIVATE)
    level = Level((asce & ASCE_TYPE_MASK) >> 2)
    origins = np.array([asce & ASCE_ORIGIN], dtype=_U)
    tf = np.zeros(1, dtype=np.int64)
    tl = np.array([asce & ASCE_TABLE_LENGTH], dtype=np.int64)
    while True:
        crst[level] = origins
        if not len(origins):
            return Reach(crst, empty, empty)
        ent, addr, ok = _read_tables(mem, origins, tf, tl)
        follow = ok & ((ent & _U(0x20)) == 0) & (((ent >> _U(2)) & _U(3)) == _U(int(level)))
        if level == Level.SEGMENT:
            if private:
                follow &= (ent & _U(0x10)) == 0
            if edat1:
                follow &= (ent & _U(0x400)) == 0
            return Reach(crst, ent[follow] & _U(0xFFFF_FFFF_FFFF_F800), addr[follow])
        if level == Level.REGION3 and edat2:
            follow &= (ent & _U(0x410 if private else 0x400)) == 0
        nxt = ent[follow]
        origins = nxt & _U(0xFFFF_FFFF_FFFF_F000)
        tf = ((nxt >> _U(6)) & _U(3)).astype(np.int64)
        tl = (nxt & _U(3)).astype(np.int64)
        level = Level(level - 1)


def _read_tables(mem: PhysicalMemory, origins: np.ndarray, tf: np.ndarray, tl: np.ndarray):
    """Entries of the given tables as ``(entries, addresses, valid)``, each (n, 2048).

    ``valid`` is false for indices outside each table's TF..TL and for entries beyond
    storage (a walk there would end in an addressing exception).
    """
    addr = origins[:, None] + (np.arange(2048, dtype=_U) * _U(8))[None, :]
    ok = (_HI[None, :] >= tf[:, None]) & (_HI[None, :] <= tl[:, None]) & (addr <= _U(mem.size - 8))
    ent = np.zeros(addr.shape, dtype=_U)
    ent[ok] = mem.u64[(addr[ok] >> _U(3)).astype(np.intp)]
    return ent, addr, ok
