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

The functions are v6.4's (``pgalloc.v64``) with the steps that 8211dad627981 changed
replaced: each class below names only what differs.
"""

from __future__ import annotations

from s390emu import structs as S
from s390emu import lists

from . import v64
from .kernel import RCU_HEAD, LRU
from .pgtable import PGTABLE_LIST, FreePath, mm_alloc_pgste, mm_has_pgste, pgtable_pte_page_ctor
from .steps import DONE, Call, Path, step

NAME = "v66"
FRAGMENTS = True
HAS_H = False
LIST_DEL_INIT = True
DEFER_IS_PTE_FREE = False
CRST_COMPOUND = False


class page_table_alloc(v64.page_table_alloc):
    """v6.4's, but a page leaves ``pgtable_list`` with ``list_del_init`` (and a PGSTE
    page's ``lru`` starts empty), so ``list_empty(&page->lru)`` says whether it is listed."""

    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        k.atomic_xor_bits(self.page, 0x01 << (self.bit + 24))
        return "list_del_init(&page->lru)"

    @step("list_del_init(&page->lru)")
    def del_(self, k):
        k.list_del(self.page, init=True)
        return "spin_unlock_bh(&mm->context.lock)"

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


def _relist_or_unlist(self, k, tail: bool) -> str:
    """The frees' list step: relist the page while the other half is allocated and the
    page was never deferred (PageActive), else take it off the list."""
    if (self.mask & 0x03) and not k.mem_map.test_flag(self.page, S.PG_active):
        k.list_add(self.page, self.mm + PGTABLE_LIST, tail=tail)
    else:
        k.list_del(self.page, init=True)
    return "spin_unlock_bh(&mm->context.lock)"


class _Release:
    """The release of a page whose byte went to 0 (or of a PGSTE page), shared by
    ``page_table_free`` and ``__tlb_remove_table``: ``page_table_release_check``, then
    ``TestClearPageActive`` chooses between ``call_rcu(pte_free_now)`` and freeing now."""

    @step("atomic_xor_bits(AA)")
    def xor_aa(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x03 << 24) >> 24
        return "page_table_release_check; TestClearPageActive"

    @step("page_table_release_check; TestClearPageActive")
    def release(self, k):
        listed = not lists.list_empty(k.mem, self.page + LRU)
        if self.mask or listed:
            k.warn("page_table_release_check", self.page,
                   f"Invalid pgtable release {self.half_label()} mask {self.mask:#04x}{' (still listed)' if listed else ''}")
        if k.mem_map.set_flag(self.page, S.PG_active, False):      # TestClearPageActive
            return "call_rcu(&page->rcu_head, pte_free_now)"
        return "pte_free_now(&page->rcu_head)"

    @step("call_rcu(&page->rcu_head, pte_free_now)")
    def rcu(self, k):
        k.call_rcu(self.page + RCU_HEAD, "pte_free_now")
        return DONE

    @step("pte_free_now(&page->rcu_head)")
    def now(self, k):
        return Call(k.v.pte_free_now(page=self.page), "return")

    @step("return")
    def ret_(self, k):
        return DONE


class page_table_free(_Release, v64.page_table_free):
    """v6.4's, but a PageActive page is never relisted, and the last half goes through
    ``_Release``."""

    def half_label(self) -> str:
        return f"half {self.bit}"

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init"

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=False)

    @step("atomic_xor_bits(P)")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x10 << (self.bit + 24)) >> 24
        return DONE if self.mask != 0x00 else "page_table_release_check; TestClearPageActive"


class page_table_free_rcu(v64.page_table_free_rcu):
    """v6.4's, but a PageActive page is never relisted."""

    @step("atomic_xor_bits(A|P)")
    def xor_ap(self, k):
        self.mask = k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24)) >> 24
        return "if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init"

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=True)


class tlb_remove_table_(_Release, v64.tlb_remove_table_):
    """``__tlb_remove_table(_table)``: v6.4's, with the last half through ``_Release``."""

    FUNC = "__tlb_remove_table"

    def half_label(self) -> str:
        return f"half {self.half:#04x}"

    @step("atomic_xor_bits(P)")
    def xor_p(self, k):
        self.mask = k.atomic_xor_bits(self.page, self.half << (4 + 24)) >> 24
        return DONE if self.mask != 0 else "page_table_release_check; TestClearPageActive"


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
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "WARN_ON_ONCE(mm_has_pgste(mm))")

    @step("WARN_ON_ONCE(mm_has_pgste(mm))")
    def warn(self, k):
        if mm_has_pgste(k, self.mm):
            k.warn("WARN_ON_ONCE(mm_has_pgste(mm))", self.page, "pte_free_defer on an mm that uses PGSTEs")
        return DONE


CALLBACKS = {"pte_free_now": lambda head, args: pte_free_now(page=head - RCU_HEAD)}
