"""mm operations on top of the allocator: ``mm_alloc``, mapping and unmapping ranges,
``free_pgtables``, ``retract_page_tables`` (THP collapse), ``exit_mmap`` / ``mmput`` /
``mmdrop``.

The ``mm_struct`` lives in emulated memory (one frame from the page allocator, linked on
the machine's ``mm_list`` through ``mm->mmlist``) and is poisoned (0x6b) when
``mm_count`` drops to 0.  Tables are real: region and segment tables from
``crst_table_alloc`` (entries ``_REGIONn_ENTRY | pa``), page tables from the version's
``page_table_alloc`` (``pmd_populate`` writes ``_SEGMENT_ENTRY | pa``), and mapped pages
get hardware-valid PTEs so the DAT walker translates them.

``exit_mmap``, ``mmput`` and ``mmdrop`` are also ``Path`` classes (steps), so the
explorer can run an exit concurrently with allocator paths; the functions below run
everything sequentially on one CPU.

>>> from pgalloc.kernel import Kernel
>>> k = Kernel("v66", mem_size=8 << 20)
>>> mm = mm_alloc(k)
>>> map_range(k, mm, 0x100000, 0x102000)
>>> from dat import translate
>>> translate(k.mem, k.mem.read_u64(mm + 40), 0x101234).real == k.zero_page + 0x234
True
"""

from __future__ import annotations

import numpy as np

from dat import reachable_tables
from s390emu import lists
from s390emu import structs as S
from s390emu.machine import MM_LIST

from . import tlb as TLB
from .crst import asce_for, crst_table_alloc, crst_table_free, crst_table_init, crst_table_upgrade
from .errors import MmError
from .pgtable_bits import (_PAGE_DIRTY, _PAGE_INVALID, _PAGE_PRESENT, _PAGE_PROTECT, _PAGE_READ, _PAGE_WRITE,
                           _PAGE_YOUNG, _REGION1_ENTRY, _REGION1_ENTRY_EMPTY, _REGION2_ENTRY,
                           _REGION2_ENTRY_EMPTY, _REGION2_SIZE, _REGION3_ENTRY, _REGION3_ENTRY_EMPTY,
                           _SEGMENT_ENTRY, _SEGMENT_ENTRY_EMPTY, _SEGMENT_ENTRY_INVALID, _REGION_ENTRY_INVALID, PTRS_PER_PTE, _SEGMENT_ENTRY_LARGE,
                           _SEGMENT_ENTRY_ORIGIN)
from .steps import DONE, Call, Path, step
from .tlbflush import detach

MM = S.mm_struct.fields
PROT_READ_YOUNG = _PAGE_PRESENT | _PAGE_YOUNG | _PAGE_READ | _PAGE_PROTECT
PROT_RW_DIRTY = _PAGE_PRESENT | _PAGE_YOUNG | _PAGE_DIRTY | _PAGE_READ | _PAGE_WRITE

# level (ASCE type / TT) -> (index shift, empty value of the next level's table, entry bits)
_SHIFT = {3: 53, 2: 42, 1: 31, 0: 20}
_NEXT_EMPTY = {3: _REGION2_ENTRY_EMPTY, 2: _REGION3_ENTRY_EMPTY, 1: _SEGMENT_ENTRY_EMPTY}
_ENTRY = {3: _REGION1_ENTRY, 2: _REGION2_ENTRY, 1: _REGION3_ENTRY}
_EMPTY = {3: _REGION1_ENTRY_EMPTY, 2: _REGION2_ENTRY_EMPTY, 1: _REGION3_ENTRY_EMPTY, 0: _SEGMENT_ENTRY_EMPTY}


def mm_alloc(k, *, pgste: bool = False, owner: int = 0) -> int:
    """``mm_alloc`` + ``init_new_context``: a 3-level mm (ASCE ``pgd | 0x1C7``, 4 TiB)."""
    mm = k.alloc_page(0)
    if not mm:
        raise MmError("out of memory for mm_struct")
    mem = k.mem
    mem.fill(mm, S.mm_struct.size, 0)
    mem.write_u32(mm + MM["mm_users"], 1)
    mem.write_u32(mm + MM["mm_count"], 1)
    lists.INIT_LIST_HEAD(mem, mm + MM["context.pgtable_list"])
    mem.data[mm + MM["context.alloc_pgste"]] = int(pgste)
    mem.data[mm + MM["context.has_pgste"]] = int(pgste)
    mem.write_u64(mm + MM["owner"], owner or (mm >> 12))
    pgd = crst_table_alloc(k, mm)
    if not pgd:
        raise MmError("out of memory for pgd")
    crst_table_init(k, pgd, _REGION3_ENTRY_EMPTY)
    mem.write_u64(mm + MM["pgd"], pgd)
    mem.write_u64(mm + MM["context.asce_limit"], _REGION2_SIZE)
    mem.write_u64(mm + MM["context.asce"], asce_for(pgd, _REGION2_SIZE))
    lists.list_add_tail(mem, mm + MM["mmlist"], MM_LIST)
    return mm


def mm_alloc_pgste_flag(k, mm: int) -> bool:
    """``mm_alloc_pgste(mm)``."""
    return bool(k.mem.data[mm + MM["context.alloc_pgste"]])


def asce(k, mm: int) -> int:
    """``mm->context.asce``."""
    return k.mem.read_u64(mm + MM["context.asce"])


def asce_limit(k, mm: int) -> int:
    return k.mem.read_u64(mm + MM["context.asce_limit"])


def _top(k, mm: int) -> tuple[int, int]:
    a = asce(k, mm)
    return a & ~0xFFF, (a >> 2) & 3


def segment_table(k, mm: int, vaddr: int, alloc: bool = False) -> int:
    """The segment table covering ``vaddr`` (allocating region/segment tables), or 0."""
    table, level = _top(k, mm)
    mem = k.mem
    while level > 0:
        ea = table + 8 * ((vaddr >> _SHIFT[level]) & 0x7FF)
        e = mem.read_u64(ea)
        if e & _REGION_ENTRY_INVALID:
            if not alloc:
                return 0
            new = crst_table_alloc(k, mm)
            if not new:
                raise MmError("out of memory for a region/segment table")
            crst_table_init(k, new, _NEXT_EMPTY[level])
            e = _ENTRY[level] | new                    # p4d/pud/pgd_populate
            mem.write_u64(ea, e)
        table = e & ~0xFFF
        level -= 1
    return table


def pte_table(k, mm: int, vaddr: int, alloc: bool = False, cpu: int = 0) -> int:
    """The page table covering ``vaddr`` (``pte_alloc`` when ``alloc``), or 0."""
    st = segment_table(k, mm, vaddr, alloc)
    if not st:
        return 0
    ea = st + 8 * ((vaddr >> 20) & 0x7FF)
    e = k.mem.read_u64(ea)
    if e & _SEGMENT_ENTRY_INVALID:
        if not alloc:
            return 0
        pt = k.page_table_alloc(mm, cpu)
        if not pt:
            raise MmError("out of memory for a page table")
        k.mem.write_u64(ea, _SEGMENT_ENTRY | pt)       # pmd_populate
        return pt
    return e & _SEGMENT_ENTRY_ORIGIN


def upgrade(k, mm: int, end: int, cpu: int = 0) -> None:
    """``crst_table_upgrade(mm, end)`` run sequentially (3 -> 4 -> 5 levels)."""
    if k.run(crst_table_upgrade(mm=mm, end=end), cpu):
        raise MmError("crst_table_upgrade: out of memory")


def map_range(k, mm: int, start: int, end: int, pa: int | None = None, cpu: int = 0) -> None:
    """Map ``[start, end)`` (4K aligned): to ``pa`` (read/write, dirty) or the zero page (read-only)."""
    if start & 0xFFF or end & 0xFFF or end <= start:
        raise MmError(f"bad range {start:#x}-{end:#x}")
    if end > asce_limit(k, mm):
        upgrade(k, mm, end, cpu)
    if pa is None:
        if not k.zero_page:
            k.zero_page = k.alloc_page(0)
            k.mem.fill(k.zero_page, 4096, 0)
        base, prot, step_pa = k.zero_page, PROT_READ_YOUNG, 0
    else:
        base, prot, step_pa = pa, PROT_RW_DIRTY, 1
    va = start
    while va < end:
        seg_end = min(end, (va | 0xFFFFF) + 1)
        pt = pte_table(k, mm, va, alloc=True, cpu=cpu)
        i0, n = (va >> 12) & 0xFF, (seg_end - va) >> 12
        addrs = base + step_pa * (np.arange(n, dtype=np.uint64) * np.uint64(4096) + np.uint64(va - start))
        k.mem.table(pt + 8 * i0, n)[:] = addrs | np.uint64(prot)
        va = seg_end
    if k.walkers:           # the CPUs with the ASCE loaded may form entries at once
        k.tlb_fill()


def unmap_range(k, mm: int, start: int, end: int) -> None:
    """``zap_pte_range`` over ``[start, end)``: every PTE back to ``_PAGE_INVALID``."""
    va = start
    while va < end:
        seg_end = min(end, (va | 0xFFFFF) + 1)
        pt = pte_table(k, mm, va)
        if pt:
            k.mem.table(pt + 8 * ((va >> 12) & 0xFF), (seg_end - va) >> 12)[:] = _PAGE_INVALID
        va = seg_end


def collect_free(k, mm: int, start: int, end: int):
    """What ``free_pgtables(start, end)`` frees, children first, clearing the entries.

    Returns ``(pte_tables, crsts)``: ``[(table, vmaddr)]`` for ``pte_free_tlb`` and
    ``[table]`` for ``pmd/pud/p4d_free_tlb``.  A table is freed when the whole span it
    maps lies in ``[start, end)``; the top table never (``pgd_free`` at ``mmdrop``).
    """
    pts, crsts = [], []
    mem = k.mem

    def walk(table: int, level: int, base: int):
        shift = _SHIFT[level]
        span = 1 << shift
        lo = max(0, (start - base) >> shift) if start > base else 0
        hi = min(2048, -(-(end - base) // span))
        if hi <= lo:
            return
        ents = mem.table(table, 2048)
        for i in np.nonzero((ents[lo:hi] & np.uint64(_SEGMENT_ENTRY_INVALID)) == 0)[0].tolist():
            idx = lo + i
            va = base + idx * span
            e = int(ents[idx])
            whole = start <= va and va + span <= end
            if level == 0:
                if e & _SEGMENT_ENTRY_LARGE:          # large segment: no page table below
                    if whole:
                        ents[idx] = _SEGMENT_ENTRY_EMPTY
                    continue
                if whole:
                    ents[idx] = _SEGMENT_ENTRY_EMPTY        # pmd_clear
                    pts.append((e & _SEGMENT_ENTRY_ORIGIN, va))
                continue
            walk(e & ~0xFFF, level - 1, va)
            if whole:
                ents[idx] = _EMPTY[level]          # pud/p4d/pgd_clear
                crsts.append(e & ~0xFFF)

    top, level = _top(k, mm)
    walk(top, level, 0)
    return pts, crsts


def free_pgtables(k, mm: int, tlb: int, start: int, end: int, cpu: int = 0) -> tuple[list, list]:
    """``free_pgtables``: clear and free (through the gather ``tlb``) the tables of ``[start, end)``."""
    pts, crsts = collect_free(k, mm, start, end)
    for table, va in pts:
        k.page_table_free_rcu(tlb, table, va, cpu)               # pte_free_tlb
    for table in crsts:
        k.run(TLB.tlb_remove_table(tlb=tlb, table=table), cpu)   # pmd/pud/p4d_free_tlb
    return pts, crsts


def retract_page_tables(k, mm: int, start: int, end: int, cpu: int = 0) -> list[int]:
    """khugepaged ``retract_page_tables``: for each 1 MiB of ``[start, end)`` collapsed to a
    huge page (whose small pages ``collapse_file`` has unmapped, so the PTEs are none),
    ``pmdp_collapse_flush`` (clear the STE) and ``pte_free_defer`` the table."""
    out = []
    va = (start + 0xFFFFF) & ~0xFFFFF
    while va + 0x100000 <= end:
        st = segment_table(k, mm, va)
        if st:
            ea = st + 8 * ((va >> 20) & 0x7FF)
            e = k.mem.read_u64(ea)
            if not e & _SEGMENT_ENTRY_INVALID and not e & _SEGMENT_ENTRY_LARGE:
                # collapse_file() already unmapped the small pages (try_to_unmap): PTEs none.
                k.mem.table(e & _SEGMENT_ENTRY_ORIGIN, PTRS_PER_PTE)[:] = _PAGE_INVALID
                k.mem.write_u64(ea, _SEGMENT_ENTRY_EMPTY)           # pmdp_collapse_flush
                k.pte_free_defer(mm, e & _SEGMENT_ENTRY_ORIGIN, cpu)
                out.append(e & _SEGMENT_ENTRY_ORIGIN)
        va += 0x100000
    return out


# -- teardown, as steps -----------------------------------------------------------------------

class exit_mmap(Path):
    """``exit_mmap(mm)``: unmap everything, ``free_pgtables`` through a full-mm gather, finish."""

    LOCALS = ("mm", "tlb", "pts", "crsts", "i", "nomem")

    @step("tlb_gather_mmu_fullmm; unmap_vmas; free_pgtables: clear entries")
    def unmap(self, k):
        self.tlb = k.tlb_gather_mmu(self.mm, nomem=bool(self.nomem))
        limit = asce_limit(k, self.mm)
        limit = 1 << 64 if limit > (1 << 53) else limit
        unmap_range_all(k, self.mm)
        pts, crsts = collect_free(k, self.mm, 0, limit)
        if k.walkers and (pts or crsts):        # pte/pmd_free_tlb: flush_mm, for tlb_finish_mmu
            k.mem.write_u32(self.mm + MM["context.flush_mm"], 1)
        self.pts, self.crsts, self.i = tuple(pts), tuple(crsts), 0
        return "pte_free_tlb(pts[i])" if self.pts else "pXd_free_tlb(crsts[i])"

    @step("pte_free_tlb(pts[i])", local=True)
    def pte(self, k):
        table, va = self.pts[self.i]
        self.i += 1
        nxt = "pte_free_tlb(pts[i])" if self.i < len(self.pts) else "pXd_free_tlb(crsts[i])"
        if self.i == len(self.pts):
            self.i = 0
        return Call(k.v.page_table_free_rcu(tlb=self.tlb, table=table, vmaddr=va), nxt)

    @step("pXd_free_tlb(crsts[i])", local=True)
    def crst(self, k):
        if self.i >= len(self.crsts):
            return "tlb_finish_mmu"
        table = self.crsts[self.i]
        self.i += 1
        return Call(TLB.tlb_remove_table(tlb=self.tlb, table=table), "pXd_free_tlb(crsts[i])")

    @step("tlb_finish_mmu", local=True)
    def finish(self, k):
        return Call(TLB.tlb_finish_mmu(tlb=self.tlb), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


def unmap_range_all(k, mm: int) -> None:
    """Every PTE of every page table of ``mm`` back to ``_PAGE_INVALID`` (vectorised)."""
    r = reachable_tables(k.mem, asce(k, mm))
    for t in r.page_tables.tolist():
        k.mem.table(t, PTRS_PER_PTE)[:] = _PAGE_INVALID


class mmdrop(Path):
    """``mmdrop(mm)``: drop ``mm_count``; at 0 ``__mmdrop``: ``pgd_free`` and free (poison) the mm."""

    LOCALS = ("mm",)

    @step("atomic_dec_and_test(&mm->mm_count)")
    def dec(self, k):
        k._access(k.mem_map.virt_to_page(self.mm), "mmdrop")
        n = k.mem.read_u32(self.mm + MM["mm_count"]) - 1
        k.mem.write_u32(self.mm + MM["mm_count"], n)
        return "__mmdrop: pgd_free; free_mm" if n == 0 else DONE

    @step("__mmdrop: pgd_free; free_mm")
    def free(self, k):
        pgd = k.mem.read_u64(self.mm + MM["pgd"])
        crst_table_free(k, self.mm, pgd)
        k.free_page(k.mem_map.virt_to_page(self.mm), 0)         # poisons the mm_struct 0x6b
        return DONE


class mmput(Path):
    """``mmput(mm)``: drop ``mm_users``; at 0 ``exit_mmap``, unlink from ``mm_list``, ``mmdrop``."""

    LOCALS = ("mm", "nomem")

    @step("atomic_dec_and_test(&mm->mm_users)", then=("list_del(&mm->mmlist)", "switch_mm(mm, next) on every CPU"))
    def dec(self, k):
        n = k.mem.read_u32(self.mm + MM["mm_users"]) - 1
        k.mem.write_u32(self.mm + MM["mm_users"], n)
        if n:
            return DONE
        if k.walkers:
            return Call(exit_mmap(mm=self.mm, nomem=self.nomem), "switch_mm(mm, next) on every CPU")
        return Call(exit_mmap(mm=self.mm, nomem=self.nomem), "list_del(&mm->mmlist)")

    # With walkers: the exiting task and every lazy user of the mm switch to another mm
    # before the last mmdrop (finish_task_switch drops the lazy reference after it), so
    # no control register holds the ASCE when __mmdrop frees the pgd.  Their TLBs keep
    # what they hold (detaching purges nothing).
    @step("switch_mm(mm, next) on every CPU")
    def switch_away(self, k):
        for cpu in range(len(k.cpus)):
            if asce(k, self.mm) in k.loaded_asces(cpu):
                detach(k, cpu, self.mm)
        return "list_del(&mm->mmlist)"

    # Local: no other path touches mm->mmlist.
    @step("list_del(&mm->mmlist)", local=True)
    def unlink(self, k):
        lists.list_del(k.mem, self.mm + MM["mmlist"])
        return Call(mmdrop(mm=self.mm), "return")

    @step("return", local=True)
    def ret_(self, k):
        return DONE


def mmgrab(k, mm: int) -> None:
    """``mmgrab``: ``mm_count++``."""
    k.mem.write_u32(mm + MM["mm_count"], k.mem.read_u32(mm + MM["mm_count"]) + 1)


def mmget(k, mm: int) -> None:
    """``mmget``: ``mm_users++``."""
    k.mem.write_u32(mm + MM["mm_users"], k.mem.read_u32(mm + MM["mm_users"]) + 1)


def run_mmput(k, mm: int, cpu: int = 0, nomem: bool = False) -> None:
    """``mmput`` run sequentially."""
    k.run(mmput(mm=mm, nomem=int(nomem)), cpu)


def run_mmdrop(k, mm: int, cpu: int = 0) -> None:
    """``mmdrop`` run sequentially."""
    k.run(mmdrop(mm=mm), cpu)


def run_exit_mmap(k, mm: int, cpu: int = 0) -> None:
    """``exit_mmap`` run sequentially (tables then go through RCU: ``k.rcu_barrier()``)."""
    k.run(exit_mmap(mm=mm), cpu)
