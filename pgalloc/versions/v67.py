"""Linux v6.7+ ``arch/s390/mm/pgalloc.c``: one page table per 4K page, no fragment byte.

d08d4e7cd6bf ("s390/mm: use full 4KB page for 2KB PTE"), with 0031f1c7cf26 ("use
compound page order to distinguish page tables") and 02e790ee3077 ("make pte_free_tlb()
similar to pXd_free_tlb()"), merged for v6.7 ("more s390 updates for 6.7").

Layout of a page-table page: the lower 2K hold the 256 PTEs (``_PAGE_INVALID``), the
upper 2K are zero (the PGSTE area, used only by KVM mms).  ``_refcount`` is a plain
reference count (1); its upper byte is always 0::

    76543210    upper byte of struct page::_refcount: unused (0x00)

Rules: no ``pgtable_list``, no ``context.lock`` in pgalloc, no pointer tags:
``__tlb_remove_table`` tells CRSTs (compound order 2) from PTE pages by
``compound_order(page)``.  ``pte_free_tlb`` queues the table on the mmu_gather like the
pXd variants (``tlb_remove_ptdesc``); ``pte_free_defer`` is ``call_rcu(&ptdesc->
pt_rcu_head, pte_free_now)``; ``page_table_free`` frees at once.  Read in the v6.8 file
(``ultrarisc/linux-6.8``), whose ``page_table_free_rcu`` is ``tlb_remove_ptdesc``.

Flags: ``FRAGMENTS = False`` (the checks then want the byte 0, 4K-aligned tables, no
tags), ``CRST_COMPOUND`` (``crst_table_alloc`` makes compound pages).  Checks
(``RULES``): no page is ever on a ``pgtable_list``.

Nothing of v6.4's code survives, so the functions are written out whole, not as a
delta on ``v64``.
"""

from __future__ import annotations

from s390emu import lists

from .. import tlb
from ..checks import Rules, tag_check
from ..crst import is_crst_page
from ..pgtable import LRU, RCU_HEAD, AllocPath, FreePath, init_pte_table, memset64, pgtable_pte_page_ctor
from ..pgtable_bits import CRST_ALLOC_ORDER, PTRS_PER_PTE
from ..steps import DONE, Call, Path, step

NAME = "v67"
FRAGMENTS = False
HAS_H = False
LIST_DEL_INIT = True
DEFER_IS_PTE_FREE = False
LOCKLESS_PTE_MAP = True    # as v6.6
CRST_COMPOUND = True

# No fragment byte and no pgtable_list: the flags leave the byte checks out, and no page
# may be listed.
RULES = Rules(listed=lambda k, page, byte, running: False)


class page_table_alloc(AllocPath):
    LOCALS = ("mm", "table", "page")

    @step("pagetable_alloc; pagetable_pte_ctor; memset64")
    def alloc(self, k):
        addr = k.alloc_page(0)
        if not addr:
            return DONE
        self.page = k.mem_map.virt_to_page(addr)
        pgtable_pte_page_ctor(k, self.page)
        lists.INIT_LIST_HEAD(k.mem, self.page + LRU)         # pt_list: used by gmap only
        init_pte_table(k, addr)
        memset64(k, addr + PTRS_PER_PTE * 8, 0, PTRS_PER_PTE)
        self.result = self.table = addr
        return DONE


class page_table_free(FreePath):
    LOCALS = ("mm", "table", "page")

    @step("pagetable_pte_dtor; pagetable_free")
    def free(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        k.free_page(self.page, 0)
        return DONE


class page_table_free_rcu(FreePath):
    """``pte_free_tlb``: ``tlb_remove_ptdesc(tlb, table)`` (gmap_unlink first for PGSTE mms)."""

    LOCALS = ("tlb", "table", "vmaddr", "page")

    @step("tlb_remove_ptdesc(tlb, table)")
    def remove(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        return Call(tlb.tlb_remove_table(tlb=self.tlb, table=self.table), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class tlb_remove_table_(Path):
    """``__tlb_remove_table(table)``: CRST by compound order, else a PTE page."""

    FUNC = "__tlb_remove_table"
    LOCALS = ("table", "page")

    # Local: the compound order of a page waiting to be freed does not change.
    @step("if (compound_order(page) == CRST_ALLOC_ORDER)", local=True)
    def order(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        if k.checks:
            tag_check(k, self.table, self.page)
        if is_crst_page(k, self.page):
            return "pagetable_dtor; pagetable_free (CRST)"
        return "pagetable_pte_dtor; pagetable_free"

    @step("pagetable_dtor; pagetable_free (CRST)")
    def crst(self, k):
        k.free_page(self.page, CRST_ALLOC_ORDER)
        return DONE

    @step("pagetable_pte_dtor; pagetable_free")
    def pte(self, k):
        k.free_page(self.page, 0)
        return DONE


globals()["__tlb_remove_table"] = tlb_remove_table_


class pte_free_now(Path):
    LOCALS = ("page",)

    @step("pagetable_pte_dtor; pagetable_free")
    def free(self, k):
        k.free_page(self.page, 0)
        return DONE


class pte_free_defer(FreePath):
    LOCALS = ("mm", "table", "page")

    @step("call_rcu(&ptdesc->pt_rcu_head, pte_free_now)")
    def rcu(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        k.call_rcu(self.page + RCU_HEAD, "pte_free_now")
        return DONE


CALLBACKS = {"pte_free_now": lambda head, args: pte_free_now(page=head - RCU_HEAD)}
