"""Linux v5.15 ``arch/s390/mm/pgalloc.c``: before c2c224932fd0 ("s390/mm: fix 2KB pgtable
release race", Alexander Gordeev, Jan 2022).

Bit layout, list rules and ``page_table_alloc`` / ``page_table_free_rcu`` /
``__tlb_remove_table`` as in ``v64`` ("PP AA": A0 0x01, A1 0x02, P0 0x10, P1 0x20)::

      PP  AA
    76543210    upper byte of struct page::_refcount

The difference: ``page_table_free`` clears A(h) with a single XOR under the lock and
decides the page's fate from that one value; there is no temporary P(h) held across
``spin_unlock_bh``.  So after ``page_table_free`` of the upper half turns 0x12 into 0x10
and before it executes ``list_del(&page->lru)``, a concurrent ``__tlb_remove_table`` of
the lower half can clear P0, see 0x00 and free the page: the list operation then runs on
a freed page (the race the fix closes).

Checks: v6.4's (``RULES``).  Commit: the state before c2c224932fd0, as in v5.15 and the
stable trees before Jan 2022.
"""

from __future__ import annotations

from . import v64
from ..steps import DONE, step
from .v64 import (CALLBACKS, CRST_COMPOUND, RULES, page_table_alloc, page_table_free_rcu,  # noqa: F401
                  pte_free_defer, tlb_remove_table_)

NAME = "v515"
FRAGMENTS = True
HAS_H = False
LIST_DEL_INIT = False
DEFER_IS_PTE_FREE = True
LOCKLESS_PTE_MAP = False    # as v6.4

globals()["__tlb_remove_table"] = tlb_remove_table_


class page_table_free(v64.page_table_free):
    """v6.4's before c2c224932fd0: one XOR of A under the lock decides, no P across the unlock."""

    REDIRECT = {"spin_lock_bh(&mm->context.lock)": "atomic_xor_bits(A)",
                "atomic_xor_bits(AA)": "pgtable_pte_page_dtor; __free_page"}

    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x01 << (self.bit + 24)) >> 24
        return "list_add(&page->lru, &mm->context.pgtable_list)" if self.mask & 0x03 else "list_del(&page->lru)"

    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE if self.mask != 0 else "pgtable_pte_page_dtor; __free_page"

    @step("pgtable_pte_page_dtor; __free_page")
    def free(self, k):
        k.free_page(self.page, 0)
        return DONE
