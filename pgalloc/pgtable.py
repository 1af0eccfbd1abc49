"""Helpers the page-table allocator versions share: half index, ctor/dtor, table init,
the ``struct page`` / ``mm_struct`` offsets they use, and the owner bookkeeping hooks of
the allocation and free paths."""

from __future__ import annotations

from s390emu import structs as S

from .checks import after_alloc
from .inflight import at_release
from .pgtable_bits import PTRS_PER_PTE, _PAGE_INVALID
from .steps import Path

PAGE_MASK = ~0xFFF
MM = S.mm_struct.fields
PGTABLE_LIST = MM["context.pgtable_list"]
LRU = S.page.fields["lru"]                  # struct page::lru (pgtable_list link) ...
RCU_HEAD = S.page.fields["rcu_head"]        # ... and the rcu_head that overlays it


def table_bit(table: int) -> int:
    """``((unsigned long)table & ~PAGE_MASK) / (PTRS_PER_PTE * sizeof(pte_t))``: 0 lower, 1 upper."""
    return (table & 0xFFF) // (PTRS_PER_PTE * 8)


def mm_alloc_pgste(k, mm: int) -> bool:
    return bool(k.mem.data[mm + MM["context.alloc_pgste"]])


def mm_has_pgste(k, mm: int) -> bool:
    return bool(k.mem.data[mm + MM["context.has_pgste"]])


def pgtable_pte_page_ctor(k, page: int) -> None:
    """``pgtable_pte_page_ctor``: ``__SetPageTable``."""
    k.mem_map.set_page_type(page, S.PAGE_TYPE_NONE & ~S.PG_table)


def memset64(k, addr: int, value: int, n: int) -> None:
    k.mem.table(addr, n)[:] = value


def init_pte_table(k, table: int, n: int = PTRS_PER_PTE) -> None:
    memset64(k, table, _PAGE_INVALID, n)


class AllocPath(Path):
    """``page_table_alloc``: records which mm the returned table was handed to."""

    def on_return(self, k) -> None:
        if self.result:
            if k.checks:
                after_alloc(k, self)
                if k.walkers:
                    # Entries name a table by its origin: the table's first 2K holds it.
                    at_release(k, self.result, self.result + 0x800, "handed out again by page_table_alloc")
            k.owner[self.result] = self.mm


class FreePath(Path):
    """A path that gives a table back: the table stops belonging to its mm when called."""

    def on_enter(self, k) -> None:
        k.owner.pop(self.table & ~3, None)
