"""Invariants of the s390 page-table allocator (``pgalloc-versions.md`` §5) and the
reachability check, over the bytes.

Off by default (``Kernel(checks=False)``); with ``checks=True`` the kernel calls the
``before_*`` hooks before each atomic operation and ``after_step`` after each step, and
raises the first ``Violation``.  ``check_all(k)`` checks a whole quiescent-or-not state
(every page-table page, every mm's list, reachability from every live ASCE) and returns
the list of violations; ``check_quiescent(k)`` adds the leak checks for a state where
no CPU runs, RCU has drained and no gather is open.

Invariant names: ``bit_legality`` (1), ``xor_precondition`` (2), ``pgste_page`` (3),
``list_membership`` (4), ``list_operation`` (5), ``rcu_head`` (6), ``double_allocation`` /
``allocation_safety`` (7), ``page_free`` / ``use_after_free`` (8), ``leak`` (9),
``locking`` / ``lock_context`` (10), ``mm_use_after_free`` (11), ``tag_consistency`` (12),
``crst`` (13), ``reachability`` (14); plus ``list_corruption`` (DEBUG_LIST), ``deadlock``
and the kernel's own ``WARN_ON_ONCE(...)`` and ``page_table_release_check``.

The checks know no version by name: they read what each version module declares, its
byte rules (the flags ``FRAGMENTS``, ``HAS_H``) and its ``RULES`` (a ``Rules``: which
bytes may be on ``pgtable_list``, which must be, its own extra checks of a returned
table).  A patch that starts from a version (``from pgalloc.v66 import *``) has that
version's rules and checks.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from dat import reachable_tables
from s390emu import lists
from s390emu import structs as S
from s390emu.machine import MEM_MAP, MM_LIST

from .crst import compound_order
from .errors import BadTable, Violation
from .pgtable_bits import _PAGE_INVALID, PTRS_PER_PTE

_LRU = S.page.fields["lru"]
_RCU = S.page.fields["rcu_head"]
_REFCOUNT = S.page.fields["_refcount"]
_PAGE_TYPE = S.page.fields["page_type"]
_MM = S.mm_struct.fields
_PGT = _MM["context.pgtable_list"]
_TABLE_OR_BUDDY = S.PG_table | S.PG_buddy


class Rules(NamedTuple):
    """A version's list rules and extra checks (its module's ``RULES``).

    ``listed(k, page, byte, running)``: whether a page with fragment byte ``byte`` may be
    on its mm's ``pgtable_list`` (``running``: the pages some CPU's function works on);
    ``unlisted(byte)``: whether a page with that byte must be on it (checked only while
    no lock is held); ``after_alloc``: more checks ``(k, table, page)`` of a table
    ``page_table_alloc`` returned, raising ``Violation``.
    """

    listed: Callable[..., bool]
    unlisted: Callable[[int], bool] | None = None
    after_alloc: tuple = ()


def fmt(byte: int) -> str:
    """``0x12 [A1 P0]``: the byte with its bits named."""
    names = [n for b, n in ((0x01, "A0"), (0x02, "A1"), (0x04, "H0"), (0x08, "H1"), (0x10, "P0"), (0x20, "P1"),
                            (0x40, "b6"), (0x80, "b7")) if byte & b]
    return f"{byte:#04x} [{' '.join(names) or '-'}]"


def where(k) -> str:
    """``CPU0 process page_table_free: <label>``: the step running now, for messages."""
    if k.cur:
        cpu, ctx, fr = k.cur
        return f"CPU{cpu} {ctx} {fr.FUNC}: {fr.pc}"
    return ""


def legal_byte(v, byte: int) -> bool:
    """Bit legality (invariant 1) for version module ``v``."""
    if not v.FRAGMENTS:
        return byte == 0
    a, h, p = byte & 3, (byte >> 2) & 3, (byte >> 4) & 3
    if a & p or byte & 0xC0:
        return False
    if v.HAS_H:
        return not (a & h) and not (h & ~p)
    return h == 0


# -- live mms and lists ---------------------------------------------------------------------

def live_mms(k) -> list[int]:
    """Every ``mm_struct`` on the machine's ``mm_list``."""
    return [n - _MM["mmlist"] for n in lists.list_entries(k.mem, MM_LIST)]


def listed_pages(k) -> dict[int, int]:
    """``struct page -> mm`` for every page on some mm's ``pgtable_list``."""
    out = {}
    for mm in live_mms(k):
        for node in lists.list_entries(k.mem, mm + _PGT):
            out[node - _LRU] = mm
    return out


def queued_heads(k) -> set[int]:
    return {e[0] for e in k.rcu if e[0]}


# -- hooks called by the kernel ---------------------------------------------------------------

def before_xor(k, page: int, old: int, bits: int) -> None:
    v = k.v
    if not v.FRAGMENTS:
        raise Violation("xor_precondition", page, f"atomic_xor_bits({bits:#x}) in {v.NAME}, which has no fragment byte", where(k))
    ob, tb = old >> 24, (bits >> 24) & 0xFF
    if bits & 0xFFFFFF:
        raise Violation("xor_precondition", page, f"XOR {bits:#010x} touches the low refcount bits", where(k))
    for h in (0, 1):
        A, H, P = 1 << h, 4 << h, 16 << h
        t = tb & (A | H | P)
        if not t:
            continue
        ok = True
        if t == A:
            ok = bool(ob & A) or not (ob & (H | P))
        elif t == A | P:
            ok = bool(ob & A) and not (ob & (P | H))
        elif t == P:
            ok = bool(ob & P)
        elif t == H:
            ok = bool(ob & H)
        elif t == A | H | P:
            ok = bool(ob & A) and not (ob & (H | P))
        else:
            ok = False
        if not ok:
            raise Violation("xor_precondition", page,
                            f"XOR {tb:#04x} on half {h} of byte {fmt(ob)} would give {fmt(ob ^ tb)}", where(k))
    if tb & 3 and (tb & 3) != 3 and ob != 0 and k.cur is not None:
        mm = getattr(k.cur[2], "mm", 0)
        if not mm or not k.holds(mm + _MM["context.lock"]):
            raise Violation("locking", page, f"A bits changed ({fmt(ob)} -> {fmt(ob ^ tb)}) without mm->context.lock", where(k))
    new = ob ^ tb
    if not legal_byte(v, new):
        raise Violation("bit_legality", page, f"byte {fmt(ob)} -> {fmt(new)}", where(k))


def before_list_op(k, page: int, op: str) -> None:
    if page + _RCU in queued_heads(k):
        raise Violation("list_operation", page, f"{op} on page->lru while page->rcu_head is queued for RCU", where(k))
    mm = getattr(k.cur[2], "mm", 0) if k.cur else 0
    if not mm:
        return
    if not k.holds(mm + _MM["context.lock"]):
        raise Violation("locking", page, f"{op} on mm {mm:#x}'s pgtable_list without its context.lock", where(k))
    listed = page + _LRU in lists.list_entries(k.mem, mm + _PGT)
    if op.startswith("list_add") and listed:
        raise Violation("list_operation", page, f"{op} of a page already on the list (byte {fmt(k.byte(page))})", where(k))
    if op == "list_del" and not listed:
        raise Violation("list_operation", page, f"list_del of a page that is not listed (byte {fmt(k.byte(page))})", where(k))


def lock_of_freed_mm(k, addr: int) -> None:
    # Which mm does this lock belong to?  Any mm frame: the lock lies in the first 128 bytes.
    mm = addr & ~0xFFF
    if k.frames.is_free(mm) or k.mem.read_u32(mm + _MM["mm_count"]) in (0, 0x6B6B6B6B):
        raise Violation("mm_use_after_free", 0, f"spin_lock of {addr:#x} in mm {mm:#x}, which has been freed "
                        f"(mm_count {k.mem.read_u32(mm + _MM['mm_count']):#x})", where(k))


def before_call_rcu(k, head: int, func: str) -> None:
    page = head - _RCU
    if head in queued_heads(k):
        raise Violation("rcu_head", page, f"call_rcu({func}) on a rcu_head that is already queued", where(k))
    if k.v.FRAGMENTS and page in listed_pages(k):
        raise Violation("rcu_head", page, f"call_rcu({func}) while the page is on pgtable_list (lru overlays rcu_head)", where(k))


def after_alloc(k, path) -> None:
    table = path.result
    page = k.mem_map.virt_to_page(table)
    if table in k.owner:
        raise Violation("double_allocation", page, f"page_table_alloc returned {table:#x}, already allocated to mm "
                        f"{k.owner[table]:#x} (byte {fmt(k.byte(page))})", where(k))
    align = 0x7FF if k.v.FRAGMENTS else 0xFFF
    if table & align or not k.mem_map.has_type(page, S.PG_table):
        raise Violation("allocation_safety", page, f"page_table_alloc returned {table:#x}: misaligned or not a page-table page", where(k))
    for check in k.v.RULES.after_alloc:
        check(k, table, page)
    if not np.all(k.mem.table(table, PTRS_PER_PTE) == _PAGE_INVALID):
        raise Violation("allocation_safety", page, f"page_table_alloc returned {table:#x} whose PTEs are not all _PAGE_INVALID", where(k))
    # A KVM mm's table is the 4K page: its upper 2K are the PGSTEs, which page_table_alloc
    # zeroes (memset64(table + PTRS_PER_PTE, 0, PTRS_PER_PTE)): a stale PCL bit would hang
    # pgste_get_lock, stale key bits corrupt the guest's storage keys.
    if k.mem.data[path.mm + _MM["context.alloc_pgste"]] and np.any(k.mem.table(table + PTRS_PER_PTE * 8, PTRS_PER_PTE)):
        raise Violation("allocation_safety", page, f"page_table_alloc returned {table:#x} to a PGSTE mm whose PGSTEs "
                        "(upper 2K) are not all zero", where(k))


def tag_check(k, table: int, page: int) -> None:
    tag = table & 3
    t = table ^ tag
    pt = k.mem_map.has_type(page, S.PG_table)
    if not k.v.FRAGMENTS:
        ok = tag == 0 and (pt and not t & 0xFFF or not pt and not t & 0x3FFF)
    elif tag == 0:
        ok = not t & 0x3FFF and not pt
    elif tag == 3:
        ok = pt and not t & 0xFFF and k.byte(page) == 0x03
    else:
        ok = pt and tag == (2 if t & 0x800 else 1)
    if not ok:
        raise Violation("tag_consistency", page, f"__tlb_remove_table({table:#x}): tag {tag} does not match the table "
                        f"(byte {fmt(k.byte(page))}, PageTable {pt})", where(k))


def _pending_tables(k):
    for mm, entries, nomem in k.gathers.values():
        yield from entries
    for head, func, args, ready in k.rcu:
        if func == "tlb_remove_table_rcu":
            yield from args
    for c in k.cpus:
        for st in (c.proc, c.soft):
            for fr in st:
                if fr.FUNC == "tlb_remove_table_rcu":
                    yield from fr.batch[fr.i + 1:]


def before_page_free(k, page: int, order: int) -> None:
    if k.mem_map.has_type(page, S.PG_buddy):
        raise Violation("page_free", page, "double free: the page is already free", where(k))
    if k.mem_map.test_flag(page, S.PG_head):
        # free_pages_prepare: VM_BUG_ON_PAGE(compound && compound_order(page) != order).
        # Without CONFIG_DEBUG_VM a smaller order leaks the tail pages.
        folio_order = compound_order(k, page)
        if order != folio_order:
            raise Violation("page_free", page, f"compound page of order {folio_order} freed with order {order}", where(k))
    word = k.mem_map.refcount(page)
    if word >> 24:
        raise Violation("page_free", page, f"page freed with _refcount {word:#010x} (byte {fmt(word >> 24)})", where(k))
    if order or (word & 0xFFFFFF) != 1:
        return          # not the last reference: the page is not freed by this put
    if page in listed_pages(k):
        raise Violation("page_free", page, "page freed while still on a pgtable_list", where(k))
    if page + _RCU in queued_heads(k):
        raise Violation("page_free", page, "page freed while its rcu_head is queued", where(k))
    if k.mem_map.test_flag(page, S.PG_active):
        raise Violation("page_free", page, "page freed with PG_active set", where(k))
    base = k.mem_map.page_address(page)
    for t in _pending_tables(k):
        if (t & ~0xFFF) == base:
            raise Violation("page_free", page, f"page freed while {t:#x} still waits in an mmu_gather batch", where(k))


def _check_page(k, page: int, listed: dict, queued: set | None, running: set | None,
                lockfree: bool) -> list[Violation]:
    """The per-page invariants of page-table page ``page``; the list rules only when
    ``lockfree`` (no spinlock held: inside one a page is between lists).  ``queued`` and
    ``running`` (``queued_heads``, ``_running_pages``) may be None: then they are computed
    only if a rule needs them (after a step, most pages need neither)."""
    out = []
    v = k.v
    byte = k.byte(page)
    if not legal_byte(v, byte) and not (v.FRAGMENTS and byte == 0x03):
        out.append(Violation("bit_legality", page, f"byte {fmt(byte)}"))
    if not v.FRAGMENTS:
        return out
    base = k.mem_map.page_address(page)
    owner = k.owner.get(base, 0)
    pgste = owner and bool(k.mem.data[owner + _MM["context.alloc_pgste"]])
    if pgste:
        if byte != 0x03 or page in listed:
            out.append(Violation("pgste_page", page, f"PGSTE table page has byte {fmt(byte)}{', listed' if page in listed else ''}"))
        return out
    rules = v.RULES
    # The list rules hold only while no one is inside the lock.
    listed_here = lockfree and page in listed
    unlisted_rule = lockfree and not listed_here and rules.unlisted is not None and rules.unlisted(byte)
    h_rule = v.HAS_H and byte & 0x0C
    if running is None and (listed_here or unlisted_rule or h_rule):
        running = _running_pages(k)
    if listed_here and not rules.listed(k, page, byte, running):
        out.append(Violation("list_membership", page, f"listed with byte {fmt(byte)}"
                             f"{' and PG_active' if k.mem_map.test_flag(page, S.PG_active) else ''}"))
    if unlisted_rule and page not in running:
        out.append(Violation("list_membership", page, f"not listed although byte is {fmt(byte)} (one half free)"))
    if h_rule and page + _RCU not in (queued_heads(k) if queued is None else queued) and page not in running:
        out.append(Violation("rcu_head", page, f"H bit set ({fmt(byte)}) but no pte_free_now callback is queued or running for the page"))
    return out


def _running_pages(k) -> set[int]:
    return {getattr(fr, "page", 0) for c in k.cpus for st in (c.proc, c.soft) for fr in st}


def after_step(k, cpu: int, ctx: str, fr, label: str) -> None:
    if not k.v.FRAGMENTS:
        return
    page = getattr(fr, "page", 0)
    touched = k._touch[0] if k._touch else page
    ptype = k.mem_map.page_type
    # The pages the step touched or works on that are page tables (type bits are
    # stored inverted: PageTable's clear, PageBuddy's set).
    pages = [p for p in ({page, touched} if touched != page else (page,))
             if p and ptype(p) & _TABLE_OR_BUDDY == S.PG_buddy]
    if not pages:
        return
    listed = listed_pages(k)
    for p in pages:
        for viol in _check_page(k, p, listed, None, None, not k.locks):
            viol.step = f"CPU{cpu} {ctx} {fr.FUNC}: {label}"
            viol.args = (f"[{viol.name}] page {viol.page:#x}: {viol.message} (after {viol.step})",)
            raise viol


def validate_free(k, mm: int, table: int, func: str) -> None:
    """Bad input: never-allocated, misaligned or another mm's table -> ``BadTable``."""
    page = k.mem_map.virt_to_page(table & ~0xFFF)
    if not k.mem.contains(table, 8) or not k.mem_map.is_page(page):
        raise BadTable(func, page, f"{table:#x} is not in storage")
    pgste = bool(k.mem.data[mm + _MM["context.alloc_pgste"]])
    align = 0x7FF if k.v.FRAGMENTS and not pgste else 0xFFF
    byte = k.byte(page)
    if table & align:
        raise BadTable(func, page, f"misaligned page table {table:#x} (byte {fmt(byte)})")
    if k.mem_map.has_type(page, S.PG_buddy) or not k.mem_map.has_type(page, S.PG_table):
        raise BadTable(func, page, f"{table:#x} was never allocated as a page table (frame is not a page-table page)")
    if k.v.FRAGMENTS and not pgste and not byte & (1 << ((table >> 11) & 1)):
        raise BadTable(func, page, f"{table:#x} is not allocated (byte {fmt(byte)}): double free or never allocated")
    owner = k.owner.get(table)
    if owner is None:
        raise BadTable(func, page, f"{table:#x} was never allocated (byte {fmt(byte)})")
    if owner != mm:
        raise BadTable(func, page, f"{table:#x} belongs to mm {owner:#x}, not {mm:#x} (byte {fmt(byte)})")


# -- whole-state checks ---------------------------------------------------------------------------

def _page_types(k) -> np.ndarray:
    """Every frame's ``page->page_type``, by pfn (stored inverted: a type's bit is clear)."""
    n = k.mem_map.nr_pages
    w = S.page.size // 4
    return k.mem.u32[MEM_MAP // 4: MEM_MAP // 4 + n * w].reshape(n, w)[:, S.page.page_type // 4]


def pagetable_pages(k) -> np.ndarray:
    """``struct page`` addresses of every page-table page (PageTable type), vectorised."""
    pfns = np.nonzero((_page_types(k) & S.PG_table) == 0)[0]
    return MEM_MAP + pfns.astype(np.int64) * S.page.size


def page_checks(k) -> list[Violation]:
    """The per-page invariants of every page-table page (bits, lists, rcu_head)."""
    out: list[Violation] = []
    listed = listed_pages(k)
    queued = queued_heads(k)
    running = _running_pages(k)
    for page in pagetable_pages(k).tolist():
        out += _check_page(k, page, listed, queued, running, not k.locks)
    return out


def check_all(k) -> list[Violation]:
    """Every page-table page, every list, and reachability from every live mm."""
    return page_checks(k) + reachability(k)


def check_quiescent(k) -> list[Violation]:
    """``check_all`` plus leaks, for a state with no CPU running, RCU drained, no open gather."""
    out = check_all(k)
    owned_pages = {k.mem_map.virt_to_page(t & ~0xFFF) for t in k.owner}
    for page in pagetable_pages(k).tolist():
        if page not in owned_pages:
            out.append(Violation("leak", page, f"page-table page with no allocated table left (byte {fmt(k.byte(page))}, "
                                 f"_refcount {k.mem_map.refcount(page):#010x})"))
        elif k.byte(page) & 0x3C:
            out.append(Violation("leak", page, f"stuck pending bits {fmt(k.byte(page))} after RCU drained"))
    return out


def unheld_frames(k, mms: list[int]) -> frozenset[int]:
    """The frames in use (on none of the page allocator's free lists) that nothing the
    model allocates holds: not a page-table page (``leak`` covers those), not the
    ``mm_struct`` of one of ``mms`` that is not freed, nor a region or segment table its
    ASCE reaches.  At a quiescent state they must be the ones the setup had (the
    kernel's own, the zero page): any other is leaked, say the tail pages of a 16K
    table freed with order 0 (which only a compound page would catch at the free)."""
    types = _page_types(k)
    in_use = (types & S.PG_table) != 0          # type bits are stored inverted: PageTable's clear
    for pfn in np.flatnonzero((types & S.PG_buddy) == 0).tolist():     # the free blocks' heads
        in_use[pfn:pfn + (1 << k.mem_map.field(MEM_MAP + pfn * S.page.size, "private"))] = False
    for mm in mms:
        if k.mem_map.has_type(k.mem_map.virt_to_page(mm), S.PG_buddy):
            continue                            # freed by __mmdrop
        in_use[mm >> 12] = False
        reach = reachable_tables(k.mem, k.mem.read_u64(mm + _MM["context.asce"]))
        for origins in reach.crst.values():
            for o in origins.tolist():
                in_use[o >> 12:(o >> 12) + 4] = False
    return frozenset((np.flatnonzero(in_use) << 12).tolist())


def reachability(k, mms: list[int] | None = None) -> list[Violation]:
    """Walk every live mm's ASCE (``dat.reachable_tables``): any reachable table beyond
    storage, in a freed frame, in a free or pending 2K half, or in a half owned by another
    mm is reported; a table owned by another mm with every entry that reaches it (each
    mm and STE address, the ones that are not the owner's marked)."""
    out: list[Violation] = []
    u32 = k.mem.u32
    size = k.mem.size
    frag = k.v.FRAGMENTS
    mms = live_mms(k) if mms is None else mms
    walks = [(mm, reachable_tables(k.mem, k.mem.read_u64(mm + _MM["context.asce"]))) for mm in mms]

    def beyond(mm: int, what: str, origins: np.ndarray, length: int) -> np.ndarray:
        far = origins > np.uint64(size - length)
        for o in origins[far].tolist():
            out.append(Violation("reachability", 0, f"mm {mm:#x} reaches {what} {o:#x}, beyond storage "
                                 f"({size:#x} bytes)"))
        return origins[~far]

    for mm, r in walks:
        for lvl, origins in r.crst.items():
            origins = beyond(mm, f"{lvl.name} table", origins, 0x1000)
            pfn = (origins >> np.uint64(12)).astype(np.int64)
            rc = u32[(MEM_MAP + pfn * S.page.size + _REFCOUNT) >> 2]
            for o in origins[(rc & 0xFFFFFF) == 0].tolist():
                out.append(Violation("reachability", MEM_MAP + (o >> 12) * S.page.size,
                                     f"mm {mm:#x} reaches {lvl.name} table {o:#x} in a freed frame"))
        inside = r.page_tables <= np.uint64(size - 0x800)
        beyond(mm, "page table", r.page_tables, 0x800)
        pts, parents = r.page_tables[inside], r.pt_parents[inside]
        if not len(pts):
            continue
        pfn = (pts >> np.uint64(12)).astype(np.int64)
        rc = u32[(MEM_MAP + pfn * S.page.size + _REFCOUNT) >> 2]
        ptype = u32[(MEM_MAP + pfn * S.page.size + _PAGE_TYPE) >> 2]
        byte = (rc >> 24).astype(np.int64)
        h = ((pts >> np.uint64(11)) & np.uint64(1)).astype(np.int64)
        freed = ((rc & 0xFFFFFF) == 0) | ((ptype & S.PG_table) != 0)
        if frag:
            bad = freed | (((byte >> h) & 1) == 0) | (((byte >> (h + 4)) & 1) == 1) | (((byte >> (h + 2)) & 1) == 1)
        else:
            bad = freed | (h == 1)
        for i in np.nonzero(bad)[0].tolist():
            t = int(pts[i])
            why = ("a freed frame" if freed[i] else
                   "a pending half" if frag and (int(byte[i]) >> (int(h[i]) + 4)) & 1 else "a free half")
            out.append(Violation("reachability", MEM_MAP + (t >> 12) * S.page.size,
                                 f"mm {mm:#x} reaches page table {t:#x} in {why} "
                                 f"(byte {fmt(int(byte[i]))}, STE at {int(parents[i]):#x})"))
        own = k.owner.get
        good = np.nonzero(~bad)[0]
        # The one per-table Python step: the allocation record is a dict (like page_owner).
        for i in good[[own(t) != mm for t in pts[good].tolist()]].tolist():
            t = int(pts[i])
            out.append(Violation("reachability", MEM_MAP + (t >> 12) * S.page.size,
                                 f"mm {mm:#x} reaches page table {t:#x} owned by mm {own(t, 0):#x} "
                                 f"(byte {fmt(int(byte[i]))}, STE at {int(parents[i]):#x}); "
                                 f"entries reaching it: {_entries_reaching(walks, t, own(t, 0))}"))
    return out


def _entries_reaching(walks, table: int, owner: int) -> str:
    """Every segment-table entry of a live mm that designates ``table``, each with its mm,
    marked when it is not the owner's (the rare path: a table found shared)."""
    found = []
    for mm, r in walks:
        for ste in r.pt_parents[r.page_tables == np.uint64(table)].tolist():
            found.append(f"mm {mm:#x} STE at {int(ste):#x}" + ("" if mm == owner else " (not the owner's)"))
    return ", ".join(found)
