"""The plugin's helpers (``pgalloc.testing``), called as plain functions: each assertion
fails on a state that breaks what it promises, with a message naming the table, the CPU
and the entry, and passes on the same state before the break; where the kernel's own
checks (``checks=True``) judge the same event, both agree.  The fixtures and the marker
are tested through a pytest subprocess in ``tests/test_examples.py``."""

import pytest

from pgalloc import Violation, mm as MM
from pgalloc.registry import load_version
from pgalloc.testing import (Stuck, alloc_table, assert_dat_safe, assert_no_stale_tlb, assert_no_walker_on_freed,
                             assert_nothing_freed_reachable, finish, free_pgtables_range, new_kernel, new_mm,
                             pte_free_table, retract_table, start_walker, step, table_at, table_freed)
from pgalloc.callers import collapse_op
from pgalloc.walkers import gup_fast, pte_offset_map_lock

MIB = 1 << 20
PATCH = "examples/patches/v66-defer-without-rcu.py"


@pytest.fixture
def broken():
    """The calibration patch (no SetPageActive), run without the kernel's checks."""
    k = new_kernel(load_version(PATCH), checks=False)
    return k, new_mm(k)


def test_the_fixtures_kernel_and_mm():
    k = new_kernel("v66")
    mm = new_mm(k)
    assert (k.version, k.checks, k.walkers, len(k.cpus), k.mem.size) == ("v66", True, True, 2, 8 << 20)
    tables = [table_at(k, mm, va)[1] for va in range(0, 4 * MIB, MIB)]
    assert sorted(k.owner) == sorted(tables) and set(k.owner.values()) == {mm}
    for cpu in (0, 1):                                   # attached: each TLB holds every table's entries
        assert {e[2] for e in k.tlbs[cpu] if e[3] == 0} == set(tables)
    assert_dat_safe(k)


def test_table_at_and_alloc_table():
    k = new_kernel("v66")
    mm = new_mm(k)
    with pytest.raises(AssertionError, match=f"mm {mm:#x} has no page table at 0x500000"):
        table_at(k, mm, 5 * MIB)
    table = alloc_table(k, mm, 5 * MIB)                   # __pte_alloc: allocated and hooked
    assert table and table_at(k, mm, 5 * MIB)[1] == table and k.owner[table] == mm
    with pytest.raises(AssertionError, match="already has a page table at 0x500000"):
        alloc_table(k, mm, 5 * MIB)
    assert_dat_safe(k)


def test_a_walker_on_a_freed_table_is_named(broken):
    k, mm = broken
    walker = start_walker(k, 1, mm, 0, pte_offset_map_lock, steps=1)
    table = retract_table(k, mm, 0)
    assert_no_walker_on_freed(k)                          # relisted, not yet handed out again
    retract_table(k, mm, MIB)                             # the frame's last half: freed
    assert walker.pt == table and table_freed(k, table)
    with pytest.raises(AssertionError) as e:
        assert_no_walker_on_freed(k)
    assert str(e.value) == (f"walkers on freed page tables: 1 found\n  CPU1's pte_offset_map_lock "
                            f"[at {walker.pc}] holds page table {table:#x}, read from the STE at "
                            f"{walker.pmdp:#x}: freed to the page allocator")


def test_a_walker_on_a_reissued_table_is_named_and_the_kernel_agrees(broken):
    k, mm = broken
    walker = start_walker(k, 1, mm, 0, gup_fast, steps=1)
    table = retract_table(k, mm, 0)
    assert alloc_table(k, mm, 4 * MIB) == table           # relisted at once, handed out again
    with pytest.raises(AssertionError, match=f"CPU1's gup_fast .* holds page table {table:#x}, .* "
                       f"handed out again, to mm {mm:#x}"):
        assert_no_walker_on_freed(k)
    checked = new_kernel(k.version)                       # the kernel's I4 at the same step
    m = new_mm(checked)
    start_walker(checked, 1, m, 0, gup_fast, steps=1)
    retract_table(checked, m, 0)
    with pytest.raises(Violation, match="handed out again by page_table_alloc") as v:
        alloc_table(checked, m, 4 * MIB)
    assert v.value.name == "walker_use_after_free"


def test_a_walker_is_not_blamed_for_a_free_in_progress():
    k = new_kernel("v66")
    mm = new_mm(k)
    walker = start_walker(k, 1, mm, 0, pte_offset_map_lock, steps=1)
    assert_dat_safe(k)                                    # a walker on a hooked table of its mm
    ste, table = table_at(k, mm, 0)
    k.start(0, collapse_op(mm=mm, table=table, ste=ste))
    while step(k, 0) != "pte_free_defer(mm, pgtable)":     # unhooked and flushed, not yet freed
        pass
    assert walker.pt == table and k.mem.read_u64(ste) & 0x20
    assert_dat_safe(k)
    finish(k, 0)
    assert_dat_safe(k)


def test_a_stale_tlb_entry_is_named():
    k = new_kernel("v66", checks=False)
    mm = new_mm(k)
    ste, table = table_at(k, mm, 0)
    k.mem.write_u64(ste, 0x20)                            # pmd_clear without IDTE, then the free
    k.page_table_free(mm, table)
    with pytest.raises(AssertionError) as e:
        assert_no_stale_tlb(k)
    lines = str(e.value).splitlines()
    assert lines[0] == "stale TLB entries: 4 found"
    asce = MM.asce(k, mm)
    assert lines[1:] == [f"  CPU{c}'s TLB holds {what} (ASCE {asce:#x}): page table {table:#x} is not "
                         f"mm {mm:#x}'s (not allocated (byte 0x02))"
                         for c in (0, 1) for what in (f"PTEs of {table:#x}", f"STE {ste & ~0x3FFF:#x}->{table:#x}")]
    assert_nothing_freed_reachable(k)                     # unhooked: no new walk reaches it


def test_a_stale_tlb_entry_is_what_the_kernel_calls_tlb_stale():
    k = new_kernel("v66")
    mm = new_mm(k)
    ste, table = table_at(k, mm, 0)
    _, other = table_at(k, mm, MIB)
    k.mem.write_u64(ste, 0x20)
    k.page_table_free(mm, table)                          # the half only: nothing freed, no I1 yet
    with pytest.raises(AssertionError, match=f"page table {table:#x}"):
        assert_no_stale_tlb(k)
    k.mem.write_u64(ste + 8, 0x20)
    with pytest.raises(Violation, match="while CPU0's TLB holds") as v:
        k.page_table_free(mm, other)                      # the frame freed: the kernel's I1
    assert v.value.name == "tlb_stale"


def test_a_tlb_entry_of_a_dead_asce_or_a_freed_crst_is_named():
    k = new_kernel("v66", checks=False)
    mm = new_mm(k)
    asce = MM.asce(k, mm)
    crst = k.alloc_page(0)
    k.free_page(k.mem_map.virt_to_page(crst))             # a frame back in the buddy allocator
    k.tlbs[1] = k.tlbs[1] | {(asce, asce & ~0xFFF, crst, 1), (0x7000c7, 0x7000, 0x9000, 1)}
    with pytest.raises(AssertionError) as e:
        assert_no_stale_tlb(k)
    assert sorted(str(e.value).splitlines()[1:]) == sorted([
        "  CPU1's TLB holds RTTE 0x7000->0x9000 (ASCE 0x7000c7): the ASCE is no live mm's",
        f"  CPU1's TLB holds RTTE {asce & ~0xFFF:#x}->{crst:#x} (ASCE {asce:#x}): region/segment table "
        f"{crst:#x} is in a freed frame"])


def test_a_reachable_freed_table_is_named():
    k = new_kernel("v66", checks=False)
    mm = new_mm(k)
    ste, table = table_at(k, mm, 0)
    k.page_table_free(mm, table)                          # freed, still hooked
    with pytest.raises(AssertionError) as e:
        assert_nothing_freed_reachable(k)
    assert str(e.value) == (f"freed or foreign tables reachable: 1 found\n  mm {mm:#x} reaches page table "
                            f"{table:#x} in a free half (byte 0x02 [A1], STE at {ste:#x}) "
                            f"[ASCE {MM.asce(k, mm):#x} loaded on CPU0, CPU1]")
    with pytest.raises(AssertionError) as e:
        assert_dat_safe(k)
    assert str(e.value).startswith("not DAT-safe:\nfreed or foreign tables reachable: 1 found\n")
    assert "\nstale TLB entries: 4 found\n" in str(e.value)


def test_free_pgtables_range_frees_whole_mibs_only():
    k = new_kernel("v66")
    mm = new_mm(k)
    expected = [table_at(k, mm, va)[1] for va in (MIB, 2 * MIB)]
    assert free_pgtables_range(k, mm, MIB // 2, 3 * MIB) == expected
    assert table_at(k, mm, 0) and table_at(k, mm, 3 * MIB)
    assert free_pgtables_range(k, mm, MIB, 3 * MIB) == []          # nothing left there
    k.rcu_barrier()
    assert_dat_safe(k)


def test_pte_free_waits_for_gup_fast_and_run_on_says_so():
    k = new_kernel(load_version("v64"))
    mm = new_mm(k)
    start_walker(k, 1, mm, 0, gup_fast, steps=1)          # interrupts off: the IPI cannot be taken
    with pytest.raises(Stuck, match="CPU0 process .*cannot progress"):
        pte_free_table(k, mm, 0)
    finish(k, 1)
    finish(k, 0)
    assert_dat_safe(k)


def test_run_on_names_the_lock_it_spins_on():
    k = new_kernel("v66")
    mm = new_mm(k)
    start_walker(k, 1, mm, 0, pte_offset_map_lock, steps=2)     # the PTE lock, after pmd_same
    with pytest.raises(Stuck, match=r"CPU0 process retract_page_tables: pmdp_collapse_flush\(pmd\) \(lock 0x[0-9a-f]+ "
                       r"held by CPU1\) cannot progress"):
        retract_table(k, mm, 0)
    finish(k, 1)
    finish(k, 0)
    k.rcu_barrier()
    assert_dat_safe(k)
