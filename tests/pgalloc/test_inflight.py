"""Each invariant of the readers in flight (pgalloc.inflight), broken on purpose: the
check fires with its name, and the kernel's own path that avoids the break passes."""

import pytest

from dat.tlb import naming

from pgalloc import Kernel, Violation, inflight
from pgalloc import mm as MM
from pgalloc import tlbflush as F
from pgalloc.callers import collapse_op, pte_free_op, ptlock_ptr
from pgalloc.pgtable_bits import _PAGE_INVALID, _SEGMENT_ENTRY_EMPTY, PTRS_PER_PTE
from pgalloc.walkers import gup_fast, pte_offset_map_lock
from s390emu import structs as S


def kernel(version="v66"):
    """Two CPUs running threads of one mm with two page tables (one 4K page)."""
    k = Kernel(version, mem_size=8 << 20, checks=True, walkers=True)
    mm = MM.mm_alloc(k)
    for cpu in range(2):
        F.attach(k, cpu, mm)
    MM.map_range(k, mm, 0, 2 << 20)
    st = MM.segment_table(k, mm, 0)
    tables = [k.mem.read_u64(st + 8 * i) & ~0x7FF for i in range(2)]
    return k, mm, st, tables


def test_every_cpu_holds_the_segment_entries_and_ptes_once_attached():
    k, mm, st, (t0, t1) = kernel()
    for cpu in range(2):
        assert {(e[1], e[2]) for e in k.tlbs[cpu] if e[3] == 0} == {(st, t0), (st, t1)}
        assert {e[1] for e in k.tlbs[cpu] if e[3] < 0} == {t0, t1}


def test_tlb_stale_a_plain_pmd_clear_then_free_leaves_the_entries_in_every_tlb():
    k, mm, st, (t0, t1) = kernel()
    for i, t in enumerate((t0, t1)):
        k.mem.write_u64(st + 8 * i, _SEGMENT_ENTRY_EMPTY)      # pmd_clear: no IDTE
    k.page_table_free(mm, t0)
    with pytest.raises(Violation) as e:
        k.page_table_free(mm, t1)                               # the 4K page goes
    assert e.value.name == "tlb_stale" and e.value.address == k.mem_map.virt_to_page(t0)
    assert e.value.message == (f"{t0:#x} freed to the page allocator while CPU0's TLB holds PTEs of {t0:#x}, "
                               f"PTEs of {t1:#x}, STE {st:#x}->{t0:#x}, STE {st:#x}->{t1:#x}")
    assert e.value.step == "CPU0 process pte_free_now: pgtable_pte_page_dtor; __free_page"


def test_the_kernels_collapse_path_purges_before_the_free():
    k, mm, st, (t0, t1) = kernel("v64")
    k.run(pte_free_op(mm=mm, table=t0, ste=st), 0)
    k.run(pte_free_op(mm=mm, table=t1, ste=st + 8), 0)
    assert not any(k.tlbs[c] for c in range(2) if any(e[1] in (t0, t1) or e[2] in (t0, t1) for e in k.tlbs[c]))


def test_tlb_outside_cpumask_a_cpu_dropped_from_mm_cpumask_while_its_tlb_holds_entries():
    k, mm, st, (t0, t1) = kernel()
    F.set_mask(k, mm, "cpu_bitmap", 1, False)                # under-indication
    with pytest.raises(Violation) as e:
        k.run(gup_fast(mm=mm, addr=0), 0)
    assert (e.value.name, e.value.address) == ("tlb_outside_cpumask", 0)
    assert e.value.message == f"CPU1 holds PTEs of {t0:#x} of mm {mm:#x} but is not in its mm_cpumask"
    assert e.value.step == "CPU0 process gup_fast: local_irq_save(flags); pmd = pmdp_get_lockless(pmdp)"


def on_cpu(k, cpu, fn, *args):
    """Run ``fn`` as if in a step of ``cpu`` (the flush primitives ask which CPU runs)."""
    k.cur = (cpu, "process", None)
    try:
        fn(k, *args)
    finally:
        k.cur = None


def test_walker_use_after_free_a_table_freed_under_gup_fast_with_no_ipi():
    k, mm, st, (t0, t1) = kernel("v66")
    k.start(1, gup_fast(mm=mm, addr=0))
    k.step(1)                                                # interrupts off, pt loaded
    assert k.cpus[1].proc[0].pt == t0
    for i, t in enumerate((t0, t1)):                         # zapped, IDTE: no TLB holds them ...
        k.mem.table(t, PTRS_PER_PTE)[:] = _PAGE_INVALID
        on_cpu(k, 0, F.pmdp_flush_direct, mm, st + 8 * i)
    k.page_table_free(mm, t0)
    with pytest.raises(Violation) as e:                     # ... but the walker still does
        k.page_table_free(mm, t1)
    assert e.value.name == "walker_use_after_free" and e.value.address == k.mem_map.virt_to_page(t0)
    assert e.value.message == (f"page table {t0:#x} freed to the page allocator while CPU1's gup_fast holds a "
                               "pointer to it [at pte = ptep_get_lockless(pte_offset_map(&pmd, addr))]")
    assert e.value.step == "CPU0 process pte_free_now: pgtable_pte_page_dtor; __free_page"


def test_the_ipi_waits_for_gup_fast_and_grace_periods_too():
    k, mm, st, (t0, t1) = kernel("v64")
    k.start(1, gup_fast(mm=mm, addr=0))
    k.step(1)
    k.start(0, pte_free_op(mm=mm, table=t0, ste=st))
    while k.runnable(0):
        k.step(0)
    assert k.cpus[0].proc and k.position(0)[1] == "tlb_remove_table_sync_one"   # held by CPU1's IRQs off
    assert not k.rcu_grace_period() or not k.rcu
    while k.busy(1):
        k.step(1)
    while k.busy(0):
        k.step(0)                                            # the IPI is taken, the table freed
    assert t0 not in k.owner


def test_pmd_changed_under_ptl_a_retractor_that_skips_the_pte_lock():
    k, mm, st, (t0, t1) = kernel("v66")
    k.start(1, pte_offset_map_lock(mm=mm, addr=0))
    k.step(1)                                                # rcu_read_lock, pmdval
    k.step(1)                                                # spin_lock(ptl), pmd_same: rechecked
    assert k.cpus[1].proc[0].rechecked
    k.mem.write_u64(st, _SEGMENT_ENTRY_EMPTY)                # a pmd_clear without the PTE lock
    with pytest.raises(Violation) as e:
        k.step(1)
    assert e.value.name == "pmd_changed_under_ptl" and e.value.address == k.mem_map.virt_to_page(t0)
    assert e.value.message == (f"the segment entry at {st:#x} changed from {t0:#x} to 0x20 while CPU1's "
                               "pte_offset_map_lock holds the PTE lock after its pmd_same recheck")
    assert e.value.step == "CPU1 process pte_offset_map_lock: pte = ptep_get(pte)"


def test_v66s_retract_waits_for_the_pte_lock_the_walker_holds():
    k, mm, st, (t0, t1) = kernel("v66")
    k.start(1, pte_offset_map_lock(mm=mm, addr=0))
    k.step(1)
    k.step(1)
    k.start(0, collapse_op(mm=mm, table=t0, ste=st))
    k.step(0)                                                # asks for the PTE lock
    assert not k.runnable(0)
    while k.busy(1):
        k.step(1)
    while k.busy(0):
        k.step(0)
    # Unhooked under the lock once the walker let go; pte_free_defer marked the page.
    assert k.mem.read_u64(st) == _SEGMENT_ENTRY_EMPTY and t0 not in k.owner
    assert k.mem_map.test_flag(k.mem_map.virt_to_page(t0), 7)      # PG_active


def test_reachability_at_every_step_a_half_freed_while_still_hooked():
    k, mm, st, (t0, t1) = kernel("v64")
    with pytest.raises(Violation) as e:
        k.page_table_free(mm, t0)                            # its STE still designates it
    assert e.value.name == "reachability" and e.value.address == k.mem_map.virt_to_page(t0)
    asce = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"])
    assert e.value.message == f"ASCE {asce:#x} on CPU0 reaches page table {t0:#x} owned by mm 0x0 (STE in {st:#x})"
    assert e.value.step == "CPU0 process page_table_free: if (!mm_alloc_pgste(mm))"


def _reachable_now(k, mm, live=None):
    """``inflight._reachable_now`` of the state as it is (the last fill's walks)."""
    asce = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"])
    inflight._reachable_now(k, {asce: mm} if live is None else live, "STEP")
    return asce


@pytest.mark.parametrize("byte,why", [(0x02, "in a free or pending half (byte 0x02)"),
                                      (0x13, "in a free or pending half (byte 0x13)")])
def test_reachability_at_every_step_a_free_or_pending_half_still_hooked(byte, why):
    k, mm, st, (t0, t1) = kernel("v64")
    page = k.mem_map.virt_to_page(t0)
    word = k.mem.read_u32(page + S.page.fields["_refcount"])
    k.mem.write_u32(page + S.page.fields["_refcount"], byte << 24 | word & 0xFFFFFF)
    with pytest.raises(Violation) as e:
        _reachable_now(k, mm)
    asce = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"])
    assert (e.value.name, e.value.address, e.value.step) == ("reachability", page, "STEP")
    assert e.value.message == f"ASCE {asce:#x} on CPU0 reaches page table {t0:#x} {why} (STE in {st:#x})"


def test_reachability_at_every_step_without_fragments_reads_no_half_bits():
    k, mm, st, tables = kernel("v67")
    _reachable_now(k, mm)                                    # v6.7's byte is 0, no halves: clean


def test_reachability_at_every_step_a_freed_frame_and_another_mms_table():
    k, mm, st, (t0, t1) = kernel("v64")
    page = k.mem_map.virt_to_page(t0)
    _reachable_now(k, mm)                                    # clean as built
    k.owner[t0] = 0x999000
    with pytest.raises(Violation) as e:
        asce = _reachable_now(k, mm)
    assert e.value.message.endswith(f"reaches page table {t0:#x} owned by mm 0x999000 (STE in {st:#x})")
    owners = {t: k.owner.pop(t) for t in (t0, t1)}
    with pytest.raises(Violation) as e:                      # an ASCE of no live mm reaching unowned tables
        _reachable_now(k, mm, live={})
    assert e.value.message.endswith(f"owned by mm 0x0 (STE in {st:#x})")
    k.owner.update(owners)
    k.owner[t0] = mm
    k.mem_map.set_page_type(page, 0xFFFFFFFF & ~S.PG_buddy)  # the frame back in the buddy allocator
    with pytest.raises(Violation) as e:
        _reachable_now(k, mm)
    assert e.value.message.endswith(tuple(f"reaches page table {t:#x} in a freed frame or not a page-table page "
                                     f"(STE in {st:#x})" for t in (t0, t1)))     # both tables are in it


def test_a_spin_lock_of_the_pte_lock_of_a_free_page_is_a_walker_use_after_free():
    k, mm, st, (t0, t1) = kernel("v64")
    k.run(pte_free_op(mm=mm, table=t0, ste=st), 0)
    k.run(pte_free_op(mm=mm, table=t1, ste=st + 8), 0)      # the page is free now
    page = k.mem_map.virt_to_page(t0)
    k.start(1, gup_fast(mm=mm, addr=0))
    k.cur = (1, "process", k.cpus[1].proc[0])
    with pytest.raises(Violation) as e:
        inflight.ptl_of_freed_page(k, ptlock_ptr(t0))
    assert (e.value.name, e.value.address) == ("walker_use_after_free", page)
    assert e.value.message == f"spin_lock of the PTE lock of page {page:#x}, which is free"
    assert e.value.step == f"CPU1 process gup_fast: {k.cpus[1].proc[0].pc}"
    k.cur = None
    other = k.mem_map.virt_to_page(MM.segment_table(k, mm, 0))
    inflight.ptl_of_freed_page(k, ptlock_ptr(MM.segment_table(k, mm, 0)))   # an allocated page: fine
    assert not k.mem_map.has_type(other, S.PG_buddy)


def test_a_walker_holding_a_table_outside_the_released_range_is_fine():
    k, mm, st, (t0, t1) = kernel("v66")
    k.start(1, gup_fast(mm=mm, addr=(1 << 20)))
    k.step(1)
    assert k.cpus[1].proc[0].pt == t1
    k.tlbs = [frozenset()] * 2                               # only the walker is asked about
    inflight.at_release(k, t0, t1, "handed out again")       # [t0, t1): t1 is outside
    with pytest.raises(Violation) as e:
        inflight.at_release(k, t1, t1 + 0x800, "handed out again")
    assert e.value.name == "walker_use_after_free" and e.value.address == k.mem_map.virt_to_page(t1)
    assert e.value.step == ""                                # called outside any step


@pytest.mark.parametrize("store", [False, True], ids=["zapped", "written"])
def test_unhooked_table_not_empty_a_store_into_a_table_a_walker_still_reads(store):
    k, mm, st, (t0, t1) = kernel("v66")
    k.start(1, pte_offset_map_lock(mm=mm, addr=0))
    k.step(1)                                                # rcu_read_lock, pmdval: holds t0
    k.start(0, collapse_op(mm=mm, table=t0, ste=st))
    while k.busy(0):
        k.step(0)                                            # unhooked, zapped, pte_free_defer
    assert t0 not in k.owner and k.cpus[1].proc[0].pt == t0
    if store:
        k.mem.write_u64(t0 + 8, 0x1234000)                   # e.g. an rcu_head put in the table
        with pytest.raises(Violation) as e:
            k.step(1)
        assert e.value.name == "unhooked_table_not_empty" and e.value.address == k.mem_map.virt_to_page(t0)
        assert e.value.message.startswith(f"page table {t0:#x}, given back by its mm, holds 0x1234000 in entry 1 "
                                          "(1 not _PAGE_INVALID) while CPU1's pte_offset_map_lock still reads it")
    else:
        while k.busy(1):
            k.step(1)                                        # the recheck fails, the walker retries and finds none


def test_a_full_gather_batch_is_flushed_before_it_goes_to_rcu():
    # mm/mmu_gather.c tlb_table_flush: tlb_table_invalidate (s390: __tlb_flush_mm_lazy)
    # before tlb_remove_table_free hands the full batch to call_rcu.
    from pgalloc.callers import free_pgtables_op

    k, mm, st, (t0, t1) = kernel("v66")
    k.tlb_batch_max = 1                                      # the first table fills the batch
    k.start(0, free_pgtables_op(mm=mm, table=t0, ste=st))
    while not k.rcu:
        k.step(0)
    assert [func for _, func, _, _ in k.rcu] == ["tlb_remove_table_rcu"]
    # Queued only once no TLB holds the STE that pmd_clear left behind (tlb_finish_mmu's
    # flush comes after it).
    assert k.position(0)[1:] == ("page_table_free_rcu", "return")      # before tlb_finish_mmu
    assert not any(naming(entries, t0, t0 + 0x800) for entries in k.tlbs)
    while k.busy(0):
        k.step(0)
    k.rcu_barrier()
    assert t0 not in k.owner and not k.rcu
