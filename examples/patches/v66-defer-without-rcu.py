"""A patch to try the walkers on: v6.6's ``pte_free_defer`` without ``SetPageActive``.

8211dad627981 marks the page of a retracted table PageActive so that ``page_table_free``
neither relists the half (handing it out again at once) nor frees the page without a
grace period: ``pte_free_defer`` exists for the lockless walkers (GUP-fast with
interrupts off, v6.6's ``pte_offset_map`` under ``rcu_read_lock``) still reading the
table khugepaged just unhooked.  This file drops the mark, so the retracted half is
given back at once::

    s390emu explore --version examples/patches/v66-defer-without-rcu.py --max-ops 3

The allocator's own invariants all hold; what breaks is a walker in flight
(``walker_use_after_free``), which only ``--walkers`` (the default) models.
"""

from pgalloc.v66 import *  # noqa: F401,F403 - everything as in v6.6 ...
from pgalloc import v66
from pgalloc.steps import Call, step

NAME = "v66-defer-without-rcu"


class pte_free_defer(v66.pte_free_defer):
    """... but no SetPageActive: plain page_table_free, no grace period."""

    @step("SetPageActive(page)")
    def active(self, k):
        self.page = k.mem_map.virt_to_page(self.table)
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "WARN_ON_ONCE(mm_has_pgste(mm))")
