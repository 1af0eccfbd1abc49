"""DAT correctness after page-table frees, for every allocator version (issue 3 item 6)."""

import numpy as np
import pytest

from dat import TranslationException, translate, translate_many
from pgalloc import Kernel, PgallocError, Violation, check_all, check_quiescent, mm as MM
from pgalloc.checks import reachability
from pgalloc.pages import page_table_frames

ALL = ["v515", "v64", "seed", "v66", "v67"]
MiB = 1 << 20


def kernel(version, **kw):
    kw.setdefault("mem_size", 16 << 20)
    return Kernel(version, checks=True, **kw)


def codes(k, mm, start, end, step=4096):
    vas = np.arange(start, end, step, dtype=np.uint64)
    res = translate_many(k.mem, MM.asce(k, mm), vas)
    return res


def fault_code(k, mm, va):
    try:
        translate(k.mem, MM.asce(k, mm), va)
    except TranslationException as e:
        return e.code
    return None


@pytest.mark.parametrize("version", ALL)
def test_after_unmap_and_free_pgtables_every_address_faults_and_no_freed_half_is_reachable(version):
    k = kernel(version)
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 6 * MiB)
    MM.unmap_range(k, mm, MiB, 5 * MiB)
    tlb = k.tlb_gather_mmu(mm)
    pts, _ = MM.free_pgtables(k, mm, tlb, 2 * MiB, 4 * MiB)
    k.tlb_finish_mmu(tlb)
    assert len(pts) == 2
    for va in range(MiB, 5 * MiB, 0x3000):
        want = 0x10 if 2 * MiB <= va < 4 * MiB else 0x11
        assert fault_code(k, mm, va) == want, hex(va)
    assert fault_code(k, mm, 0x5000) is None
    assert reachability(k) == []
    k.rcu_barrier()
    assert check_all(k) == []
    for t, _ in pts:
        if version == "v67" or all(t2 in [p for p, _ in pts] for t2 in (t & ~0xFFF, (t & ~0xFFF) + 0x800)):
            assert k.frames.is_free(t)


@pytest.mark.parametrize("version", ALL)
def test_a_half_freed_with_page_table_free_rcu_stays_readable_until_the_grace_period(version):
    k = kernel(version)
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 2 * MiB)               # two tables, one 4K page (pre-6.7)
    old = MM.pte_table(k, mm, 0)
    MM.unmap_range(k, mm, 0, MiB)
    k.rcu_read_lock()                             # a walker that already holds `old`
    tlb = k.tlb_gather_mmu(mm)
    MM.free_pgtables(k, mm, tlb, 0, MiB)
    k.tlb_finish_mmu(tlb)
    # The old walker still reads page-table entries, not poison.
    assert np.all(k.mem.table(old, 256) == 0x400)
    assert not k.frames.is_free(old)
    # New walks no longer reach it.
    assert fault_code(k, mm, 0x1000) == 0x10
    assert reachability(k) == []
    # It is not handed out again before the grace period.
    t = k.page_table_alloc(mm)
    assert t != old
    assert not k.rcu_grace_period()               # the reader blocks the grace period
    k.rcu_read_unlock()
    k.rcu_barrier()
    # After the grace period it may be reused; the old mapping never reaches it again.
    reused = [k.page_table_alloc(mm) for _ in range(3)]
    if version != "v67":
        assert old in reused
    assert reachability(k) == []
    assert check_all(k) == []


@pytest.mark.parametrize("version", ["v515", "v64", "v66", "v67"])
def test_pte_free_defer_after_a_thp_collapse_frees_both_halves_after_the_grace_period(version):
    k = kernel(version)
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 4 * MiB)
    retracted = MM.retract_page_tables(k, mm, 0, 2 * MiB)
    assert len(retracted) == 2
    assert fault_code(k, mm, 0x1000) == 0x10 and fault_code(k, mm, MiB + 0x1000) == 0x10
    assert fault_code(k, mm, 2 * MiB) is None
    assert reachability(k) == []
    k.rcu_barrier()
    assert check_all(k) == []
    assert all(k.frames.is_free(t) for t in retracted)


def test_pte_free_defer_of_one_half_works_in_the_seed():
    k = kernel("seed")
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 2 * MiB)
    [t] = MM.retract_page_tables(k, mm, 0, MiB)
    page = k.mem_map.virt_to_page(t)
    assert k.byte(page) == 0x16                   # A1 H0 P0
    k.rcu_barrier()
    assert k.byte(page) == 0x02
    assert check_all(k) == []
    assert k.page_table_alloc(mm) == t            # relinked by __tlb_remove_table and reused


def test_the_seed_leaves_the_second_deferred_half_stuck_because_pte_free_half_tests_an_unshifted_mask():
    k = kernel("seed")
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 2 * MiB)
    MM.retract_page_tables(k, mm, 0, 2 * MiB)     # both halves of one page: byte 0x3C
    with pytest.raises(Violation) as e:
        k.rcu_barrier()
    assert e.value.name == "rcu_head" and "0x28" in e.value.message
    # With checks off the same run leaks the page with H1|P1 set.
    k2 = Kernel("seed", mem_size=16 << 20)
    mm2 = MM.mm_alloc(k2)
    MM.map_range(k2, mm2, 0, 2 * MiB)
    [t0, t1] = MM.retract_page_tables(k2, mm2, 0, 2 * MiB)
    k2.rcu_barrier()
    assert k2.byte(k2.mem_map.virt_to_page(t0)) == 0x28
    assert not k2.frames.is_free(t0)


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("levels", [3, 4, 5])
def test_exit_mmap_frees_every_table_exactly_once_and_the_mm_is_poisoned(version, levels):
    k = kernel(version)
    MM.map_range(k, MM.mm_alloc(k), 0, 4096)      # the zero page and a neighbour mm stay
    other = MM.mm_alloc(k)
    MM.map_range(k, other, 0, 3 * MiB)
    free0 = k.frames.nr_free()
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 3 * MiB)
    MM.map_range(k, mm, 5 << 31, (5 << 31) + MiB)
    if levels >= 4:
        MM.map_range(k, mm, 3 << 42, (3 << 42) + 2 * MiB)
    if levels == 5:
        MM.map_range(k, mm, 1 << 60, (1 << 60) + MiB)
    assert (MM.asce(k, mm) >> 2 & 3) == levels - 2
    MM.run_mmput(k, mm)
    k.rcu_barrier()
    assert k.frames.nr_free() == free0
    assert k.mem.read(mm, 128) == b"\x6b" * 128
    assert check_quiescent(k) == []
    assert fault_code(k, other, 0x2000) is None


@pytest.mark.parametrize("version", ALL)
def test_exit_mmap_through_the_no_memory_fallback_frees_at_once(version):
    k = kernel(version)
    MM.map_range(k, MM.mm_alloc(k), 0, 4096)
    free0 = k.frames.nr_free()
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0, 3 * MiB)
    MM.run_mmput(k, mm, nomem=True)
    assert k.rcu == [] or all(e[1] != "tlb_remove_table_rcu" for e in k.rcu)
    k.rcu_barrier()
    assert k.frames.nr_free() == free0


@pytest.mark.parametrize("version", ALL)
def test_pgste_tables_take_a_whole_page_and_go_back_with_tag_3(version):
    k = kernel(version)
    mm = MM.mm_alloc(k, pgste=True)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    assert a & 0xFFF == 0 and b & 0xFFF == 0 and a != b
    pa = k.mem_map.virt_to_page(a)
    assert k.byte(pa) == (0x03 if version != "v67" else 0)
    assert np.all(k.mem.table(a + 2048, 256) == 0)
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, a, 0)
    k.tlb_finish_mmu(tlb)
    k.page_table_free(mm, b)
    assert k.frames.is_free(b)
    k.rcu_barrier()
    assert k.frames.is_free(a)


@pytest.mark.parametrize("version", ALL)
def test_bad_frees_are_reported_and_leave_the_state_as_it_was(version):
    k = kernel(version)
    mm, mm2 = MM.mm_alloc(k), MM.mm_alloc(k)
    t = k.page_table_alloc(mm)
    data = k.frames.alloc_pages(0)
    before = k.key()
    bad = [(mm, t + 8, "misaligned"), (mm, data, "never allocated"), (mm2, t, "belongs to mm")]
    if version != "v67":
        bad.append((mm, t + 0x800, "not allocated"))
    for owner, table, why in bad:
        for call in (k.page_table_free, k.pte_free_defer):
            with pytest.raises(PgallocError) as e:
                call(owner, table)
            assert why in e.value.message and e.value.page == k.mem_map.virt_to_page(table & ~0xFFF)
        assert k.key() == before
    k.page_table_free(mm, t)
    with pytest.raises(PgallocError):
        k.page_table_free(mm, t)                  # double free


def test_the_v515_release_race_frees_the_page_under_a_list_del_and_v64_does_not():
    for version, broken in (("v515", True), ("v64", False), ("v66", False)):
        k = kernel(version)
        mm = MM.mm_alloc(k)
        lo, hi = k.page_table_alloc(mm), k.page_table_alloc(mm)
        tlb = k.tlb_gather_mmu(mm)
        k.page_table_free_rcu(tlb, lo, 0)          # 0x12, batched
        k.tlb_finish_mmu(tlb)
        assert k.rcu_grace_period()
        k.start(1, k.v.page_table_free(mm=mm, table=hi))
        for _ in range(3):                         # pgste test, lock, XOR
            k.step(1)
        k.run_rcu_callback(0, 0)                   # __tlb_remove_table(lo) in softirq on CPU0
        events = []
        k.trace_hook = events.append
        try:
            while k.busy(0):
                k.step(0)
            while k.busy(1):
                k.step(1)
        except Violation as e:
            assert broken, e
            assert e.name in ("page_free", "use_after_free"), e
            continue
        assert not broken
        assert k.frames.is_free(lo)
        assert [ev.label for ev in events][-1] in ("page_table_release_check; __free_page",
                                                  "pte_free_now(&page->rcu_head)", "return")


def test_a_softirq_that_wants_the_lock_its_own_cpu_holds_with_plain_spin_lock_is_a_deadlock():
    from pgalloc.users import tlb_flush_mm_lazy_
    k = kernel("seed")
    mm = MM.mm_alloc(k)
    lo, _ = k.page_table_alloc(mm), k.page_table_alloc(mm)
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, lo, 0)
    k.tlb_finish_mmu(tlb)
    k.rcu_grace_period()
    k.checks = False
    k.start(0, tlb_flush_mm_lazy_(mm=mm))
    k.step(0)                                      # spin_lock(&mm->context.lock), BH enabled
    assert k.can_softirq(0)
    k.run_rcu_callback(0, 0)
    with pytest.raises(Violation) as e:
        for _ in range(10):
            k.step(0)
    assert e.value.name == "deadlock"


def test_copy_and_key_let_two_futures_diverge_from_the_middle_of_a_path():
    k = kernel("v64")
    mm = MM.mm_alloc(k)
    t = k.page_table_alloc(mm)
    k.start(0, k.v.page_table_free(mm=mm, table=t))
    k.step(0)
    k.step(0)
    c = k.copy()
    assert c.key() == k.key()
    k.step(0)
    assert c.key() != k.key() and c.position(0)[2] == "atomic_xor_bits(A|P)"
    while c.busy(0):
        c.step(0)
    assert c.frames.is_free(t) and not k.frames.is_free(t)
    assert hash(c.key())


@pytest.mark.parametrize("version", ALL)
def test_page_table_frames_decode_the_byte_list_membership_and_owner(version):
    k = kernel(version)
    mm = MM.mm_alloc(k)
    a = k.page_table_alloc(mm)
    frames = page_table_frames(k)
    assert len(frames) == 1
    f = frames[0]
    assert f["frame"] == a & ~0xFFF and f["owner_mm"] == mm
    if version == "v67":
        assert f["byte"] == 0 and not f["listed"]
    else:
        assert f["byte"] == 1 and f["halves"][0]["A"] and f["listed"] and f["list_mm"] == mm
