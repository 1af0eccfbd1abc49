"""The page-table frames of a storage, decoded from its bytes through VMCOREINFO alone.

Like makedumpfile, everything comes from VMCOREINFO: ``SYMBOL(mem_map)``,
``SIZE(page)``, ``OFFSET(page._refcount)``, ``OFFSET(page._mapcount)`` (the inverted
``page_type``: a page-table page has the ``PG_table`` bit of
``NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)`` cleared), ``OFFSET(page.flags)`` with
``NUMBER(PG_active)``, ``OFFSET(page.lru)``; the live mms (``mms.live_mms``), each
one's ``pgtable_list`` and ASCE.  No allocator object is consulted.

Per frame: the fragment byte (the upper byte of ``_refcount``: A0/A1 allocated halves,
H0/H1 ``pte_free_defer`` pending, P0/P1 RCU pending; 0 on a PageTable page means one
whole 4K table, as from v6.7 on), the page refcount (low 24 bits), PG_active, whether
the page is on some mm's ``pgtable_list``, and which mm reaches each 2K half (a walk of
every live mm's ASCE, ``dat.reachable_tables``).
"""

from __future__ import annotations

import numpy as np

import dat

from ..lists import list_entries
from ..memory import PhysicalMemory
from ..vmcoreinfo import LayoutError, number, symbol
from .mms import live_mms

# The fragment byte's bits, low to high (arch/s390/mm/pgalloc.c's block comment).
BIT_NAMES = ("A0", "A1", "H0", "H1", "P0", "P1", "b6", "b7")


def page_table_frames(mem: PhysicalMemory, vmcoreinfo: dict[str, str], *, crst: bool = False) -> list[dict]:
    """Every page-table frame of ``mem``, decoded through ``vmcoreinfo``, in frame order;
    with ``crst``, also every frame of a CRST (region or segment) table a live mm's walk
    reaches (Linux does not mark those PageTable, so only the walk finds them).

    Each is a dict: ``frame``, ``page`` (its ``struct page``), ``byte``, ``refcount``,
    ``active``, ``listed`` and ``list_mm`` (the mm whose ``pgtable_list`` holds it, or
    0), ``halves`` (per 2K half: ``A``, ``H``, ``P`` and ``reached_by``, the mm whose
    tables reach it, or 0) and ``crst_mm`` (the mm a CRST table in the frame belongs to).
    Raises ``LayoutError`` when VMCOREINFO lacks a key it needs.

    >>> from pgalloc.demo import build_demo
    >>> from s390emu.vmcoreinfo import read_vmcoreinfo
    >>> d = build_demo("v66")
    >>> f = page_table_frames(d.machine.mem, read_vmcoreinfo(d.machine.mem))[0]
    >>> hex(f["byte"]), f["halves"][1]["reached_by"] == d.mm3
    ('0x3', True)
    """
    v = vmcoreinfo
    mem_map = symbol(v, "mem_map")
    psize = number(v, "SIZE(page)")
    ref = number(v, "OFFSET(page._refcount)")
    mapc = number(v, "OFFSET(page._mapcount)")
    flags = number(v, "OFFSET(page.flags)")
    lru = number(v, "OFFSET(page.lru)")
    pg_active = number(v, "NUMBER(PG_active)")
    pg_table = ~number(v, "NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)") & 0xFFFF_FFFF
    pgt_off = number(v, "OFFSET(mm_struct.context.pgtable_list)")
    asce_off = number(v, "OFFSET(mm_struct.context.asce)")
    if psize % 8 or ref % 4 or mapc % 4 or flags % 8:
        raise LayoutError("VMCOREINFO struct page offsets are not aligned")
    nr = mem.size // 4096
    if not mem.contains(mem_map, nr * psize):
        raise LayoutError(f"mem_map at {mem_map:#x} ({nr} pages) does not fit in storage")
    words = mem.u32[mem_map // 4:(mem_map + nr * psize) // 4].reshape(nr, psize // 4)
    page_type = words[:, mapc // 4]
    pfns = np.flatnonzero((page_type & pg_table) == 0)
    listed: dict[int, int] = {}
    owner: dict[int, int] = {}
    crst_owner: dict[int, int] = {}         # each 4K frame of a reached 16K CRST table: its mm
    for mm in live_mms(mem, v):
        for node in list_entries(mem, mm + pgt_off, lenient=True):
            listed[node - lru] = mm
        if mem.contains(mm + asce_off, 8):
            r = dat.reachable_tables(mem, mem.read_u64(mm + asce_off))
            for t in r.page_tables.tolist():
                owner.setdefault(int(t), mm)
            for origins in r.crst.values():
                for o in origins.tolist():
                    for q in range(4):
                        owner.setdefault(int(o) + q * 0x1000, mm)
                        crst_owner.setdefault(int(o) + q * 0x1000, mm)
    pfn_list = pfns.tolist()
    if crst:
        pfn_list = sorted(set(pfn_list) | {f >> 12 for f in crst_owner if f + 0x1000 <= mem.size})
    out = []
    for pfn in pfn_list:
        page = mem_map + pfn * psize
        word = int(words[pfn, ref // 4])
        byte = word >> 24
        frame = pfn << 12
        fl = mem.read_u64(page + flags)
        # byte 0 on a PageTable page: one whole 4K table (v6.7+, where no fragment bits exist)
        whole = byte == 0
        halves = [{"A": whole or bool(byte >> h & 1), "H": bool(byte >> (2 + h) & 1),
                   "P": bool(byte >> (4 + h) & 1), "reached_by": owner.get(frame + 0x800 * h, 0)}
                  for h in (0, 1)]
        crst_mm = 0
        if (page_type[pfn] & pg_table) != 0:           # a CRST frame, no PageTable page
            crst_mm = crst_owner[frame]
            for h in halves:
                h["reached_by"] = 0
        out.append({"frame": frame, "page": page, "byte": byte, "refcount": word & 0xFFFFFF,
                    "active": bool(fl >> pg_active & 1), "listed": page in listed,
                    "list_mm": listed.get(page, 0), "halves": halves, "crst_mm": crst_mm})
    return out


def is_crst(frame: dict) -> bool:
    """Whether a frame holds (part of) a CRST table rather than page tables."""
    return bool(frame["crst_mm"]) and not frame["byte"]


def half_state(half: dict) -> str:
    """What a 2K half is: ``allocated``, ``deferred`` (H), ``pending`` (P) or ``free``."""
    if half["A"]:
        return "allocated"
    if half["H"]:
        return "deferred"
    if half["P"]:
        return "pending"
    return "free"


def half_states(frame: dict) -> list[str]:
    """The state of each half of a frame; both ``crst`` for a CRST frame."""
    return ["crst", "crst"] if is_crst(frame) else [half_state(h) for h in frame["halves"]]


def owners(frame: dict) -> list[int]:
    """The mms that reach a frame (through either half, or its CRST table), sorted."""
    found = {h["reached_by"] for h in frame["halves"] if h["reached_by"]}
    return sorted(found | ({frame["crst_mm"]} if frame["crst_mm"] else set()))


def bit_names(byte: int) -> str:
    """The fragment byte's set bits by name (``"A0 P1"``), ``"-"`` for none."""
    return " ".join(n for b, n in enumerate(BIT_NAMES) if byte >> b & 1) or "-"
