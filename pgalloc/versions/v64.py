"""Linux v6.2 .. v6.5 ``arch/s390/mm/pgalloc.c``: 2K page tables, two per 4K page ("PP AA").

This is the code the June 2023 seed patch applies to (blob 66ab68db9842, v6.4-rc), with
the two-step free of commit c2c224932fd0 ("s390/mm: fix 2KB pgtable release race",
Alexander Gordeev, 5.15/5.16 stable, Jan 2022).

The upper byte (bits 24-31) of the parent page's ``_refcount`` tracks the 2K halves
(h = 0 the lower 2K at offset 0, h = 1 the upper at offset 2048; the kernel's drawing
labels them the other way round, the code does this)::

      PP  AA
    76543210    upper byte of struct page::_refcount
      ||  ||
      ||  |+--- A0 (0x01): lower 2K page table allocated
      ||  +---- A1 (0x02): upper 2K page table allocated
      |+------- P0 (0x10): lower 2K pending for removal (RCU free in flight; also held
      |                    briefly by page_table_free)
      +-------- P1 (0x20): upper 2K pending for removal

Rules: A(h) and P(h) are mutually exclusive (one XOR of 0x11 << h turns A off and P on).
``mm->context.lock`` (taken with ``spin_lock_bh``) protects ``pgtable_list`` and the A
bits; P bits are cleared without it.  ``pgtable_list`` holds the 4K pages that have a
free or pending half: ``page_table_free`` adds at the head, ``page_table_free_rcu`` at
the tail (its half is still P); ``page_table_alloc`` looks at the first page only, and
takes a half only if ``(byte | byte >> 4) & 3 != 3``.  The page is freed by whichever
path's XOR turns the byte to 0.  ``__tlb_remove_table`` decodes the pointer tag: 0 CRST,
1 lower half, 2 upper half, 3 4K PGSTE table.  PGSTE (KVM) mms use a whole 4K page per
table (256 PTEs + 256 PGSTEs) with byte 0x03, never listed.

v6.4 has no ``pte_free_defer``: khugepaged's ``collapse_and_free_pmd`` cleared the pmd,
called ``tlb_remove_table_sync_one()`` and then ``pte_free()``; that is what
``pte_free_defer`` runs here.

Checks (``RULES``): a listed page has one half free or pending and not both allocated
(``(byte & 3) != 3 and byte & 0x33``); byte legality from the flags (no H bits).
"""

from __future__ import annotations


from .. import tlb
from ..checks import Rules, tag_check
from ..pgtable_bits import CRST_ALLOC_ORDER, PTRS_PER_PTE
from ..pgtable import (PGTABLE_LIST, AllocPath, FreePath, init_pte_table, memset64,
                      mm_alloc_pgste, pgtable_pte_page_ctor, table_bit)
from ..steps import BLOCKED, DONE, Call, Path, step

NAME = "v64"
FRAGMENTS = True        # two 2K tables per 4K page, tracked in the _refcount byte
HAS_H = False           # no HH bits
LIST_DEL_INIT = False   # list_del poisons lru
DEFER_IS_PTE_FREE = True   # no pte_free_defer: khugepaged's collapse is pte_free after a sync IPI
LOCKLESS_PTE_MAP = False    # pte_offset_map is pte_offset_kernel: its callers hold the mmap or an rmap lock
CRST_COMPOUND = False


def listed_ok(k, page: int, byte: int, running: set) -> bool:
    """A page on ``pgtable_list`` has a free or pending half, and not both allocated."""
    return (byte & 3) != 3 and (byte & 0x33) != 0


RULES = Rules(listed=listed_ok)


class page_table_alloc(AllocPath):
    LOCALS = ("mm", "table", "page", "bit", "mask")

    @step("if (!mm_alloc_pgste(mm))", local=True)
    def pgste(self, k):
        return "alloc_page" if mm_alloc_pgste(k, self.mm) else "spin_lock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock)", lock="bh")
    def lock(self, k):
        return "list_first_entry; mask = atomic_read >> 24" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("list_first_entry; mask = atomic_read >> 24")
    def first(self, k):
        self.page = k.list_first(self.mm + PGTABLE_LIST)
        if not self.page:
            return "spin_unlock_bh(&mm->context.lock)"
        mask = k.atomic_read(self.page) >> 24
        # The pending removal bits must also be checked (0x13/0x23 are impossible).
        mask = (mask | (mask >> 4)) & 0x03
        if mask == 0x03:
            return "spin_unlock_bh(&mm->context.lock)"
        self.bit = mask & 1          # =1 -> second 2K
        self.table = k.mem_map.page_address(self.page) + self.bit * PTRS_PER_PTE * 8
        return "atomic_xor_bits(A)"

    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        k.atomic_xor_bits(self.page, 0x01 << (self.bit + 24))
        return "list_del(&page->lru)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
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
        self.table = addr                      # arch_set_page_dat(page, 0)
        return "atomic_xor_bits(AA); 4K PTE+PGSTE init" if mm_alloc_pgste(k, self.mm) else "atomic_xor_bits(A0); init 2x2K"

    @step("atomic_xor_bits(AA); 4K PTE+PGSTE init")
    def pgste_init(self, k):
        k.atomic_xor_bits(self.page, 0x03 << 24)
        init_pte_table(k, self.table)
        memset64(k, self.table + PTRS_PER_PTE * 8, 0, PTRS_PER_PTE)
        self.result = self.table
        return DONE

    # Local: a page just taken from the buddy allocator, on no list and in no segment
    # table yet: no other path can reach it.
    @step("atomic_xor_bits(A0); init 2x2K", local=True)
    def first_half(self, k):
        # Return the first 2K fragment of the page; both halves initialised.
        k.atomic_xor_bits(self.page, 0x01 << 24)
        init_pte_table(k, self.table, 2 * PTRS_PER_PTE)
        return "spin_lock_bh(&mm->context.lock) [list_add]"

    @step("spin_lock_bh(&mm->context.lock) [list_add]", lock="bh")
    def lock2(self, k):
        return "list_add(&page->lru, &mm->context.pgtable_list)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("list_add(&page->lru, &mm->context.pgtable_list)")
    def add(self, k):
        k.list_add(self.page, self.mm + PGTABLE_LIST)
        return "spin_unlock_bh(&mm->context.lock) [list_add]"

    @step("spin_unlock_bh(&mm->context.lock) [list_add]", unlock="bh")
    def unlock2(self, k):
        k.spin_unlock(self.lock_addr(), True)
        self.result = self.table
        return DONE


class page_table_free(FreePath):
    LOCALS = ("mm", "table", "page", "bit", "mask")

    @step("if (!mm_alloc_pgste(mm))", local=True)
    def pgste(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        if mm_alloc_pgste(k, self.mm):
            return "atomic_xor_bits(AA)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock)", lock="bh")
    def lock(self, k):
        return "atomic_xor_bits(A|P)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        # Mark the page for delayed release; the release happens outside the critical
        # section, here or in __tlb_remove_table (c2c224932fd0).
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "list_add(&page->lru, &mm->context.pgtable_list)" if self.mask & 0x03 else "list_del(&page->lru)"

    @step("list_add(&page->lru, &mm->context.pgtable_list)")
    def add(self, k):
        k.list_add(self.page, self.mm + PGTABLE_LIST)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return "atomic_xor_bits(P)"

    @step("atomic_xor_bits(P)")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x10 << (self.bit + 24)) >> 24
        return DONE if self.mask != 0x00 else "page_table_release_check; __free_page"

    @step("atomic_xor_bits(AA)")
    def xor_aa(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x03 << 24) >> 24
        return "page_table_release_check; __free_page"

    @step("page_table_release_check; __free_page")
    def free(self, k):
        if self.mask:
            k.warn("page_table_release_check", self.page, f"Invalid pgtable {self.table:#x} release mask {self.mask:#04x}")
        k.free_page(self.page, 0)
        return DONE


class page_table_free_rcu(FreePath):
    LOCALS = ("tlb", "table", "vmaddr", "mm", "page", "bit", "mask")

    # Local: reads what no other CPU changes while the operation runs (the gather is
    # this operation's own, the mm's PGSTE flag is set before any table exists).
    @step("mm = tlb->mm; if (mm_alloc_pgste(mm))", local=True)
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

    @step("spin_lock_bh(&mm->context.lock)", lock="bh")
    def lock(self, k):
        return "atomic_xor_bits(A|P)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "list_add_tail(&page->lru, &mm->context.pgtable_list)" if self.mask & 0x03 else "list_del(&page->lru)"

    @step("list_add_tail(&page->lru, &mm->context.pgtable_list)")
    def add(self, k):
        k.list_add(self.page, self.mm + PGTABLE_LIST, tail=True)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return "tlb_remove_table(tlb, table | 1 << bit)"

    @step("tlb_remove_table(tlb, table | 1 << bit)", local=True)
    def remove(self, k):
        return Call(tlb.tlb_remove_table(tlb=self.tlb, table=self.table | (0x01 << self.bit)), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class tlb_remove_table_(Path):
    """``__tlb_remove_table(_table)``: the RCU batch callback (or the no-memory fallback)."""

    FUNC = "__tlb_remove_table"
    LOCALS = ("table", "page", "half", "mask")

    # Local: decoding its own tagged pointer (tag, struct page): stable while the table
    # waits to be freed, and tag_check's reads go with it.
    @step("switch (table & 0x03)", local=True)
    def switch(self, k):
        self.half = self.table & 0x03
        self.page = k.mem_map.virt_to_page(self.table ^ self.half)
        if k.checks:
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
        return DONE if self.mask != 0 else "page_table_release_check; __free_page"

    @step("atomic_xor_bits(AA)")
    def xor_aa(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x03 << 24) >> 24
        return "page_table_release_check; __free_page"

    @step("page_table_release_check; __free_page")
    def free(self, k):
        if self.mask:
            k.warn("page_table_release_check", self.page, f"Invalid pgtable release half {self.half:#04x} mask {self.mask:#04x}")
        k.free_page(self.page, 0)
        return DONE


globals()["__tlb_remove_table"] = tlb_remove_table_


class pte_free_defer(FreePath):
    """v6.4 had none: khugepaged's collapse_and_free_pmd did this (sync IPI, then pte_free)."""

    LOCALS = ("mm", "table", "page")

    @step("tlb_remove_table_sync_one", local=True)
    def sync(self, k):
        if k.walkers:       # the IPI GUP-fast's interrupts-off section holds up
            return Call(tlb.tlb_remove_table_sync_one(), "pte_free(mm, pgtable)")
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "return")

    @step("pte_free(mm, pgtable)", local=True)
    def free(self, k):
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


CALLBACKS: dict = {}
