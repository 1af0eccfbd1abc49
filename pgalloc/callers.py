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

from . import tlb as TLB
from .pgtable_bits import _PAGE_INVALID, _SEGMENT_ENTRY, _SEGMENT_ENTRY_EMPTY, PTRS_PER_PTE
from .steps import DONE, Call, Path, step

# What a running caller has claimed, for whoever schedules them (beside the checks' ``page``).
CLAIMS = ("page", "ste", "table")


def _unhook(k, table: int, ste: int) -> None:
    """``pmd_clear`` and the zapped PTEs: the table is no longer reachable from the mm."""
    k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID
    k.mem.write_u64(ste, _SEGMENT_ENTRY_EMPTY)


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
    # operation runs, and the checks read the slots only once every CPU is idle.
    @step("pmd_populate(mm, pmd, new)", local=True)
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
        _unhook(k, self.table, self.ste)
        return "page_table_free(mm, table)"

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
        _unhook(k, self.table, self.ste)
        return "pte_free_tlb: page_table_free_rcu(tlb, table)"

    @step("pte_free_tlb: page_table_free_rcu(tlb, table)", local=True)
    def free(self, k):
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
    LOCALS = ("mm", "table", "ste")

    @step("pmdp_collapse_flush(pmd)")
    def clear(self, k):
        _unhook(k, self.table, self.ste)
        return "pte_free_defer(mm, pgtable)"

    @step("pte_free_defer(mm, pgtable)", local=True)
    def defer(self, k):
        return Call(k.v.pte_free_defer(mm=self.mm, table=self.table), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


CALLERS = (pte_alloc_op, pte_free_op, free_pgtables_op, collapse_op)
