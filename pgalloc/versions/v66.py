"""Linux v6.6 ``arch/s390/mm/pgalloc.c``: merged ``pte_free_defer`` (8211dad627981 "s390:
add pte_free_defer() for pgtables sharing page", Hugh Dickins, posted as "[PATCH v3
07/13]" 12 Jul 2023 plus its fix, WARN on ``mm_has_pgste`` not ``mm_alloc_pgste``), on
top of v6.4's two-step free (c2c224932fd0, ``pgalloc.versions.v64``).  Read in v6.6
trees, where ``struct ptdesc`` names the fields (``folio_test_active`` = ``PageActive``,
``pt_list`` = ``lru``, ``pt_rcu_head`` = ``rcu_head``).

The upper byte (bits 24-31) of the parent page's ``_refcount`` tracks the 2K halves
exactly as in v6.4 (h = 0 the lower 2K, h = 1 the upper)::

      PP  AA
    76543210    upper byte of struct page::_refcount
      ||  ||
      ||  |+--- A0 (0x01): lower 2K page table allocated
      ||  +---- A1 (0x02): upper 2K page table allocated
      |+------- P0 (0x10): lower 2K pending for removal (RCU free in flight; also held
      |                    briefly by page_table_free)
      +-------- P1 (0x20): upper 2K pending for removal

    PG_active (page flag): pte_free_defer() was used on a half of this page

Rules, v6.4's plus: ``pgtable_list`` entries are removed with ``list_del_init``, so
``list_empty(&page->lru)`` answers "is it listed?" (a PGSTE page's ``lru`` starts with
``INIT_LIST_HEAD``); a PageActive page is never (re)listed, so once either half was
deferred the other half is not handed out again (up to 2K wasted until it is freed);
``pte_free_defer`` = ``SetPageActive`` (unlocked) + ``page_table_free`` +
``WARN_ON_ONCE(mm_has_pgste(mm))`` (removed again by 5647f61ad917, a false positive);
when the last half goes (byte 0), the release check (which also complains if the page
is still listed) is followed by ``TestClearPageActive``: set, ``call_rcu(&page->rcu_head,
pte_free_now)``; clear, ``pte_free_now`` at once.  The ``rcu_head`` is used once per
page, when the whole page is freed and already unlisted, without touching any mm.
PageActive is tested only under the lock and test-and-cleared when both halves are gone,
so it needs no lock of its own.

Checks (``RULES``), v6.4's plus: a PageActive page is on no list once the deferring
free has left its locked section; a table ``page_table_alloc`` returns is never the
other half of a PageActive page whose deferred half is already freed.

The functions are v6.4's with what 8211dad627981 changed: new steps where the code is
new, ``REDIRECT`` where only the next step changed (the frees' XOR now goes to the
PageActive test, the last XOR to the release through ``TestClearPageActive``).
"""

from __future__ import annotations

from s390emu import lists
from s390emu import structs as S

from . import v64
from ..checks import Rules, Violation, fmt, where
from ..pgtable import (LRU, PGTABLE_LIST, RCU_HEAD, FreePath, mm_alloc_pgste, mm_has_pgste,
                       pgtable_pte_page_ctor)
from ..steps import DONE, Call, Path, step

NAME = "v66"
FRAGMENTS = True
HAS_H = False
LIST_DEL_INIT = True
DEFER_IS_PTE_FREE = False
LOCKLESS_PTE_MAP = True    # a349d72fd9ef: pte_offset_map[_lock] under rcu_read_lock; retract_page_tables under the PTE lock (1d65b771bc08)
CRST_COMPOUND = False


def listed_ok(k, page: int, byte: int, running: set) -> bool:
    """v6.4's, and a PageActive page leaves the list in the deferring free's locked section."""
    return v64.listed_ok(k, page, byte, running) and not (k.mem_map.test_flag(page, S.PG_active)
                                                         and page not in running)


def no_deferred_reuse(k, table: int, page: int) -> None:
    """The other half of a PageActive page was deferred and is gone: the page must not have
    been listed again, so this half cannot have been handed out."""
    other = 1 << (((table >> 11) & 1) ^ 1)
    if k.mem_map.test_flag(page, S.PG_active) and not k.byte(page) & other:
        raise Violation("allocation_safety", page, f"page_table_alloc returned {table:#x} from a PageActive page whose "
                        f"deferred half is already freed (byte {fmt(k.byte(page))})", where(k))


RULES = Rules(listed=listed_ok, after_alloc=v64.RULES.after_alloc + (no_deferred_reuse,))

RELEASE = "page_table_release_check; TestClearPageActive"


class page_table_alloc(v64.page_table_alloc):
    """v6.4's, but a page leaves ``pgtable_list`` with ``list_del_init`` (and a PGSTE
    page's ``lru`` starts empty), so ``list_empty(&page->lru)`` says whether it is listed."""

    REDIRECT = {"atomic_xor_bits(A)": "list_del_init(&page->lru)"}

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
    ``TestClearPageActive`` chooses between ``call_rcu(pte_free_now)`` and freeing now.
    The last XOR (of P, or of both A bits of a PGSTE page) now leads here."""

    REDIRECT = {"atomic_xor_bits(P)": RELEASE, "atomic_xor_bits(AA)": RELEASE}

    @step(RELEASE)
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

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class page_table_free(_Release, v64.page_table_free):
    """v6.4's, but a PageActive page is never relisted, and the last half goes through
    ``_Release``."""

    def half_label(self) -> str:
        return f"half {self.bit}"

    REDIRECT = {"atomic_xor_bits(A|P)": "if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init"}

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=False)


class page_table_free_rcu(v64.page_table_free_rcu):
    """v6.4's, but a PageActive page is never relisted."""

    REDIRECT = {"atomic_xor_bits(A|P)": "if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init"}

    @step("if ((mask & 0x03U) && !PageActive(page)) list_add_tail else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=True)


class tlb_remove_table_(_Release, v64.tlb_remove_table_):
    """``__tlb_remove_table(_table)``: v6.4's, with the last half through ``_Release``."""

    FUNC = "__tlb_remove_table"

    def half_label(self) -> str:
        return f"half {self.half:#04x}"


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

    # Local: the mm's PGSTE flag does not change while one of its tables is freed.
    @step("WARN_ON_ONCE(mm_has_pgste(mm))", local=True)
    def warn(self, k):
        if mm_has_pgste(k, self.mm):
            k.warn("WARN_ON_ONCE(mm_has_pgste(mm))", self.page, "pte_free_defer on an mm that uses PGSTEs")
        return DONE


CALLBACKS = {"pte_free_now": lambda head, args: pte_free_now(page=head - RCU_HEAD)}
