"""The seed: Hugh Dickins, "[PATCH 07/12] s390: add pte_free_defer() for pgtables sharing
page", posted 12 Jun 2023 in "Re: [PATCH 07/12] s390: add pte_free_defer(), with use of
mmdrop_async()" <a948f24b-4fe6-8bc0-221a-65e9ccc8371a@google.com>, against pgalloc.c
66ab68db9842 (v6.4-rc), "entirely unbuilt and untested".

Exactly as posted, with only its two compile errors fixed (``struct rcu_read *`` ->
``struct rcu_head *`` in ``pte_free_now1``; the missing ``;`` after ``call_rcu`` in the
PGSTE branch of ``pte_free_defer``).  Every mask expression is kept as written,
including ``pte_free_half``'s ``mask`` which is *not* shifted down by 24 before
``mask & 0x0CU`` is tested (so the test reads the low refcount bits, not the H bits).

New rule: a page is not linked on ``mm_context_t::pgtable_list`` while either half is
pending free by any method; afterwards ``__tlb_remove_table`` relinks it (other half
allocated, via ``page->pt_mm``'s lock) or frees it.  That frees ``page->lru`` so the
overlaying ``page->rcu_head`` can carry ``pte_free_defer``'s callback::

      PPHHAA
    76543210    upper byte (bits 24-31) of struct page::_refcount
      ||||||
      |||||+--- A0 (0x01): lower 2KB-pgtable is allocated
      ||||+---- A1 (0x02): upper 2KB-pgtable is allocated
      |||+----- H0 (0x04): lower pending free by page->rcu_head (pte_free_defer)
      ||+------ H1 (0x08): upper pending free by page->rcu_head
      |+------- P0 (0x10): lower pending free by any method
      +-------- P1 (0x20): upper pending free by any method

Rules (intended): H(h) implies P(h); A(h) excludes P(h) and H(h); listed iff exactly one
A bit and no P/H; ``page->pt_mm`` is the owner mm.  Admitted flaw: ``__tlb_remove_table``
reads "other half allocated" and then takes ``page->pt_mm->context.lock``; nothing
guarantees the mm has not been freed in between.

Checks (``RULES``): a page is listed if and only if its byte is 0x01 or 0x02 (the
"only if" while no lock is held); an H bit needs a queued or running ``pte_free_now``
callback for its page (``HAS_H``).
"""

from __future__ import annotations

from . import v64
from ..checks import Rules, tag_check
from ..pgtable import PGTABLE_LIST, RCU_HEAD, FreePath, mm_alloc_pgste, pgtable_pte_page_ctor, table_bit
from ..pgtable_bits import CRST_ALLOC_ORDER, PTRS_PER_PTE
from ..steps import BLOCKED, DONE, Call, Path, step

NAME = "seed"
FRAGMENTS = True
HAS_H = True
LIST_DEL_INIT = False
DEFER_IS_PTE_FREE = False
LOCKLESS_PTE_MAP = True    # the seed is a patch of the series that frees retracted tables by RCU (v6.6): pte_offset_map under rcu_read_lock
CRST_COMPOUND = False


def one_half_free(byte: int) -> bool:
    """The seed's list rule: listed exactly when one half is allocated and nothing is pending."""
    return byte in (0x01, 0x02)


RULES = Rules(listed=lambda k, page, byte, running: one_half_free(byte), unlisted=one_half_free)


def _no_h_in_mask(fr) -> bool:
    # pte_free_half's test of the mask its own XOR returned: with no H bit it returns
    # without touching anything (as posted the test reads the low refcount bits, so
    # that is nearly always).
    return not fr.mask & 0x0C


def _warn_pt_mm(k, page: int, mm: int, where: str) -> None:
    pt_mm = k.mem_map.field(page, "pt_mm")
    if pt_mm != mm:
        k.warn("WARN_ON_ONCE(page->pt_mm != mm)", page, f"{where}: page->pt_mm {pt_mm:#x} != mm {mm:#x}")


class page_table_alloc(v64.page_table_alloc):
    """The seed patches two steps of v6.4's ``page_table_alloc``; the rest is unchanged."""

    @step("list_first_entry; mask = atomic_read >> 24")
    def first(self, k):
        self.page = k.list_first(self.mm + PGTABLE_LIST)
        if not self.page:
            return "spin_unlock_bh(&mm->context.lock)"
        mask = k.atomic_read(self.page) >> 24
        # Cannot be on this list if either half pending free
        if mask & ~0x03:
            k.warn("WARN_ON_ONCE(mask & ~0x03U)", self.page, f"listed page has pending bits {mask:#04x}")
        # One or other half must be available, but not both
        if mask == 0x00 or mask == 0x03:
            k.warn("WARN_ON_ONCE(mask == 0x00U || mask == 0x03U)", self.page, f"listed page has mask {mask:#04x}")
        self.mask = mask
        self.table = k.mem_map.page_address(self.page)
        self.bit = mask & 0x01       # =1 -> second 2K available
        self.table += self.bit * PTRS_PER_PTE * 8
        return "atomic_xor_bits(A)"

    @step("alloc_page")
    def alloc(self, k):
        addr = k.alloc_page(0)
        if not addr:
            return DONE
        self.page = k.mem_map.virt_to_page(addr)
        pgtable_pte_page_ctor(k, self.page)
        k.mem_map.set_field(self.page, "pt_mm", self.mm)      # page->pt_mm = mm
        self.table = addr
        return "atomic_xor_bits(AA); 4K PTE+PGSTE init" if mm_alloc_pgste(k, self.mm) else "atomic_xor_bits(A0); init 2x2K"


class page_table_free(v64.page_table_free):
    """v6.4's without the temporary P bit: one XOR of A under the lock, a relink only if
    the other half is not pending, and the release right after the unlock."""

    ENTRY = "WARN_ON_ONCE(page->pt_mm != mm); if (!mm_alloc_pgste(mm))"
    REDIRECT = {"spin_lock_bh(&mm->context.lock)": "atomic_xor_bits(A)"}

    # Local: WARN_ON_ONCE(page->pt_mm != mm) of a table the caller still owns: pt_mm is
    # written only when a page is made a page table again, after a free that the checks
    # report at the free itself.
    @step("WARN_ON_ONCE(page->pt_mm != mm); if (!mm_alloc_pgste(mm))", local=True)
    def pgste(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        _warn_pt_mm(k, self.page, self.mm, "page_table_free")
        if mm_alloc_pgste(k, self.mm):
            return "atomic_xor_bits(AA)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        # Mark the page for release (no temporary P bit any more).
        self.mask = k.atomic_xor_bits(self.page, 0x01 << (self.bit + 24)) >> 24
        if self.mask & 0x03:                 # other half is allocated
            return "list_add(&page->lru, &mm->context.pgtable_list)"
        if not (self.mask & 0x30):           # other half not pending
            return "list_del(&page->lru)"
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE if self.mask != 0x00 else "page_table_release_check; __free_page"


class page_table_free_rcu(v64.page_table_free_rcu):
    """v6.4's, but the page is unlisted only if the other half is neither allocated nor
    pending, and never relisted here."""

    ENTRY = "mm = tlb->mm; WARN_ON_ONCE(page->pt_mm != mm); if (mm_alloc_pgste(mm))"

    @step("mm = tlb->mm; WARN_ON_ONCE(page->pt_mm != mm); if (mm_alloc_pgste(mm))", local=True)
    def pgste(self, k):
        self.mm = k.gathers[self.tlb][0]
        self.page = k.mem_map.virt_to_page(self.table)
        _warn_pt_mm(k, self.page, self.mm, "page_table_free_rcu")
        if mm_alloc_pgste(k, self.mm):
            return "gmap_unlink; tlb_remove_table(table | 3)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        # Other half not allocated? Other half not already pending free?
        if (self.mask & 0x03) == 0x00 and (self.mask & 0x30) != 0x30:
            return "list_del(&page->lru)"
        return "spin_unlock_bh(&mm->context.lock)"


class tlb_remove_table_(Path):
    """``__tlb_remove_table(_table)`` with the seed's relink through ``page->pt_mm``."""

    FUNC = "__tlb_remove_table"
    LOCALS = ("table", "page", "half", "mask", "mm")

    @step("switch (half = table & 0x03)", local=True)
    def switch(self, k):
        self.half = self.mask = self.table & 0x03
        self.page = k.mem_map.virt_to_page(self.table ^ self.half)
        if k.checks:
            tag_check(k, self.table, self.page)
        if self.half == 0:
            return "__free_pages(page, CRST_ALLOC_ORDER)"
        if self.half == 3:
            return "atomic_xor_bits(AA)"
        return "if (atomic_read(&page->_refcount) & (0x03U << 24))"

    @step("__free_pages(page, CRST_ALLOC_ORDER)")
    def crst(self, k):
        k.free_page(self.page, CRST_ALLOC_ORDER)
        return DONE

    @step("if (atomic_read(&page->_refcount) & (0x03U << 24))")
    def other_allocated(self, k):
        if k.atomic_read(self.page) & (0x03 << 24):
            return "mm = page->pt_mm"
        return "atomic_xor_bits(P) [unlocked]"

    # Local: while this half's P bit is set the page cannot be freed (the free itself
    # is reported) nor be made a page table again, the only writer of pt_mm.  Whether
    # the mm it names was freed meanwhile is decided by the spin_lock_bh that follows,
    # which stays a visible step.
    @step("mm = page->pt_mm", local=True)
    def read_mm(self, k):
        # "But what guarantees that mm has not been freed now?!"
        k._access(self.page, "page->pt_mm")
        self.mm = k.mem_map.field(self.page, "pt_mm")
        return "spin_lock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock)", lock="bh")
    def lock(self, k):
        return "atomic_xor_bits(P) [locked]" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(P) [locked]")
    def xor_p_locked(self, k):
        self.mask = k.atomic_xor_bits(self.page, self.mask << 28) >> 24
        return "list_add(&page->lru, &mm->context.pgtable_list)" if self.mask & 0x03 else "spin_unlock_bh(&mm->context.lock)"

    @step("list_add(&page->lru, &mm->context.pgtable_list)")
    def add(self, k):
        k.list_add(self.page, self.mm + PGTABLE_LIST)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE if self.mask != 0x00 else "page_table_release_check; __free_page"

    @step("atomic_xor_bits(P) [unlocked]")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, self.mask << 28) >> 24
        return DONE if self.mask != 0x00 else "page_table_release_check; __free_page"

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


class pte_free_pgste(Path):
    """RCU callback: ``__tlb_remove_table(page_address | 0x03)``."""

    LOCALS = ("page",)

    @step("__tlb_remove_table(table | 0x03)", local=True)
    def remove(self, k):
        return Call(k.v.tlb_remove_table_(table=k.mem_map.page_address(self.page) | 0x03), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class pte_free_half(Path):
    """Body of the RCU callbacks ``pte_free_now0`` / ``pte_free_now1``."""

    LOCALS = ("page", "bit", "mask")

    @step("mask = atomic_xor_bits(&page->_refcount, 0x04U << (bit + 24))")
    def xor_h(self, k):
        # As posted: no "mask >>= 24" here.
        self.mask = k.atomic_xor_bits(self.page, 0x04 << (self.bit + 24))
        return "__tlb_remove_table(table | 1 << bit)"

    @step("__tlb_remove_table(table | 1 << bit)", local=True)
    def remove(self, k):
        table = k.mem_map.page_address(self.page) + self.bit * PTRS_PER_PTE * 8
        return Call(k.v.tlb_remove_table_(table=table | (0x01 << self.bit)), "if (mask & 0x0CU) call_rcu(other half)")

    @step("if (mask & 0x0CU) call_rcu(other half)", local=_no_h_in_mask)
    def requeue(self, k):
        # If pte_free_defer() of the other half came in, queue it now
        if self.mask & 0x0C:
            k._access(self.page, "call_rcu")
            k.call_rcu(self.page + RCU_HEAD, "pte_free_now0" if self.bit else "pte_free_now1")
        return DONE


class pte_free_defer(FreePath):
    LOCALS = ("mm", "table", "page", "bit", "mask")

    @step("WARN_ON_ONCE(page->pt_mm != mm); if (mm_alloc_pgste(mm))", local=True)
    def pgste(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        _warn_pt_mm(k, self.page, self.mm, "pte_free_defer")
        if mm_alloc_pgste(k, self.mm):
            return "call_rcu(&page->rcu_head, pte_free_pgste)"
        self.bit = table_bit(self.table)
        return "spin_lock_bh(&mm->context.lock)"

    @step("call_rcu(&page->rcu_head, pte_free_pgste)")
    def pgste_rcu(self, k):
        k.call_rcu(self.page + RCU_HEAD, "pte_free_pgste")
        return DONE

    @step("spin_lock_bh(&mm->context.lock)", lock="bh")
    def lock(self, k):
        return "atomic_xor_bits(0x15U << bit)" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("atomic_xor_bits(0x15U << bit)")
    def xor_ahp(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x15 << (self.bit + 24)) >> 24
        # Other half not allocated? Other half not already pending free?
        if (self.mask & 0x03) == 0x00 and (self.mask & 0x30) != 0x30:
            return "list_del(&page->lru)"
        return "spin_unlock_bh(&mm->context.lock)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        # Do not relink on rcu_head if other half already linked on rcu_head
        return "call_rcu(&page->rcu_head, pte_free_now)" if (self.mask & 0x0C) != 0x0C else DONE

    @step("call_rcu(&page->rcu_head, pte_free_now)")
    def rcu(self, k):
        k.call_rcu(self.page + RCU_HEAD, "pte_free_now1" if self.bit else "pte_free_now0")
        return DONE


CALLBACKS = {
    "pte_free_pgste": lambda head, args: pte_free_pgste(page=head - RCU_HEAD),
    "pte_free_now0": lambda head, args: pte_free_half(page=head - RCU_HEAD, bit=0),
    "pte_free_now1": lambda head, args: pte_free_half(page=head - RCU_HEAD, bit=1),
}
