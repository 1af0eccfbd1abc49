"""The table tree: the region, segment and page tables an ASCE designates, as dump
tools read them.

``table_tree(mem, asce)`` gives the top ``Table``; ``Table.child(i)`` the table entry
``i`` designates.  Each table is read whole, as one numpy block, and classified the way
the kernel's ptdump walker (``arch/s390/mm/dump_pagetables.c``) and crash see tables,
not the way a translation checks them (that is ``translate``'s job, and
``reachable_tables``' for what a walk could use):

* an entry is *valid* when its invalid bit is off and its index lies below the
  table's length (TL; TF is not looked at, Linux always writes 0 there);
* a valid region-third or segment entry with FC set is a *leaf*: a 2 GiB (EDAT-2) or
  1 MiB (EDAT-1) frame; a valid page-table entry is a leaf: a 4K page;
* every other valid entry designates the next table (FC is ignored above region-third,
  where it means nothing); table types, common bits and facilities are not checked;
* a table that does not fit in storage has ``entries`` None: nothing of it is read.

``lenient_asce(mem, origin)`` is the ASCE a dump tool makes of a bare top table
(``swapper_pg_dir``): its type from entry 0's TT, full length.
"""

from __future__ import annotations

import numpy as np

from s390emu.memory import PhysicalMemory

from .errors import InvalidArgument
from .entries import (
    ASCE_ORIGIN, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK, CRST_ENTRIES, PAGE_ENTRY_I, PAGE_ENTRY_PFRA,
    PTRS_PER_PTE, PX_SHIFT, REGION3_ENTRY_RFAA, REGION_ENTRY_FC, REGION_ENTRY_I,
    REGION_ENTRY_ORIGIN, REGION_ENTRY_TL, SEGMENT_ENTRY_ORIGIN, SEGMENT_ENTRY_SFAA, U64, INDEX_SHIFT,
    Level, asce_level,
)

# The short name of each kind of table, top to bottom (``None``: a page table).
TABLE_NAMES = {Level.REGION1: "R1T", Level.REGION2: "R2T", Level.REGION3: "R3T",
               Level.SEGMENT: "ST", None: "PT"}
_LEAF_ORIGIN = {Level.REGION3: REGION3_ENTRY_RFAA, Level.SEGMENT: SEGMENT_ENTRY_SFAA,
                None: PAGE_ENTRY_PFRA}
_ENTRIES_PER_TL = CRST_ENTRIES // 4        # TL counts 4K pages of a 16K table


class Table:
    """One table of the tree.

    ``level`` is its ``Level`` (None for a page table) and ``name`` its short name
    (R1T, R2T, R3T, ST, PT); ``origin`` its address; ``base`` the virtual address entry
    0 maps and ``span`` how much each entry maps; ``entries`` its doublewords (a native
    ``uint64`` copy, None outside storage); ``valid`` and ``leaf`` are boolean masks
    over them (see the module's reading rules) and ``descends`` the valid non-leaves.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20                # an empty segment table
    >>> mem.write_u64(0x10000 + 8, 0x20800)               # STE 1 -> a page table's upper half
    >>> mem.write_u64(0x10000 + 16, 0x300000 | 0x400)     # STE 2 -> a 1 MiB frame
    >>> st = table_tree(mem, 0x10003)
    >>> st.name, int(st.valid.sum()), st.leaf.nonzero()[0].tolist(), hex(st.frame(2))
    ('ST', 2, [2], '0x300000')
    >>> pt = st.child(1)
    >>> pt.name, hex(pt.origin), hex(pt.base), pt.span
    ('PT', '0x20800', '0x100000', 4096)
    """

    __slots__ = ("_mem", "level", "name", "origin", "base", "span", "length", "entries", "valid",
                 "leaf", "descends")

    def __init__(self, mem: PhysicalMemory, level: Level | None, origin: int, base: int, tl: int):
        self._mem = mem
        self.level = level
        self.name = TABLE_NAMES[level]
        self.origin = origin
        self.base = base
        self.span = 1 << (PX_SHIFT if level is None else INDEX_SHIFT[level])
        self.length = n = PTRS_PER_PTE if level is None else CRST_ENTRIES
        if not mem.contains(origin, n * 8):
            self.entries = None
            self.valid = self.leaf = self.descends = np.zeros(n, dtype=bool)
            return
        e = self.entries = mem.table(origin, n).astype(np.uint64)
        if level is None:
            self.valid = self.leaf = (e & np.uint64(PAGE_ENTRY_I)) == 0
            self.descends = np.zeros(n, dtype=bool)
            return
        valid = (e & np.uint64(REGION_ENTRY_I)) == 0        # the segment entry's I is the same bit
        valid[(tl + 1) * _ENTRIES_PER_TL:] = False
        self.valid = valid
        if level in (Level.REGION3, Level.SEGMENT):
            self.leaf = valid & ((e & np.uint64(REGION_ENTRY_FC)) != 0)
        else:
            self.leaf = np.zeros(n, dtype=bool)
        self.descends = valid & ~self.leaf

    @property
    def outside_storage(self) -> bool:
        """Whether the table does not fit in storage (so nothing of it was read)."""
        return self.entries is None

    def frame(self, i: int) -> int:
        """The frame leaf entry ``i`` maps: a page, a 1 MiB or a 2 GiB frame."""
        if not self.leaf[i]:
            raise InvalidArgument(f"{self.name} {self.origin:#x} entry {i:#x} maps no frame")
        return int(self.entries[i]) & _LEAF_ORIGIN[self.level]

    def child(self, i: int) -> "Table":
        """The table entry ``i`` designates (a region or segment entry that is no leaf)."""
        if not self.descends[i]:
            raise InvalidArgument(f"{self.name} {self.origin:#x} entry {i:#x} designates no table")
        entry = int(self.entries[i])
        base = self.base + i * self.span
        if self.level == Level.SEGMENT:
            return Table(self._mem, None, entry & SEGMENT_ENTRY_ORIGIN, base, 0)
        return Table(self._mem, Level(self.level - 1), entry & REGION_ENTRY_ORIGIN, base,
                     entry & REGION_ENTRY_TL)


def table_tree(mem: PhysicalMemory, asce: int) -> Table:
    """The top table ``asce`` designates, of the ASCE's type and table length."""
    return Table(mem, asce_level(asce), asce & ASCE_ORIGIN, 0, asce & ASCE_TABLE_LENGTH)


def lenient_asce(mem: PhysicalMemory, origin: int) -> int:
    """The ASCE dump tools make of the top table at ``origin``: the type entry 0's TT
    names, full table length (raises ``AddressingError`` when entry 0 is outside storage).

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.write_u64(0x10000, 0x24)                      # an empty region-third entry
    >>> hex(lenient_asce(mem, 0x10000))
    '0x10007'
    """
    return (origin & U64) | (mem.read_u64(origin) & ASCE_TYPE_MASK) | ASCE_TABLE_LENGTH
