"""Linux's ``/sys/kernel/debug/kernel_page_tables`` for any ASCE, and the table tree as DOT.

The format is ``arch/s390/mm/dump_pagetables.c`` (v6.6, on the generic ptdump walker;
``reference/dat-spec.md`` §5.2): one line per run of equal (level, protection)::

    0x<start, 16 digits>-0x<end, 16 digits> <size %9lu><K|M|G|T|P|E> <LEVEL> <PROT>

LEVEL is the ptdump level of the entry that decides the run, named as the kernel names
them: ``ASCE`` (pgd = region-first), ``PGD`` (p4d = region-second), ``PUD``
(region-third), ``PMD`` (segment), ``PTE``.  PROT is ``I`` for an invalid PTE or an
empty (invalid) upper-level entry, else ``RO``/``RW`` (``_PAGE_PROTECT`` 0x200) and
``NX``/``X`` (``_PAGE_NOEXEC`` 0x100).  A line also ends at each ``---[ name ]---``
marker.  The walk covers 0 .. 2**(31 + 11 * ASCE type).

The tables are read with ``dat.table_tree`` (its reading rules are the kernel walker's);
``ptdump_lines`` yields the same lines as the kernel's state machine would for the same
tables, and runs of identical entries are found with numpy, so a 5-level space costs a
few table reads, not 2**53 page visits.
"""

from __future__ import annotations

from itertools import chain
from typing import Iterator

import numpy as np

from dat import Table, table_tree
from dat.entries import PAGE_ENTRY_IEP, PAGE_ENTRY_P

from ..errors import S390emuError
from ..memory import PhysicalMemory

# The kernel's ptdump level names, by table (dump_pagetables.c's pg_level[]).
LEVEL_NAMES = {"R1T": "ASCE", "R2T": "PGD", "R3T": "PUD", "ST": "PMD", "PT": "PTE"}
_I = 0x400                                    # "invalid" as a protection value (kernel's)
_PROT_MASK = PAGE_ENTRY_P | PAGE_ENTRY_IEP    # _PAGE_PROTECT | _PAGE_NOEXEC, same bits at every level
_UNITS = "KMGTPE"
_U64 = (1 << 64) - 1

#: How many times the walk may reach a table it has already read before it stops.
#: Linux's tables form a tree (each has one parent entry), so a table reached again
#: means the ASCE designates data, not tables: its garbage "entries" point back into
#: the same few tables 2048 times per level, 2048**3 tables for a region-second ASCE
#: at the lowcore.  Distinct tables are bounded by storage; repeats are what explode.
MAX_REPEATS = 4096


class GarbageTree(S390emuError):
    """The walk reached more than ``MAX_REPEATS`` tables it had already read; ``address``
    is the virtual address where it stopped, ``table`` the repeated table's origin."""

    def __init__(self, address: int, table: int, repeats: int):
        super().__init__(f"ptdump stopped at {address:#x}: {repeats} times the walk reached a table it had read "
                         f"before (the last {table:#x}); Linux's tables form a tree, so this ASCE designates "
                         "data, not page tables")
        self.address, self.table, self.repeats = address, table, repeats


class _Visits:
    """The tables one walk has read, to stop it when it keeps reaching the same ones."""

    def __init__(self, limit: int = MAX_REPEATS):
        self.seen: set[tuple[str, int]] = set()
        self.repeats, self.limit = 0, limit

    def child(self, t: Table, i: int) -> Table:
        """``t.child(i)``, counted; raises GarbageTree past the limit of repeats."""
        c = t.child(i)
        key = (c.name, c.origin)
        if key in self.seen:
            self.repeats += 1
            if self.repeats > self.limit:
                raise GarbageTree(c.base, c.origin, self.repeats)
        else:
            self.seen.add(key)
        return c


def max_addr(asce: int) -> int:
    """The end of the space an ASCE of this type can map: ``1 << (type * 11 + 31)``."""
    return 1 << (((asce >> 2) & 3) * 11 + 31)


def markers(mem: PhysicalMemory, asce: int, kernel_root: int | None) -> list[tuple[int, str]]:
    """The markers the kernel would print around ``asce``'s space: "Identity Mapping" over
    all storage when it designates the kernel's table ``kernel_root``, else "User Address
    Space" over the whole range its type maps."""
    if (asce & ~0xFFF) == kernel_root:
        return [(0, "Identity Mapping Start"), (mem.size, "Identity Mapping End")]
    return [(0, "User Address Space Start"), (max_addr(asce), "User Address Space End")]


def first_table_outside(mem: PhysicalMemory, asce: int) -> Table | None:
    """The first table (in address order) that ``asce``'s walk reaches and that lies
    outside storage, or None.  ptdump lists its range as invalid, as the kernel's walker
    would; DAT raises an addressing exception (0x05) there, so the caller warns.

    >>> from s390emu.memory import PhysicalMemory
    >>> hex(first_table_outside(PhysicalMemory(1 << 20), 0x7fff_f000 | 0x7).origin)
    '0x7ffff000'
    """
    visits = _Visits()
    stack = [table_tree(mem, asce)]
    while stack:
        t = stack.pop()
        if t.outside_storage:
            return t
        stack.extend(visits.child(t, i) for i in reversed(np.flatnonzero(t.descends).tolist()))
    return None


def _emit_run(start: int, end: int, span: int, level: str, prot: int, markers: list[int]):
    yield start, level, prot
    for m in markers:                     # the kernel notices a marker at the next entry
        if start < m < end:
            at = start + -(-(m - start) // span) * span
            if at < end:
                yield at, level, prot


def _notes(t: Table, markers: list[int], visits: _Visits) -> Iterator[tuple[int, str, int]]:
    """``(addr, level, prot)`` in address order, as ptdump's ``note_page`` is called."""
    level, span, n = LEVEL_NAMES[t.name], t.span, t.length
    if t.outside_storage:
        # A table outside storage: the walk cannot read it; report it as invalid.
        yield from _emit_run(t.base, t.base + n * span, span, level, _I, markers)
        return
    descend = t.descends
    prot = np.where(t.valid, t.entries & np.uint64(_PROT_MASK), np.uint64(_I))
    # group boundaries: every descend entry stands alone; leaves group by equal prot
    key = np.where(descend, np.uint64(0xFFFF), prot)
    change = np.ones(n, dtype=bool)
    change[1:] = (key[1:] != key[:-1]) | descend[1:] | descend[:-1]
    starts = np.flatnonzero(change).tolist()
    ends = starts[1:] + [n]
    for s, e in zip(starts, ends):
        if descend[s]:
            yield from _notes(visits.child(t, s), markers, visits)
        else:
            yield from _emit_run(t.base + s * span, t.base + e * span, span, level, int(prot[s]), markers)


def _size(delta_bytes: int) -> str:
    delta, unit = delta_bytes >> 10, 0
    while not delta & 0x3FF and unit + 1 < len(_UNITS):
        delta >>= 10
        unit += 1
    return f"{delta:9d}{_UNITS[unit]}"


def prot_text(prot: int) -> str:
    """ptdump's protection column for an entry's P and IEP bits (``I``: invalid)."""
    if prot == _I:
        return "I"
    return ("RO " if prot & PAGE_ENTRY_P else "RW ") + ("NX" if prot & PAGE_ENTRY_IEP else "X")


def ptdump_lines(mem: PhysicalMemory, asce: int,
                 markers: list[tuple[int, str]] | None = None) -> Iterator[str]:
    """The kernel_page_tables lines for ``asce``; ``markers`` are ``(address, name)``.

    The lines are made as the walk goes; one that reaches too many tables twice raises
    ``GarbageTree`` after the lines it could give (the caller says the list is cut).

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20               # empty segment table
    >>> mem.write_u64(0x10000, 0x20000)                   # segment 0 -> page table
    >>> mem.table(0x20000, 256)[:] = 0x400
    >>> mem.write_u64(0x20000, 0x5000 | 0x100)            # one RW NX page
    >>> print("\\n".join(ptdump_lines(mem, 0x10003, [(0, "Demo")])))
    ---[ Demo ]---
    0x0000000000000000-0x0000000000001000         4K PTE RW NX
    0x0000000000001000-0x0000000000100000      1020K PTE I
    0x0000000000100000-0x0000000080000000      2047M PMD I
    """
    end = max_addr(asce)
    markers = list(markers or [(0, "Address Space Start"), (end, "Address Space End")])
    marks = [a for a, _ in markers[1:]] + [1 << 65]
    mi = 0
    cur = None                       # (start, level, prot)
    yield f"---[ {markers[0][1]} ]---"
    events = _notes(table_tree(mem, asce), [a for a, _ in markers[1:]], _Visits())
    for addr, level, prot in chain(events, [(end, None, 0)]):
        if cur is None:
            cur = (addr, level, prot)
            continue
        start, clevel, cprot = cur
        if prot != cprot or level != clevel or addr >= marks[mi]:
            # unsigned long arithmetic: the end of a region-first space (2**64) prints as 0
            yield f"0x{start:016x}-0x{addr & _U64:016x} {_size(addr - start)} {clevel} {prot_text(cprot)}"
            while addr >= marks[mi]:
                mi += 1
                yield f"---[ {markers[mi][1]} ]---"
            cur = (addr, level, prot)


def runs(mem: PhysicalMemory, asce: int) -> list[dict]:
    """The runs as dicts (for ``--json``): start, end, size, level, prot.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20
    >>> runs(mem, 0x10003)
    [{'start': '0x0000000000000000', 'end': '0x0000000080000000', 'size': 2147483648, 'level': 'PMD', 'prot': 'I'}]
    """
    return list(iter_runs(mem, asce))


def iter_runs(mem: PhysicalMemory, asce: int) -> Iterator[dict]:
    """``runs`` one at a time (a ``GarbageTree`` raised after the runs before it)."""
    for line in ptdump_lines(mem, asce, [(0, "")]):
        if line.startswith("---"):
            continue
        rng, rest = line.split(" ", 1)
        a, b = rng.split("-")
        parts = rest.split()
        yield {"start": a, "end": b, "size": int(b, 16) - int(a, 16),
               "level": parts[1], "prot": " ".join(parts[2:])}


# -- the table tree as Graphviz DOT (``ptdump --dot``, tools/pttree.py) -----------------------

_COLOURS = {"R1T": "#f4cccc", "R2T": "#fce5cd", "R3T": "#fff2cc", "ST": "#cfe2f3", "PT": "#d9ead3"}
_FRAME_SIZES = {"R3T": "2G", "ST": "1M"}


def table_tree_dot(mem: PhysicalMemory, asce: int, *, title: str | None = None) -> str:
    """The tree of tables ``asce`` reaches, as a Graphviz ``digraph``.

    One node per table (kind, origin, valid entries; a page table also says which 2K
    half of its frame it is), one edge per valid entry that points at a table, labelled
    with its index and the virtual address it starts; large frames are leaf boxes.
    Data pages are counted, not drawn.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20
    >>> mem.write_u64(0x10000, 0x20800); mem.table(0x20800, 256)[:] = 0x400
    >>> print(table_tree_dot(mem, 0x10003).splitlines()[3])
      t10000 [label="ST 0x10000\\n1 of 2048 valid", fillcolor="#cfe2f3"];
    """
    lines = ["digraph pttree {", "  rankdir=LR; node [shape=box, style=filled, fontname=monospace];",
             f'  label="{title or f"ASCE {asce:#018x}"}"; labelloc=t;']

    visits = _Visits()

    def walk(t: Table) -> str:
        node = f"t{t.origin:x}"
        if t.outside_storage:
            lines.append(f'  {node} [label="{t.name} {t.origin:#x}\\noutside storage", fillcolor="#999999"];')
            return node
        valid = np.flatnonzero(t.valid).tolist()
        if t.name == "PT":
            half = "upper" if t.origin & 0x800 else "lower"
            lines.append(f'  {node} [label="PT {t.origin:#x} ({half} 2K of frame {t.origin & ~0xFFF:#x})'
                         f'\\n{len(valid)} of 256 pages valid", fillcolor="{_COLOURS["PT"]}"];')
            return node
        lines.append(f'  {node} [label="{t.name} {t.origin:#x}\\n{len(valid)} of 2048 valid", '
                     f'fillcolor="{_COLOURS[t.name]}"];')
        for i in valid:
            va = t.base + i * t.span
            if t.leaf[i]:
                leaf = f"f{node}_{i}"
                prot = prot_text(int(t.entries[i]) & _PROT_MASK)
                lines.append(f'  {leaf} [label="{_FRAME_SIZES[t.name]} frame {t.frame(i):#x}\\n{prot}", '
                             'shape=note, fillcolor="#eeeeee"];')
                lines.append(f'  {node} -> {leaf} [label="[{i:#x}] {va:#x}"];')
                continue
            lines.append(f'  {node} -> {walk(visits.child(t, i))} [label="[{i:#x}] {va:#x}"];')
        return node

    walk(table_tree(mem, asce))
    lines.append("}")
    return "\n".join(lines) + "\n"
