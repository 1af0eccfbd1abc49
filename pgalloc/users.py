"""Other users of a page-table page and of ``mm->context.lock`` that race with pgalloc.

* ``__tlb_flush_mm_lazy`` (arch/s390/include/asm/tlbflush.h) takes ``mm->context.lock``
  with plain ``spin_lock`` in process context: bottom halves stay enabled, so a softirq
  (an RCU callback) on the same CPU that wants the lock spins forever.
* A speculative page reference (``get_page_unless_zero`` ... ``put_page``), as GUP-fast,
  page_idle or memory-failure scanners take on any page: it adds to the whole 32-bit
  ``_refcount`` word, so it meets the fragment byte in the same word.
"""

from __future__ import annotations

from s390emu import structs as S

from .steps import BLOCKED, DONE, UNLESS_WALKERS, Path, step
from .tlbflush import tlb_flush_mm_if_pending


class tlb_flush_mm_lazy_(Path):
    """``__tlb_flush_mm_lazy(mm)``: ``spin_lock(&mm->context.lock)``, flush, unlock."""

    FUNC = "__tlb_flush_mm_lazy"
    LOCALS = ("mm",)

    @step("spin_lock(&mm->context.lock)", lock="plain")
    def lock(self, k):
        return "__tlb_flush_mm(mm); mm->context.flush_mm = 0" if k.spin_lock(self.lock_addr(), False) else BLOCKED

    # Local without walkers: the one store no one reads (flush_mm).  With them, the
    # purge every TLB sees (pgalloc.tlbflush).
    @step("__tlb_flush_mm(mm); mm->context.flush_mm = 0", local=UNLESS_WALKERS)
    def flush(self, k):
        if k.walkers:
            tlb_flush_mm_if_pending(k, self.mm)
        else:
            k.mem.write_u32(self.mm + S.mm_struct.fields["context.flush_mm"], 0)
        return "spin_unlock(&mm->context.lock)"

    @step("spin_unlock(&mm->context.lock)", unlock="plain")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), False)
        return DONE


class speculative_ref(Path):
    """``get_page_unless_zero(page)`` ... ``put_page(page)`` on the frame holding ``table``."""

    LOCALS = ("table", "page", "got")

    @step("get_page_unless_zero(page)")
    def get(self, k):
        self.page = k.mem_map.virt_to_page(self.table & ~0xFFF)
        word = k.mem_map.refcount(self.page)
        if word == 0:                          # atomic_add_unless(&_refcount, 1, 0)
            return DONE
        k.mem_map.set_refcount(self.page, (word + 1) & 0xFFFFFFFF)
        self.got = 1
        return "put_page(page)"

    @step("put_page(page)")
    def put(self, k):
        word = k.mem_map.refcount(self.page)
        if word == 1:                          # last reference: the page is freed here
            k.free_page(self.page, 0)
        else:
            k.mem_map.set_refcount(self.page, word - 1)
        return DONE
