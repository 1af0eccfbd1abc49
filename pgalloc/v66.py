"""Linux v6.6 ``arch/s390/mm/pgalloc.c``: merged ``pte_free_defer`` (8211dad627981 "s390:
add pte_free_defer() for pgtables sharing page", Hugh Dickins, v3 + fix, Jul 2023).

Byte semantics exactly as v6.4 ("PP AA": A0 0x01, A1 0x02, P0 0x10, P1 0x20; A(h) and
P(h) mutually exclusive; two-step free of c2c224932fd0)::

      PP  AA
    76543210    upper byte of struct page::_refcount

plus the page flag PG_active: "pte_free_defer() was used on a half of this page".

Rules added to v6.4's: ``pgtable_list`` entries are removed with ``list_del_init`` so
``list_empty(&page->lru)`` answers "is it listed?" (PGSTE pages ``INIT_LIST_HEAD``);
a PageActive page is never (re)listed, so once either half was deferred the other half
is not reused; ``pte_free_defer`` = ``SetPageActive`` + ``page_table_free``; when the
last half goes (byte 0), ``TestClearPageActive`` decides between ``call_rcu(&page->
rcu_head, pte_free_now)`` and freeing at once.  The ``rcu_head`` is used once per page,
when the whole page is freed and already unlisted, without touching any mm.
"""

from __future__ import annotations

from s390emu import structs as S
from s390emu import lists

from . import tlb
from .crst import CRST_ALLOC_ORDER, PTRS_PER_PTE
from .kernel import RCU_HEAD, LRU
from .pgtable import (PGTABLE_LIST, AllocPath, FreePath, init_pte_table, memset64,
                      mm_alloc_pgste, mm_has_pgste, pgtable_pte_page_ctor, table_bit)
from .steps import BLOCKED, DONE, Call, Path, step

NAME = "v66"
FRAGMENTS = True
HAS_H = False
LIST_DEL_INIT = True
DEFER_IS_PTE_FREE = False
CRST_COMPOUND = False


def _release(self, k, half_label: str):
    """page_table_release_check + TestClearPageActive: the common tail of the frees."""
    listed = not lists.list_empty(k.mem, self.page + LRU)
    if self.mask or listed:
        k.warn("page_table_release_check", self.page,
               f"Invalid pgtable release {half_label} mask {self.mask:#04x}{' (still listed)' if listed else ''}")
    if k.mem_map.set_flag(self.page, S.PG_active, False):      # TestClearPageActive
        return "call_rcu(&page->rcu_head, pte_free_now)"
    return "pte_free_now(&page->rcu_head)"


class page_table_alloc(AllocPath):
    LOCALS = ("mm", "table", "page", "bit", "mask")

    @step("if (!mm_alloc_pgste(mm))")
    def pgste(self, k):
        return "alloc_page" if mm_alloc_pgste(k, self.mm) else "spin_lock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock)")
    def lock(self, k):
        return "list_first_entry; mask = atomic_read >> 24" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("list_first_entry; mask = atomic_read >> 24")
    def first(self, k):
        self.page = k.list_first(self.mm + PGTABLE_LIST)
        if not self.page:
            return "spin_unlock_bh(&mm->context.lock)"
        mask = k.atomic_read(self.page) >> 24
        mask = (mask | (mask >> 4)) & 0x03
        if mask == 0x03:
            return "spin_unlock_bh(&mm->context.lock)"
        self.bit = mask & 1          # =1 -> second 2K
        self.table = k.mem_map.page_address(self.page) + self.bit * PTRS_PER_PTE * 8
        return "atomic_xor_bits(A)"

    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        k.atomic_xor_bits(self.page, 0x01 << (self.bit + 24))
        return "list_del_init(&page->lru)"

    @step("list_del_init(&page->lru)")
    def del_(self, k):
        k.list_del(self.page, init=True)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        if self.table:
            self.result = self.table
            return DONE
        return "alloc_page"

    @step("alloc_page")
    def alloc(self, k):
        addr = k.alloc_page(0)
        if not addr:
            return DONE
        self.page = k.mem_map.virt_to_page(addr)
        pgtable_pte_page_ctor(k, self.page)
        self.table = addr
        if mm_alloc_pgste(k, self.mm):
            lists.INIT_LIST_HEAD(k.mem, self.page + LRU)
            return "atomic_xor_bits(AA); 4K PTE+PGSTE init"
        return "atomic_xor_bits(A0); init 2x2K"

    @step("atomic_xor_bits(AA); 4K PTE+PGSTE init")
    def pgste_init(self, k):
        k.atomic_xor_bits(self.page, 0x03 << 24)
        init_pte_table(k, self.table)
        memset64(k, self.table + PTRS_PER_PTE * 8, 0, PTRS_PER_PTE)
        self.result = self.table
        return DONE

    @step("atomic_xor_bits(A0); init 2x2K")
    def first_half(self, k):
        k.atomic_xor_bits(self.page, 0x01 << 24)
        init_pte_table(k, self.table, 2 * PTRS_PER_PTE)
        return "spin_lock_bh(&mm->context.lock) [list_add]"

    @step("spin_lock_bh(&mm->context.lock) [list_add]")
    def lock2(self, k):
        return "list_add(&page->lru, &mm->context.pgtable_list)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("list_add(&page->lru, &mm->context.pgtable_list)")
    def add(self, k):
        k.list_add(self.page, self.mm + PGTABLE_LIST)
        return "spin_unlock_bh(&mm->context.lock) [list_add]"

    @step("spin_unlock_bh(&mm->context.lock) [list_add]")
    def unlock2(self, k):
        k.spin_unlock(self.lock_addr(), True)
        self.result = self.table
        return DONE


class page_table_free(FreePath):
    LOCALS = ("mm", "table", "page", "bit", "mask")

    @step("if (!mm_alloc_pgste(mm))")
    def pgste(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        if mm_alloc_pgste(k, self.mm):
            return "atomic_xor_bits(AA)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock)")
    def lock(self, k):
        return "atomic_xor_bits(A|P)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init"

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init")
    def list_op(self, k):
        if (self.mask & 0x03) and not k.mem_map.test_flag(self.page, S.PG_active):
            k.list_add(self.page, self.mm + PGTABLE_LIST)
        else:
            k.list_del(self.page, init=True)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return "atomic_xor_bits(P)"

    @step("atomic_xor_bits(P)")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x10 << (self.bit + 24)) >> 24
        return DONE if self.mask != 0x00 else "page_table_release_check; TestClearPageActive"

    @step("atomic_xor_bits(AA)")
    def xor_aa(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x03 << 24) >> 24
        return "page_table_release_check; TestClearPageActive"

    @step("page_table_release_check; TestClearPageActive")
    def release(self, k):
        return _release(self, k, f"half {self.bit}")

    @step("call_rcu(&page->rcu_head, pte_free_now)")
    def rcu(self, k):
        k.call_rcu(self.page + RCU_HEAD, "pte_free_now")
        return DONE

    @step("pte_free_now(&page->rcu_head)")
    def now(self, k):
        return Call(pte_free_now(page=self.page), "return")

    @step("return")
    def ret_(self, k):
        return DONE


class page_table_free_rcu(FreePath):
    LOCALS = ("tlb", "table", "vmaddr", "mm", "page", "bit", "mask")

    @step("mm = tlb->mm; if (mm_alloc_pgste(mm))")
    def pgste(self, k):
        self.mm = k.gathers[self.tlb][0]
        self.page = k.mem_map.virt_to_page(self.table)
        if mm_alloc_pgste(k, self.mm):
            return "gmap_unlink; tlb_remove_table(table | 3)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("gmap_unlink; tlb_remove_table(table | 3)")
    def pgste_remove(self, k):
        return Call(tlb.tlb_remove_table(tlb=self.tlb, table=self.table | 0x03), "return")

    @step("spin_lock_bh(&mm->context.lock)")
    def lock(self, k):
        return "atomic_xor_bits(A|P)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init"

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init")
    def list_op(self, k):
        if (self.mask & 0x03) and not k.mem_map.test_flag(self.page, S.PG_active):
            k.list_add(self.page, self.mm + PGTABLE_LIST, tail=True)
        else:
            k.list_del(self.page, init=True)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return "tlb_remove_table(tlb, table | 1 << bit)"

    @step("tlb_remove_table(tlb, table | 1 << bit)")
    def remove(self, k):
        return Call(tlb.tlb_remove_table(tlb=self.tlb, table=self.table | (0x01 << self.bit)), "return")

    @step("return")
    def ret_(self, k):
        return DONE


class tlb_remove_table_(Path):
    """``__tlb_remove_table(_table)``."""

    FUNC = "__tlb_remove_table"
    LOCALS = ("table", "page", "half", "mask")

    @step("switch (table & 0x03)")
    def switch(self, k):
        self.half = self.table & 0x03
        self.page = k.mem_map.virt_to_page(self.table ^ self.half)
        if k.checks:
            from .checks import tag_check
            tag_check(k, self.table, self.page)
        if self.half == 0:
            return "free_pages(table, CRST_ALLOC_ORDER)"
        if self.half == 3:
            return "atomic_xor_bits(AA)"
        return "atomic_xor_bits(P)"

    @step("free_pages(table, CRST_ALLOC_ORDER)")
    def crst(self, k):
        k.free_page(self.page, CRST_ALLOC_ORDER)
        return DONE

    @step("atomic_xor_bits(P)")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, self.half << (4 + 24)) >> 24
        return DONE if self.mask != 0 else "page_table_release_check; TestClearPageActive"

    @step("atomic_xor_bits(AA)")
    def xor_aa(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x03 << 24) >> 24
        return "page_table_release_check; TestClearPageActive"

    @step("page_table_release_check; TestClearPageActive")
    def release(self, k):
        return _release(self, k, f"half {self.half:#04x}")

    @step("call_rcu(&page->rcu_head, pte_free_now)")
    def rcu(self, k):
        k.call_rcu(self.page + RCU_HEAD, "pte_free_now")
        return DONE

    @step("pte_free_now(&page->rcu_head)")
    def now(self, k):
        return Call(pte_free_now(page=self.page), "return")

    @step("return")
    def ret_(self, k):
        return DONE


globals()["__tlb_remove_table"] = tlb_remove_table_


class pte_free_now(Path):
    """``pte_free_now(head)``: ``pgtable_pte_page_dtor`` + ``__free_page`` (also the RCU callback)."""

    LOCALS = ("page",)

    @step("pgtable_pte_page_dtor; __free_page")
    def free(self, k):
        k.free_page(self.page, 0)
        return DONE


class pte_free_defer(FreePath):
    LOCALS = ("mm", "table", "page")

    @step("SetPageActive(page)")
    def active(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        k._access(self.page, "SetPageActive")
        k.mem_map.set_flag(self.page, S.PG_active)
        return Call(page_table_free(mm=self.mm, table=self.table), "WARN_ON_ONCE(mm_has_pgste(mm))")

    @step("WARN_ON_ONCE(mm_has_pgste(mm))")
    def warn(self, k):
        if mm_has_pgste(k, self.mm):
            k.warn("WARN_ON_ONCE(mm_has_pgste(mm))", self.page, "pte_free_defer on an mm that uses PGSTEs")
        return DONE


CALLBACKS = {"pte_free_now": lambda head, args: pte_free_now(page=head - RCU_HEAD)}
