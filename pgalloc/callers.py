"""The kernel's callers of the allocator: the paths that run ``page_table_alloc``,
``page_table_free``, ``page_table_free_rcu`` and ``pte_free_defer`` on one table.

* ``__pte_alloc`` (mm/memory.c): ``pte_alloc_one`` (``page_table_alloc``), then
  ``pmd_populate`` stores the new table in its segment-table entry;
* ``pte_free`` after ``pmd_clear``: the table is unhooked, then ``page_table_free``;
* ``free_pgtables`` (mm/memory.c) with an ``mmu_gather``: ``tlb_gather_mmu``,
  ``pmd_clear``, ``pte_free_tlb`` (``page_table_free_rcu``), ``tlb_finish_mmu``;
* khugepaged's ``retract_page_tables`` (mm/khugepaged.c): ``pmdp_collapse_flush``,
  then ``pte_free_defer``.

Each unhooks or hooks its table the way the kernel's caller does (the PTEs zapped to
``_PAGE_INVALID``, the segment entry made ``_SEGMENT_ENTRY_EMPTY``) and calls the
running version's function through ``k.v``.  They know nothing of the explorer, which
starts them as its operations.

When the kernel models the readers in flight (``Kernel(walkers=True)``), each caller
also issues its real flush and IPI steps, in the kernel's order (reference
``walkers-and-tlb.md`` §2-3), because a TLB or a lockless walker can see them:

* ``pte_free`` is ≤6.5 khugepaged's ``collapse_and_free_pmd``: ``pmdp_collapse_flush``
  (IDTE of the segment entry), ``tlb_remove_table_sync_one`` (the IPI), ``pte_free``;
  a plain ``pmd_clear`` before ``pte_free`` of a table that was ever reachable is no
  kernel path once TLBs are modelled;
* ``free_pgtables``: ``unmap_vmas`` zaps the PTEs (``ptep_get_and_clear``: a plain store
  and ``flush_mm`` when this CPU alone is attached, else IPTE), ``pmd_clear`` (a plain
  store), ``pte_free_tlb`` sets ``flush_mm``, ``tlb_finish_mmu`` flushes
  (``__tlb_flush_mm_lazy``) before ``call_rcu``;
* ``retract_page_tables``: since v6.6 (versions with ``LOCKLESS_PTE_MAP``) it takes the
  PTE lock (``pmd_lock`` too, which nothing else in the model takes, so it is left out)
  with ``pmdp_collapse_flush`` in one step, unlocks, ``pte_free_defer``; before, under the mmap
  write lock, ``pmdp_collapse_flush`` and the version's ``pte_free_defer`` (v6.4: the IPI
  and ``pte_free``).

>>> from pgalloc import Kernel, mm as MM
>>> k = Kernel("v64", mem_size=8 << 20)
>>> m = MM.mm_alloc(k)
>>> MM.map_range(k, m, 0, 1 << 20)
>>> ste = MM.segment_table(k, m, 0)
>>> table = k.mem.read_u64(ste) & ~0x7FF
>>> _ = k.run(pte_free_op(mm=m, table=table, ste=ste))
>>> hex(k.mem.read_u64(ste)), k.owner
('0x20', {})
"""

from __future__ import annotations

from s390emu import structs as S
from s390emu.machine import MEM_MAP

from . import tlb as TLB
from . import tlbflush as F
from .pgtable_bits import _PAGE_INVALID, _SEGMENT_ENTRY, _SEGMENT_ENTRY_EMPTY, PTRS_PER_PTE
from .steps import BLOCKED, DONE, UNLESS_WALKERS, Call, Path, step

# What a running caller has claimed, for whoever schedules them (beside the checks' ``page``).
CLAIMS = ("page", "ste", "table")


def lockless_pte_map(v) -> bool:
    """Whether version module ``v`` has v6.6's lockless ``pte_offset_map`` (and retracts
    tables under the PTE lock, freeing them with ``pte_free_defer``): its
    ``LOCKLESS_PTE_MAP``, or for a file written before the flag, whether its
    ``pte_free_defer`` is more than ``pte_free``."""
    return getattr(v, "LOCKLESS_PTE_MAP", not v.DEFER_IS_PTE_FREE)


def ptlock_ptr(table: int) -> int:
    """``pte_lockptr``: the PTE lock of a page table is ``page->ptl`` in ``struct page`` of
    its 4K frame (overlaying ``private``), so before v6.7 both 2K halves share it."""
    return MEM_MAP + (table >> 12) * S.page.size + S.page.fields["private"]


def _unhook(k, table: int, ste: int) -> None:
    """``pmd_clear`` and the zapped PTEs: the table is no longer reachable from the mm."""
    k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID
    k.mem.write_u64(ste, _SEGMENT_ENTRY_EMPTY)


def pmdp_collapse_flush(k, mm: int, table: int, ste: int) -> None:
    """khugepaged's unhook with walkers: the PTEs are none (``collapse_file()`` already
    unmapped the small pages), then ``pmdp_collapse_flush``: IDTE of the segment entry."""
    k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID
    F.pmdp_flush_direct(k, mm, ste)


class pte_alloc_op(Path):
    """``__pte_alloc``: ``pte_alloc_one`` (page_table_alloc), then ``pmd_populate``."""

    FUNC = "__pte_alloc"
    EXTERNAL = CLAIMS
    LOCALS = ("mm", "ste")

    @step("pte_alloc_one: page_table_alloc(mm)", local=True)
    def alloc(self, k):
        return Call(k.v.page_table_alloc(mm=self.mm), "pmd_populate(mm, pmd, new)")

    # Local: the store goes into this operation's own claimed, so far empty, slot: no
    # other operation works on a claimed slot, exit does not start while an mm
    # operation runs, and the checks read the slots only once every CPU is idle.  But
    # a TLB may form entries from it, and a lockless walker read it, at once.
    @step("pmd_populate(mm, pmd, new)", local=UNLESS_WALKERS)
    def populate(self, k):
        if self.ret:
            k.mem.write_u64(self.ste, self.ret | _SEGMENT_ENTRY)
        return DONE


class pte_free_op(Path):
    """``pmd_clear`` then ``pte_free`` (``page_table_free``)."""

    FUNC = "pte_free"
    EXTERNAL = CLAIMS
    LOCALS = ("mm", "table", "ste")

    @step("pmd_clear(pmd); zap ptes")
    def clear(self, k):
        if k.walkers:       # ≤6.5 khugepaged's collapse_and_free_pmd
            pmdp_collapse_flush(k, self.mm, self.table, self.ste)
            return "tlb_remove_table_sync_one"
        _unhook(k, self.table, self.ste)
        return "page_table_free(mm, table)"

    @step("tlb_remove_table_sync_one", local=True)
    def sync(self, k):
        return Call(TLB.tlb_remove_table_sync_one(), "page_table_free(mm, table)")

    @step("page_table_free(mm, table)", local=True)
    def free(self, k):
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class free_pgtables_op(Path):
    """``free_pgtables`` of one table: gather, ``pmd_clear``, ``pte_free_tlb``, ``tlb_finish_mmu``."""

    FUNC = "free_pgtables"
    EXTERNAL = CLAIMS
    LOCALS = ("mm", "table", "ste", "nomem", "tlb")

    @step("tlb_gather_mmu(&tlb, mm); pmd_clear(pmd)")
    def gather(self, k):
        self.tlb = k.tlb_gather_mmu(self.mm, nomem=bool(self.nomem))
        if k.walkers:
            F.ptep_flush_lazy(k, self.mm, self.table)
            return "free_pgtables: pmd_clear(pmd)"
        _unhook(k, self.table, self.ste)
        return "pte_free_tlb: page_table_free_rcu(tlb, table)"

    @step("free_pgtables: pmd_clear(pmd)")
    def clear(self, k):
        k.mem.write_u64(self.ste, _SEGMENT_ENTRY_EMPTY)
        return "pte_free_tlb: page_table_free_rcu(tlb, table)"

    # With walkers pte_free_tlb first sets flush_mm, which another CPU's
    # __tlb_flush_mm_lazy reads: then the step is not local.
    @step("pte_free_tlb: page_table_free_rcu(tlb, table)", local=UNLESS_WALKERS)
    def free(self, k):
        if k.walkers:
            k.mem.write_u32(self.mm + S.mm_struct.fields["context.flush_mm"], 1)
        return Call(k.v.page_table_free_rcu(tlb=self.tlb, table=self.table, vmaddr=0), "tlb_finish_mmu(&tlb)")

    @step("tlb_finish_mmu(&tlb)", local=True)
    def finish(self, k):
        return Call(TLB.tlb_finish_mmu(tlb=self.tlb), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class collapse_op(Path):
    """khugepaged ``retract_page_tables``: ``pmdp_collapse_flush``, then ``pte_free_defer``."""

    FUNC = "retract_page_tables"
    EXTERNAL = CLAIMS
    LOCALS = ("mm", "table", "ste", "ptl")

    # v6.6+ with walkers: the PTE lock is taken in this step, before the unhook (taking
    # it is a right mover: no softirq takes it, and it commutes with every other CPU's
    # step while held), so the step waits while a walker holds it.
    @step("pmdp_collapse_flush(pmd)", lock="plain", then=("pte_free_defer(mm, pgtable)", "spin_unlock(ptl)"))
    def clear(self, k):
        if not k.walkers:
            _unhook(k, self.table, self.ste)
            return "pte_free_defer(mm, pgtable)"
        if lockless_pte_map(k.v):
            if not k.spin_lock(self.lock_addr(), False):
                return BLOCKED
            self.ptl = self.lock_addr()
        pmdp_collapse_flush(k, self.mm, self.table, self.ste)
        return "spin_unlock(ptl)" if self.ptl else "pte_free_defer(mm, pgtable)"

    @step("spin_unlock(ptl)", unlock="plain")
    def unlock(self, k):
        k.spin_unlock(self.ptl, False)
        self.ptl = 0
        return "pte_free_defer(mm, pgtable)"

    def lock_addr(self) -> int:
        return ptlock_ptr(self.table)

    @step("pte_free_defer(mm, pgtable)", local=True)
    def defer(self, k):
        return Call(k.v.pte_free_defer(mm=self.mm, table=self.table), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


CALLERS = (pte_alloc_op, pte_free_op, free_pgtables_op, collapse_op)
