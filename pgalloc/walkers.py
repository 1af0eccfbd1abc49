"""Linux's lockless page-table walkers, one entry read per step (reference
``walkers-and-tlb.md`` §3), so that any other CPU's free, XOR or list operation can fall
between two reads:

* ``gup_fast`` (``lockless_pages_from_mm``, every version): ``local_irq_save``, then
  ``READ_ONCE`` of the region-third entry, ``pmdp_get_lockless`` of the segment entry,
  ``ptep_get_lockless`` of the PTE through the pmd value it read, the recheck of both,
  ``local_irq_restore``.  Interrupts off hold off RCU grace periods and
  ``tlb_remove_table_sync_one``'s IPI: that is its protection.  The reference the
  kernel takes on the page (``try_grab_folio``) is not modelled: the pages are the zero
  page, and what matters here is the table it reads;
* ``pte_offset_map_lock`` (v6.6+: versions with ``LOCKLESS_PTE_MAP``): ``rcu_read_lock``
  and ``pmdp_get_lockless``, ``spin_lock`` of the table's PTE lock, the ``pmd_same``
  recheck (unlock and retry when it fails), ``ptep_get``, ``pte_unmap_unlock``
  (``spin_unlock`` and ``rcu_read_unlock``).  ``rcu_read_lock`` is its protection
  against the table being freed; the PTE lock after a good recheck, against its segment
  entry changing (I5).

Both walk the address ``addr`` of mm ``mm`` (the explorer gives each the start of one
setup table's MiB).  ``pt`` is the page table whose pointer the walker loaded (0 before
and after); ``protected(k)`` says whether it still holds its protection; the invariants
that read them are in ``pgalloc.inflight``.
"""

from __future__ import annotations

from s390emu import structs as S

from .callers import ptlock_ptr
from .pgtable_bits import _SEGMENT_ENTRY_INVALID, _SEGMENT_ENTRY_LARGE, _SEGMENT_ENTRY_ORIGIN
from .steps import BLOCKED, DONE, Path, step

_ASCE = S.mm_struct.fields["context.asce"]
_INVALID = 0x20


def _entry_addr(table: int, addr: int, shift: int) -> int:
    return table + 8 * ((addr >> shift) & 0x7FF)


class gup_fast(Path):
    """``lockless_pages_from_mm(start, 1 page)``: ``gup_pgd_range`` with interrupts off."""

    FUNC = "gup_fast"
    LOCALS = ("mm", "addr", "pmdp", "pmd", "pt", "pte")
    EXTERNAL = ("page", "pt")

    def protected(self, k) -> bool:
        return self.pc != "local_irq_save(flags)"

    @step("local_irq_save(flags)")
    def irq_off(self, k):
        k.cpus[k.cur[0]].irq += 1
        return "pud = READ_ONCE(*pudp)"

    @step("pud = READ_ONCE(*pudp)")
    def pud(self, k):
        asce = k.mem.read_u64(self.mm + _ASCE)
        e = k.mem.read_u64(_entry_addr(asce & ~0xFFF, self.addr, 31))
        if e & _INVALID:
            return "local_irq_restore(flags)"
        self.pmdp = _entry_addr(e & ~0xFFF, self.addr, 20)
        return "pmd = pmdp_get_lockless(pmdp)"

    @step("pmd = pmdp_get_lockless(pmdp)")
    def pmd_(self, k):
        self.pmd = k.mem.read_u64(self.pmdp)
        if self.pmd & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_LARGE):
            return "local_irq_restore(flags)"
        self.pt = self.pmd & _SEGMENT_ENTRY_ORIGIN
        return "pte = ptep_get_lockless(pte_offset_map(&pmd, addr))"

    @step("pte = ptep_get_lockless(pte_offset_map(&pmd, addr))")
    def pte_(self, k):
        self.pte = k.mem.read_u64(self.pt + 8 * ((self.addr >> 12) & 0xFF))
        return "try_grab_folio; if (pmd_val(pmd) != pmd_val(*pmdp) || pte changed) bail"

    # Whether the recheck fails or not, the walker is done with the table: it drops the
    # page reference or keeps it, and returns.
    @step("try_grab_folio; if (pmd_val(pmd) != pmd_val(*pmdp) || pte changed) bail")
    def recheck(self, k):
        k.mem.read_u64(self.pmdp)
        self.pt = 0
        return "local_irq_restore(flags)"

    @step("local_irq_restore(flags)")
    def irq_on(self, k):
        k.cpus[k.cur[0]].irq -= 1
        self.pt = 0
        return DONE


class pte_offset_map_lock(Path):
    """v6.6's ``pte_offset_map_lock(mm, pmd, addr, &ptl)`` on an address whose segment
    entry the caller found (under the mmap or an rmap lock: the upper levels are stable),
    then one ``ptep_get`` and ``pte_unmap_unlock``."""

    FUNC = "pte_offset_map_lock"
    LOCALS = ("mm", "addr", "pmdp", "pmdval", "pt", "ptl", "rechecked", "pte")
    EXTERNAL = ("page", "pt", "pmdp", "pmdval", "rechecked")

    def protected(self, k) -> bool:
        return self.pc != "rcu_read_lock(); pmdval = pmdp_get_lockless(pmd)"

    def lock_addr(self) -> int:
        return ptlock_ptr(self.pt)

    @step("rcu_read_lock(); pmdval = pmdp_get_lockless(pmd)")
    def map_(self, k):
        k.rcu_read_lock()
        if not self.pmdp:
            asce = k.mem.read_u64(self.mm + _ASCE)
            pud = k.mem.read_u64(_entry_addr(asce & ~0xFFF, self.addr, 31))
            self.pmdp = _entry_addr(pud & ~0xFFF, self.addr, 20)
        self.pmdval = k.mem.read_u64(self.pmdp)
        if self.pmdval & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_LARGE):
            return "rcu_read_unlock(); return NULL"
        self.pt = self.pmdval & _SEGMENT_ENTRY_ORIGIN
        return "ptl = pte_lockptr(mm, &pmdval); spin_lock(ptl)"

    @step("rcu_read_unlock(); return NULL")
    def none(self, k):
        k.rcu_read_unlock()
        self.pt = 0
        return DONE

    @step("ptl = pte_lockptr(mm, &pmdval); spin_lock(ptl)", lock="plain")
    def lock(self, k):
        if not k.spin_lock(self.lock_addr(), False):
            return BLOCKED
        self.ptl = self.lock_addr()
        return "if (!pmd_same(pmdval, pmdp_get_lockless(pmd))) retry"

    @step("if (!pmd_same(pmdval, pmdp_get_lockless(pmd))) retry")
    def recheck(self, k):
        if k.mem.read_u64(self.pmdp) != self.pmdval:
            return "pte_unmap_unlock; retry"
        self.rechecked = 1
        return "pte = ptep_get(pte)"

    @step("pte_unmap_unlock; retry", unlock="plain")
    def retry(self, k):
        k.spin_unlock(self.ptl, False)
        k.rcu_read_unlock()
        self.ptl = self.pt = 0
        return "rcu_read_lock(); pmdval = pmdp_get_lockless(pmd)"

    @step("pte = ptep_get(pte)")
    def get(self, k):
        self.pte = k.mem.read_u64(self.pt + 8 * ((self.addr >> 12) & 0xFF))
        return "pte_unmap_unlock(pte, ptl)"

    @step("pte_unmap_unlock(pte, ptl)", unlock="plain")
    def unlock(self, k):
        k.spin_unlock(self.ptl, False)
        k.rcu_read_unlock()
        self.ptl = self.pt = self.rechecked = 0
        return DONE


WALKERS = (gup_fast, pte_offset_map_lock)
