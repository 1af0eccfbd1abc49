"""CRST tables (region-first/second/third and segment tables), shared by every version.

``crst_table_alloc`` is an order-2 (16K) page allocation; ``crst_table_init`` fills the
2048 entries with the level's empty value; ``crst_table_free`` frees order 2.  Since
v6.7 (0031f1c7cf26 "use compound page order to distinguish page tables") CRSTs are
compound pages, which is how ``__tlb_remove_table`` tells them from PTE tables there:
``compound=True`` sets ``PG_head`` and the folio order in ``page[1].flags``.

``crst_table_upgrade(mm, end)`` grows a 3-level mm (region-third top, 4 TiB) to 4
(region-second, 8 PiB) or 5 levels (region-first), rewriting ``mm->pgd``,
``context.asce`` and ``asce_limit`` under ``mm->page_table_lock``, then reloading every
CPU's user ASCE (``__crst_table_upgrade``).
"""

from __future__ import annotations

from s390emu import structs as S

from .errors import BadTable
from .pgtable_bits import (CRST_ALLOC_ORDER, TASK_SIZE_MAX, _ASCE_TABLE_LENGTH, _ASCE_TYPE_REGION1,
                           _ASCE_TYPE_REGION2, _ASCE_TYPE_REGION3, _ASCE_USER_BITS, _CRST_ENTRIES,
                           _REGION1_ENTRY, _REGION1_ENTRY_EMPTY, _REGION1_SIZE, _REGION2_ENTRY,
                           _REGION2_ENTRY_EMPTY, _REGION2_SIZE)
from .steps import BLOCKED, DONE, Path, step

MM = S.mm_struct.fields
PG_COMPOUND_ORDER_FLAGS = S.page.fields["flags"]    # of page[1], the first tail page: the folio order


def crst_table_alloc(k, mm: int, compound: bool | None = None) -> int:
    """``crst_table_alloc(mm)``: a 16K order-2 table (not initialised), or 0."""
    table = k.alloc_page(CRST_ALLOC_ORDER)
    if table and (k.v.CRST_COMPOUND if compound is None else compound):
        page = k.mem_map.virt_to_page(table)
        k.mem_map.set_flag(page, S.PG_head)
        k.mem.write_u64(page + S.page.size + PG_COMPOUND_ORDER_FLAGS, CRST_ALLOC_ORDER)
    return table


def crst_table_init(k, table: int, entry: int) -> None:
    """``crst_table_init(table, entry)``: all 2048 entries = ``entry`` (memset64)."""
    k.mem.table(table, _CRST_ENTRIES)[:] = entry


def compound_order(k, page: int) -> int:
    """``compound_order(page)``: the folio order in ``page[1]`` of a compound head, else 0."""
    if not k.mem_map.test_flag(page, S.PG_head):
        return 0
    return k.mem.read_u64(page + S.page.size + PG_COMPOUND_ORDER_FLAGS) & 0xFF


def is_crst_page(k, page: int) -> bool:
    """v6.7 ``compound_order(page) == CRST_ALLOC_ORDER``."""
    return compound_order(k, page) == CRST_ALLOC_ORDER


def crst_table_free(k, mm: int, table: int) -> None:
    """``crst_table_free(mm, table)``: ``free_pages(table, CRST_ALLOC_ORDER)``."""
    if table & (0x4000 - 1):
        raise BadTable("crst_table_free", k.mem_map.virt_to_page(table & ~0xFFF),
                           f"crst_table_free of {table:#x}, which is not 16K aligned")
    k.free_page(k.mem_map.virt_to_page(table), CRST_ALLOC_ORDER)


def asce_for(table: int, limit: int) -> int:
    """The user ASCE Linux builds for a top table of the level ``limit`` implies."""
    if limit <= _REGION2_SIZE:
        t = _ASCE_TYPE_REGION3
    elif limit <= _REGION1_SIZE:
        t = _ASCE_TYPE_REGION2
    else:
        t = _ASCE_TYPE_REGION1
    return table | _ASCE_TABLE_LENGTH | _ASCE_USER_BITS | t


class crst_table_upgrade(Path):
    """``crst_table_upgrade(mm, end)``: 3 -> 4 -> 5 levels; result 0, or -ENOMEM (-12)."""

    LOCALS = ("mm", "end", "p4d", "pgd", "limit")

    def lock_addr(self) -> int:
        return self.mm + MM["page_table_lock"]

    @step("asce_limit = mm->context.asce_limit")
    def limit_(self, k):
        self.limit = k.mem.read_u64(self.mm + MM["context.asce_limit"])
        if self.end <= self.limit:
            return DONE
        return "crst_table_alloc(p4d)" if self.limit == _REGION2_SIZE else "crst_table_alloc(pgd)"

    @step("crst_table_alloc(p4d)")
    def alloc_p4d(self, k):
        self.p4d = crst_table_alloc(k, self.mm)
        if not self.p4d:
            self.result = -12
            return DONE
        crst_table_init(k, self.p4d, _REGION2_ENTRY_EMPTY)
        return "crst_table_alloc(pgd)"

    @step("crst_table_alloc(pgd)")
    def alloc_pgd(self, k):
        if self.end > _REGION1_SIZE:
            self.pgd = crst_table_alloc(k, self.mm)
            if not self.pgd:
                if self.p4d:
                    crst_table_free(k, self.mm, self.p4d)
                self.result = -12
                return DONE
            crst_table_init(k, self.pgd, _REGION1_ENTRY_EMPTY)
        return "spin_lock_bh(&mm->page_table_lock)"

    @step("spin_lock_bh(&mm->page_table_lock)", lock="bh")
    def lock(self, k):
        return "p4d_populate + asce" if k.spin_lock(self.lock_addr(), True) else BLOCKED

    @step("p4d_populate + asce")
    def p4d_pop(self, k):
        mem, mm = k.mem, self.mm
        if self.p4d:
            old = mem.read_u64(mm + MM["pgd"])
            mem.write_u64(self.p4d, _REGION2_ENTRY | old)          # p4d_populate
            mem.write_u64(mm + MM["pgd"], self.p4d)
            mem.write_u64(mm + MM["context.asce_limit"], _REGION1_SIZE)
            mem.write_u64(mm + MM["context.asce"], asce_for(self.p4d, _REGION1_SIZE))
        if self.pgd:
            old = mem.read_u64(mm + MM["pgd"])
            mem.write_u64(self.pgd, _REGION1_ENTRY | old)          # pgd_populate
            mem.write_u64(mm + MM["pgd"], self.pgd)
            mem.write_u64(mm + MM["context.asce_limit"], TASK_SIZE_MAX)
            mem.write_u64(mm + MM["context.asce"], asce_for(self.pgd, TASK_SIZE_MAX))
        return "spin_unlock_bh(&mm->page_table_lock)"

    @step("spin_unlock_bh(&mm->page_table_lock)", unlock="bh")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return "on_each_cpu(__crst_table_upgrade)"

    @step("on_each_cpu(__crst_table_upgrade)")
    def reload(self, k):
        asce = k.mem.read_u64(self.mm + MM["context.asce"])
        for cpu in range(len(k.cpus)):
            if k.machine.control_register(cpu, 7) & ~0xFFF == self.limit_old_top(k):
                k.machine.set_control_register(cpu, 7, asce)
        return DONE

    def limit_old_top(self, k) -> int:
        # The CPUs that had this mm's old top table loaded in CR7 switch to the new ASCE.
        top = k.mem.read_u64(self.mm + MM["pgd"])
        return k.mem.read_u64(top) & ~0xFFF
