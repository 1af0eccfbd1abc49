"""A kernel developer's DAT-after-free tests of ``pte_free_defer``, written with the
s390emu pytest plugin (``pgalloc.testing``) only.

    python -m pytest -q examples/test_pte_free_defer.py          # s390emu installed
    python -m pytest -q -p pgalloc.testing examples/test_pte_free_defer.py   # from a checkout

Each kernel checks every invariant after every step: a patch that frees a table under
a walker raises ``Violation`` at that step.
"""

import pytest

from pgalloc import Violation
from pgalloc.testing import (alloc_table, assert_dat_safe, finish, free_pgtables_range, retract_table,
                             start_walker, table_freed)
from pgalloc.walkers import gup_fast, pte_offset_map_lock

MIB = 1 << 20


@pytest.mark.s390_version("v66")
def test_retracted_tables_wait_for_the_rcu_walker(s390_kernel, s390_mm):
    k = s390_kernel
    walker = start_walker(k, 1, s390_mm, 0, pte_offset_map_lock, steps=1)   # rcu_read_lock, pmd loaded
    table = retract_table(k, s390_mm, 0)            # CPU0: PTE lock, pmdp_collapse_flush, pte_free_defer
    retract_table(k, s390_mm, MIB)                  # the other 2K half of the frame
    assert walker.pt == table and not table_freed(k, table)
    assert_dat_safe(k)
    assert alloc_table(k, s390_mm, 4 * MIB) >> 12 != table >> 12     # no grace period: not reissued
    assert_dat_safe(k)
    finish(k, 1)                                    # pmd_same fails, the walker retries and leaves
    k.rcu_barrier()
    assert table_freed(k, table)
    assert_dat_safe(k)


@pytest.mark.s390_version("examples/patches/v66-defer-without-rcu.py")
def test_defer_without_rcu_is_caught(s390_kernel, s390_mm):
    start_walker(s390_kernel, 1, s390_mm, 0, pte_offset_map_lock, steps=1)
    retract_table(s390_kernel, s390_mm, 0)          # no SetPageActive: the half is given back at once
    with pytest.raises(Violation) as caught:        # the frame's last half: freed with the walker on it
        retract_table(s390_kernel, s390_mm, MIB)
    assert caught.value.name == "walker_use_after_free"


@pytest.mark.s390_version("v66")
def test_gup_fast_holds_off_the_grace_period(s390_kernel, s390_mm):
    k = s390_kernel
    walker = start_walker(k, 1, s390_mm, 0, gup_fast, steps=1)     # interrupts off, pmd loaded
    for va in (0, MIB):
        retract_table(k, s390_mm, va)
    assert walker.pt and not k.rcu_grace_period()  # interrupts off: no grace period yet
    assert_dat_safe(k)
    finish(k, 1)
    k.rcu_barrier()
    assert_dat_safe(k)


def test_free_pgtables_leaves_no_stale_tlb(s390_kernel, s390_mm):
    tables = free_pgtables_range(s390_kernel, s390_mm, 0, 4 * MIB)
    assert len(tables) == 4
    s390_kernel.rcu_barrier()
    assert all(table_freed(s390_kernel, t) for t in tables)
    assert_dat_safe(s390_kernel)
