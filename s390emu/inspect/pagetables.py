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
from ..vmcoreinfo import LayoutError, number
from .memmap import KernelSpace, page_table_rule, pg_active, struct_pages
from .mms import live_mms

# The fragment byte's bits, low to high (arch/s390/mm/pgalloc.c's block comment).
BIT_NAMES = ("A0", "A1", "H0", "H1", "P0", "P1", "b6", "b7")


def page_table_frames(mem: PhysicalMemory, vmcoreinfo: dict[str, str], *, crst: bool = False,
                      kernel: KernelSpace | None = None, asces: tuple[int, ...] = (),
                      fragments: bool = True, mms: list | None = None) -> list[dict]:
    """Every page-table frame of ``mem``, decoded through ``vmcoreinfo``, in frame order;
    with ``crst``, also every frame of a CRST (region or segment) table a walk reaches.

    An s390emu machine (``kernel`` None): ``mem_map`` is its array, the mms its mm list.
    A real kernel (``kernel``, its address space): struct pages through ``memmap``, and
    the walks are those of ``asces`` (the CPUs' control registers, the kernel's ASCE);
    its mms are unknown unless given (``mms``: ``linuxcheck.Mm`` from the debug info),
    else ``listed`` and ``list_mm`` are None.  ``fragments`` is
    False for rules with one 4K table per page (v6.7+): there a PageTable page with byte
    0 is one whole table, else (before v6.7, where ``pgtable_pmd_page_ctor`` marks a
    segment table's first page PageTable too) it is a CRST frame.

    Each is a dict: ``frame``, ``page`` (its ``struct page``'s kernel address), ``byte``,
    ``refcount``, ``active`` (None when the release's ``PG_active`` is unknown),
    ``listed`` and ``list_mm`` (the mm whose ``pgtable_list`` holds it, or 0), ``halves``
    (per 2K half: ``A``, ``H``, ``P``, ``reached_by``, the mm whose tables reach it, or
    0, and ``asces``, every walked ASCE that reaches it) and ``crst_mm`` (the mm a CRST
    table in the frame belongs to).  Raises ``LayoutError`` when VMCOREINFO lacks a key
    it needs.

    >>> from pgalloc.demo import build_demo
    >>> from s390emu.vmcoreinfo import read_vmcoreinfo
    >>> d = build_demo("v66")
    >>> f = page_table_frames(d.machine.mem, read_vmcoreinfo(d.machine.mem))[0]
    >>> hex(f["byte"]), f["halves"][1]["reached_by"] == d.mm3
    ('0x3', True)
    """
    v = vmcoreinfo
    real = kernel is not None
    sp = struct_pages(mem, v, kernel, s390emu=not real)
    ref = number(v, "OFFSET(page._refcount)")
    mapc = number(v, "OFFSET(page._mapcount)")
    flags = number(v, "OFFSET(page.flags)")
    active_bit = pg_active(v)
    is_table = page_table_rule(v)[1]
    if ref % 4 or mapc % 4 or flags % 8:
        raise LayoutError("VMCOREINFO struct page offsets are not aligned")
    words = sp.words
    page_type = words[:, mapc // 4]
    pfns = np.flatnonzero(is_table(page_type) & sp.present)
    listed: dict[int, int] | None = None if real and mms is None else {}
    owner: dict[int, int] = {}
    crst_owner: dict[int, int] = {}         # each 4K frame of a reached 16K CRST table: its mm
    reached: dict[int, list[int]] = {}      # each 2K table or CRST frame: the ASCEs reaching it

    def walk(asce: int, mm: int) -> None:
        r = dat.reachable_tables(mem, asce)
        for t in r.page_tables.tolist():
            owner.setdefault(int(t), mm)
            reached.setdefault(int(t), []).append(asce)
        for origins in r.crst.values():
            for o in origins.tolist():
                for q in range(4):
                    owner.setdefault(int(o) + q * 0x1000, mm)
                    crst_owner.setdefault(int(o) + q * 0x1000, mm)
                    reached.setdefault(int(o) + q * 0x1000, []).append(asce)

    if not real:
        lru = number(v, "OFFSET(page.lru)")
        pgt_off = number(v, "OFFSET(mm_struct.context.pgtable_list)")
        asce_off = number(v, "OFFSET(mm_struct.context.asce)")
        for mm in live_mms(mem, v):
            for node in list_entries(mem, mm + pgt_off, lenient=True):
                listed[node - lru] = mm
            if mem.contains(mm + asce_off, 8):
                walk(mem.read_u64(mm + asce_off), mm)
    for m in mms or ():
        listed.update(dict.fromkeys(m.listed, m.address))
        walk(m.asce, m.address)
    for asce in dict.fromkeys(asces):
        walk(asce, 0)
    pfn_list = pfns.tolist()
    if crst:
        pfn_list = sorted(set(pfn_list) | {f >> 12 for f in crst_owner if f + 0x1000 <= mem.size})
    out = []
    for pfn in pfn_list:
        page = int(sp.address[pfn])
        word = int(words[pfn, ref // 4])
        byte = word >> 24
        frame = pfn << 12
        fl = sp.u64(pfn, flags)
        # byte 0 on a PageTable page: one whole 4K table (v6.7+, where no fragment bits exist)
        whole = byte == 0
        halves = [{"A": whole or bool(byte >> h & 1), "H": bool(byte >> (2 + h) & 1),
                   "P": bool(byte >> (4 + h) & 1), "reached_by": owner.get(frame + 0x800 * h, 0),
                   "asces": reached.get(frame + 0x800 * h, [])}
                  for h in (0, 1)]
        crst_mm = 0
        # A CRST frame: no PageTable page (found by a walk), or on a real kernel with
        # fragments a PageTable page with byte 0: a segment table's first page, which
        # pgtable_pmd_page_ctor marks PageTable (reached or not: its mm may be unknown).
        segment = real and fragments and whole
        if not is_table(page_type[pfn]) or segment:
            crst_mm = crst_owner.get(frame, 0)
            for h in halves:
                h["reached_by"] = 0
                h["asces"] = []
        out.append({"frame": frame, "page": page, "byte": byte, "refcount": word & 0xFFFFFF,
                    "active": None if active_bit is None else bool(fl >> active_bit & 1),
                    "listed": None if listed is None else page in listed,
                    "list_mm": None if listed is None else listed.get(page, 0), "halves": halves,
                    "crst_mm": crst_mm, "crst_asces": reached.get(frame, []) if frame in crst_owner else [],
                    "crst": bool(crst_mm or segment or not is_table(page_type[pfn])) and not byte})
    return out


def storage_frames(st, crst: bool = False, fragments: bool = True, mms: list | None = None) -> list[dict]:
    """``page_table_frames`` of a ``source.Storage``: an s390emu machine's from its mm
    list; a Linux kernel's (``st.linux``) through its struct pages, walking the kernel's
    ASCE, every ASCE in a CPU's control registers and each of ``mms`` (``fragments`` as there).

    >>> from s390emu.inspect import open_demo
    >>> st = open_demo("v66")
    >>> storage_frames(st) == page_table_frames(st.mem, st.vmcoreinfo)
    True
    """
    if not st.linux:
        return page_table_frames(st.mem, st.vmcoreinfo, crst=crst)
    kernel = st.kernel_asce()
    return page_table_frames(st.mem, st.vmcoreinfo, crst=crst, kernel=KernelSpace(st.mem, kernel),
                             asces=(kernel, *st.cpu_asces()), fragments=fragments, mms=mms)


def is_crst(frame: dict) -> bool:
    """Whether a frame holds (part of) a CRST table rather than page tables."""
    return frame["crst"]


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
