"""Linux's lockless page-table walkers (reference ``walkers-and-tlb.md`` §3), in steps
another CPU's free, XOR or list operation can fall between: a step is fused with the
next only where no interleaving is lost (each class says why):

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
setup table's MiB).  ``pt`` is the page table whose pointer the walker loaded: set only
inside its protection (interrupts off, ``rcu_read_lock``), 0 before and after; the
invariants that read it are in ``pgalloc.inflight``.
"""

from __future__ import annotations

from s390emu import structs as S

from .callers import ptlock_ptr
from .pgtable_bits import _SEGMENT_ENTRY_INVALID, _SEGMENT_ENTRY_LARGE, _SEGMENT_ENTRY_ORIGIN
from .steps import BLOCKED, DONE, Path, step

_ASCE = S.mm_struct.fields["context.asce"]
_INVALID = 0x20


def _pmdp(k, mm: int, addr: int) -> int | None:
    """``pmd_offset(pud_offset(pgd_offset(mm, addr)))`` of a 3-level mm: the address of
    ``addr``'s segment entry, read through the region-third entry (None when invalid)."""
    asce = k.mem.read_u64(mm + _ASCE)
    pud = k.mem.read_u64((asce & ~0xFFF) + 8 * ((addr >> 31) & 0x7FF))
    if pud & _INVALID:
        return None
    return (pud & ~0xFFF) + 8 * ((addr >> 20) & 0x7FF)


class gup_fast(Path):
    """``lockless_pages_from_mm(start, 1 page)``: ``gup_pgd_range`` with interrupts off.

    Three steps, not six: ``local_irq_save`` only holds other CPUs back (grace periods,
    the IPI), so it moves right, onto the reads after it; the region-third entry cannot
    change while a thread of the mm runs (only exit clears it); the PTE read writes a
    local no later step reads, so it is local; ``local_irq_restore`` only lets others on,
    so it moves left, onto the recheck.  What stays apart is what another CPU's free can
    fall between: loading the pointer to the page table, and giving it up."""

    FUNC = "gup_fast"
    LOCALS = ("mm", "addr", "pmdp", "pmd", "pt", "pte")
    EXTERNAL = ("page", "pt")

    @step("local_irq_save(flags); pmd = pmdp_get_lockless(pmdp)")
    def load(self, k):
        k.cpus[k.cur[0]].irq += 1
        self.pmdp = _pmdp(k, self.mm, self.addr) or 0
        if not self.pmdp:
            return "local_irq_restore(flags)"
        self.pmd = k.mem.read_u64(self.pmdp)
        if self.pmd & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_LARGE):
            return "local_irq_restore(flags)"
        self.pt = self.pmd & _SEGMENT_ENTRY_ORIGIN
        return "pte = ptep_get_lockless(pte_offset_map(&pmd, addr))"

    # Local: a read whose value no later step uses (the recheck is what decides); a free
    # of the table while the pointer is held is caught at the free (pgalloc.inflight).
    @step("pte = ptep_get_lockless(pte_offset_map(&pmd, addr))", local=True)
    def pte_(self, k):
        self.pte = k.mem.read_u64(self.pt + 8 * ((self.addr >> 12) & 0xFF))
        return "try_grab_folio; recheck pmd and pte; local_irq_restore(flags)"

    # Whether the recheck fails or not, the walker is done with the table: it drops the
    # page reference or keeps it, and returns.
    @step("try_grab_folio; recheck pmd and pte; local_irq_restore(flags)")
    def recheck(self, k):
        k.mem.read_u64(self.pmdp)
        self.pt = 0
        k.cpus[k.cur[0]].irq -= 1
        return DONE

    # Local: it only lets others on (a left mover), and the walker holds nothing.
    @step("local_irq_restore(flags)", local=True)
    def irq_on(self, k):
        k.cpus[k.cur[0]].irq -= 1
        return DONE


class pte_offset_map_lock(Path):
    """v6.6's ``pte_offset_map_lock(mm, pmd, addr, &ptl)`` on an address whose segment
    entry the caller found (under the mmap or an rmap lock: the upper levels are stable),
    then one ``ptep_get`` and ``pte_unmap_unlock``."""

    FUNC = "pte_offset_map_lock"
    LOCALS = ("mm", "addr", "pmdp", "pmdval", "pt", "ptl", "rechecked", "pte")
    EXTERNAL = ("page", "pt", "pmdp", "pmdval", "rechecked")

    def lock_addr(self) -> int:
        return ptlock_ptr(self.pt)

    @step("rcu_read_lock(); pmdval = pmdp_get_lockless(pmd)")
    def map_(self, k):
        k.rcu_read_lock()
        if not self.pmdp:      # the caller's pmd: found under its mmap or rmap lock
            self.pmdp = _pmdp(k, self.mm, self.addr) or 0
            if not self.pmdp:
                return "rcu_read_unlock(); return NULL"
        self.pmdval = k.mem.read_u64(self.pmdp)
        if self.pmdval & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_LARGE):
            return "rcu_read_unlock(); return NULL"
        self.pt = self.pmdval & _SEGMENT_ENTRY_ORIGIN
        return "ptl = pte_lockptr(mm, &pmdval); spin_lock(ptl); if (!pmd_same(pmdval, *pmd)) retry"

    # Local: it only lets grace periods on (a left mover), and the walker holds nothing.
    @step("rcu_read_unlock(); return NULL", local=True)
    def none(self, k):
        k.rcu_read_unlock()
        self.pt = 0
        return DONE

    # The lock and the recheck in one step: taking the PTE lock is a right mover (no
    # softirq takes it, and another CPU's step cannot touch it while it is held).
    @step("ptl = pte_lockptr(mm, &pmdval); spin_lock(ptl); if (!pmd_same(pmdval, *pmd)) retry", lock="plain")
    def lock(self, k):
        if not k.spin_lock(self.lock_addr(), False):
            return BLOCKED
        self.ptl = self.lock_addr()
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

    # Local: a read whose value no later step uses (the walker's caller would).
    @step("pte = ptep_get(pte)", local=True)
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
