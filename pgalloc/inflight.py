"""The invariants of the readers in flight (reference ``walkers-and-tlb.md`` §4), checked
when the kernel models them (``Kernel(walkers=True, checks=True)``):

* ``tlb_stale`` (I1): when a fragment is freed to the page allocator or handed out
  again by ``page_table_alloc``, no CPU's TLB holds an entry read from it or designating
  it;
* ``tlb_outside_cpumask`` (I3): no CPU outside ``mm_cpumask(mm)`` holds an entry of the
  mm or has its ASCE loaded (over-indication is allowed, under-indication is not);
* ``walker_use_after_free`` (I4): a lockless walker inside its protection (interrupts
  off, or ``rcu_read_lock``) that loaded a pointer to a page table never sees that table
  freed or handed out again before it leaves the protection, and never spins on the
  PTE lock of a freed page;
* ``pmd_changed_under_ptl`` (I5): while a walker holds the PTE lock after a successful
  ``pmd_same`` recheck, the segment entry it rechecked keeps its value;
* ``unhooked_table_not_empty`` (I6): while a lockless walker holds a pointer to a page
  table its mm has given back (unhooked and passed to a free, still waiting for its grace
  period), every entry of the table is ``_PAGE_INVALID``: the caller zapped them before
  the unhook, and anything stored there before the free (an ``rcu_head`` put in the
  table itself, say) is what the walker reads as a PTE;
* ``reachability``, at every step: every page table a new walk from a loaded ASCE
  reaches is allocated, not pending, and allocated to the mm whose ASCE it is.

I2 (entries are formed only from valid, attached entries) holds by construction:
``dat.tlb.formable`` is the only source of entries.  The walkers name what they hold
through their local ``pt``: the page table whose pointer they loaded, set only inside
their protection (0 when none).
"""

from __future__ import annotations

import numpy as np

from dat.tlb import describe, naming
from s390emu import structs as S

from .checks import live_mms
from .errors import Violation
from .pgtable_bits import _PAGE_INVALID, PTRS_PER_PTE

_MM = S.mm_struct.fields
_PG_TABLE_OR_BUDDY = S.PG_table | S.PG_buddy


def _where(k) -> str:
    if k.cur:
        cpu, ctx, fr = k.cur
        return f"CPU{cpu} {ctx} {fr.FUNC}: {fr.pc}"
    return ""


def _frames(k):
    for cpu, c in enumerate(k.cpus):
        for st in (c.proc, c.soft):
            for fr in st:
                yield cpu, fr


def at_release(k, lo: int, hi: int, what: str) -> None:
    """I1 and I4 when the tables in ``[lo, hi)`` are freed or handed out again
    (``what`` says which)."""
    for cpu, entries in enumerate(k.tlbs):
        held = naming(entries, lo, hi)
        if held:
            page = k.mem_map.virt_to_page(lo & ~0xFFF)
            raise Violation("tlb_stale", page, f"{lo:#x} {what} while CPU{cpu}'s TLB holds "
                            f"{', '.join(describe(e) for e in sorted(held))}", _where(k))
    for cpu, fr in _frames(k):
        pt = getattr(fr, "pt", 0)
        if pt and lo <= pt < hi:
            page = k.mem_map.virt_to_page(lo & ~0xFFF)
            raise Violation("walker_use_after_free", page, f"page table {pt:#x} {what} while CPU{cpu}'s "
                            f"{fr.FUNC} holds a pointer to it [at {fr.pc}]", _where(k))


def ptl_of_freed_page(k, addr: int) -> None:
    """I4: a ``spin_lock`` of the PTE lock in ``struct page`` of a page that is free."""
    page = addr - (addr - k.mem_map.base) % S.page.size
    if k.mem_map.has_type(page, S.PG_buddy):
        raise Violation("walker_use_after_free", page, f"spin_lock of the PTE lock of page {page:#x}, "
                        "which is free", _where(k))


def after_step(k, cpu: int, ctx: str, fr, label: str) -> None:
    """I3, I5, I6 and reachability after a step."""
    step = f"CPU{cpu} {ctx} {fr.FUNC}: {label}"
    live = {k.mem.read_u64(mm + _MM["context.asce"]): mm for mm in live_mms(k)}    # the live mm of each ASCE
    for c, entries in enumerate(k.tlbs):
        for asce in {e[0] for e in entries}:
            mm = live.get(asce)
            if mm and not k.mem.read_u64(mm + _MM["cpu_bitmap"]) >> c & 1:
                held = min(e for e in entries if e[0] == asce)
                raise Violation("tlb_outside_cpumask", 0, f"CPU{c} holds {describe(held)} of mm {mm:#x} but is "
                                f"not in its mm_cpumask", step)
    for c, w in _frames(k):
        if getattr(w, "rechecked", 0) and k.mem.read_u64(w.pmdp) != w.pmdval:
            raise Violation("pmd_changed_under_ptl", k.mem_map.virt_to_page(w.pmdval & ~0xFFF),
                            f"the segment entry at {w.pmdp:#x} changed from {w.pmdval:#x} to "
                            f"{k.mem.read_u64(w.pmdp):#x} while CPU{c}'s {w.FUNC} holds the PTE lock after "
                            "its pmd_same recheck", step)
        pt = getattr(w, "pt", 0)
        if pt and pt not in k.owner:
            entries = k.mem.table(pt, PTRS_PER_PTE)
            bad = np.flatnonzero(entries != _PAGE_INVALID)
            if bad.size:
                i = int(bad[0])
                raise Violation("unhooked_table_not_empty", k.mem_map.virt_to_page(pt & ~0xFFF),
                                f"page table {pt:#x}, given back by its mm, holds {int(entries[i]):#x} in entry {i} "
                                f"({bad.size} not _PAGE_INVALID) while CPU{c}'s {w.FUNC} still reads it [at {w.pc}]",
                                step)
    _reachable_now(k, live, step)


def _reachable_now(k, live: dict, step: str) -> None:
    """Every page table a loaded ASCE reaches now is allocated to that ASCE's mm, its
    half allocated and not pending (the quiescent check's rules, at every step)."""
    frag = k.v.FRAGMENTS
    for asce, entries in k._formable.items():       # what the last fill found (Kernel.tlb_fill)
        mm = live.get(asce, 0)
        for e in entries:
            if e[3] != 0:                           # only segment entries designate page tables
                continue
            pt = e[2]
            page = k.mem_map.virt_to_page(pt & ~0xFFF)
            byte, h = k.byte(page), (pt >> 11) & 1
            if k.mem_map.page_type(page) & _PG_TABLE_OR_BUDDY != S.PG_buddy:
                why = "in a freed frame or not a page-table page"
            elif frag and (not byte >> h & 1 or byte >> (h + 4) & 1):
                why = f"in a free or pending half (byte {byte:#04x})"
            elif k.owner.get(pt) != mm:
                why = f"owned by mm {k.owner.get(pt, 0):#x}"
            else:
                continue
            c = next(c for c in range(len(k.cpus)) if asce in k.loaded_asces(c))
            raise Violation("reachability", page, f"ASCE {asce:#x} on CPU{c} reaches page table {pt:#x} "
                            f"{why} (STE in {e[1]:#x})", step)
