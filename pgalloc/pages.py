"""The page-table frames of a machine, decoded from the bytes (for ``s390emu pages``).

``page_table_frames(k)`` returns one plain dict per page-table page (PageTable type in
``mem_map``), found with one vectorised scan: frame and ``struct page`` address, the
fragment byte and, per 2K half, its A/P/H bits, whether the page is on some mm's
``pgtable_list``, PG_active, ``_refcount``, and the owner mm (from ``page->pt_mm`` when
the version sets it, else from the allocation record).
"""

from __future__ import annotations

from s390emu import structs as S

from .checks import listed_pages, pagetable_pages, queued_heads

_RCU = S.page.fields["rcu_head"]


def page_table_frames(k) -> list[dict]:
    """Every page-table frame as plain data (JSON-ready).

    >>> from pgalloc import Kernel, mm
    >>> k = Kernel("v64", mem_size=8 << 20)
    >>> m = mm.mm_alloc(k)
    >>> t = k.page_table_alloc(m)
    >>> f = page_table_frames(k)[0]
    >>> f["byte"], f["halves"][0], f["halves"][1]["A"], f["listed"], f["owner_mm"] == m
    (1, {'A': True, 'P': False, 'H': False, 'owner_mm': ...}, False, True, True)
    """
    listed = listed_pages(k)
    queued = queued_heads(k)
    out = []
    for page in pagetable_pages(k).tolist():
        frame = k.mem_map.page_address(page)
        word = k.mem_map.refcount(page)
        byte = word >> 24
        pt_mm = k.mem_map.field(page, "pt_mm") if k.version == "seed" else 0
        halves = []
        for h in (0, 1):
            t = frame + 0x800 * h
            halves.append({"A": bool(byte >> h & 1), "P": bool(byte >> (4 + h) & 1),
                           "H": bool(byte >> (2 + h) & 1), "owner_mm": k.owner.get(t, 0)})
        owners = {hh["owner_mm"] for hh in halves if hh["owner_mm"]}
        out.append({
            "frame": frame, "page": page, "refcount": word & 0xFFFFFF, "byte": byte,
            "halves": halves, "listed": page in listed, "list_mm": listed.get(page, 0),
            "active": k.mem_map.test_flag(page, S.PG_active),
            "rcu_queued": page + _RCU in queued,
            "owner_mm": pt_mm or (owners.pop() if len(owners) == 1 else 0),
            "pt_mm": pt_mm,
        })
    return out
