"""The versions' paths the list-order and byte tests do not reach, each pinned by name.

* Every ``WARN_ON_ONCE`` and ``page_table_release_check`` of each version, reached by
  the smallest wrong state (``checks=False``: the kernel then records the warning and
  goes on) and compared whole: its name, its page and its message.
* The PGSTE (KVM) paths: v6.6's ``pte_free_defer`` WARN, the seed's
  ``call_rcu(pte_free_pgste)``, a PGSTE page released with a wrong byte.
* v6.4's khugepaged collapse with walkers (``tlb_remove_table_sync_one``, then
  ``pte_free``).
* The seed's ``pte_free_half`` as posted: its ``mask`` is the whole ``_refcount`` (not
  shifted by 24), so ``mask & 0x0CU`` reads the low refcount bits: a refcount with bit 2
  set re-queues the other half's callback, the H bits never do.
* Each ``spin_lock_bh(&mm->context.lock)`` step waits (``BLOCKED``) while another CPU
  holds the lock, and the lock taken in softirq context is released as such.
* Freeing both halves of a page with ``page_table_free`` frees it, in every version.

States come from the public API (``pgalloc.Kernel``, ``pgalloc.mm.mm_alloc``); a wrong
byte or owner is written into ``struct page`` directly.
"""

from __future__ import annotations

import pytest

import pgalloc
from pgalloc import mm as MM
from pgalloc.steps import BLOCKED
from s390emu import lists
from s390emu import structs as S

LRU = S.page.fields["lru"]
RCU_HEAD = S.page.fields["rcu_head"]
PGTABLE_LIST = S.mm_struct.fields["context.pgtable_list"]
CONTEXT_LOCK = S.mm_struct.fields["context.lock"]


def kernel(version, *, pgste=False, checks=False, **kw):
    k = pgalloc.Kernel(version, checks=checks, **kw)
    return k, MM.mm_alloc(k, pgste=pgste)


def page_of(k, table):
    return k.mem_map.virt_to_page(table)


def set_byte(k, page, byte):
    k.mem_map.set_refcount(page, byte << 24 | (k.mem_map.refcount(page) & 0xFF_FFFF))


def warnings(k):
    return [(w.name, w.page, w.message) for w in k.warnings]


def freed(k, page):
    return not k.mem_map.has_type(page, S.PG_table)


# -- page_table_release_check -----------------------------------------------------------------

@pytest.mark.parametrize("version,message", [
    ("v64", "Invalid pgtable {table:#x} release mask 0x01"),
    ("seed", "Invalid pgtable {table:#x} release mask 0x01"),
    ("v66", "Invalid pgtable release half 0 mask 0x01"),
])
def test_a_pgste_page_freed_with_a_wrong_byte_warns_with_the_byte_its_xor_left(version, message):
    # A PGSTE page holds one 4K table with byte 0x03; with 0x02 the XOR of both A bits
    # leaves 0x01, which the release check names (and the page is freed anyway).
    k, mm = kernel(version, pgste=True)
    table = k.page_table_alloc(mm)
    page = page_of(k, table)
    assert k.byte(page) == 0x03
    set_byte(k, page, 0x02)
    k.page_table_free(mm, table)
    assert warnings(k) == [("page_table_release_check", page, message.format(table=table))]
    assert freed(k, page)


@pytest.mark.parametrize("version,message", [
    ("v64", "Invalid pgtable release half 0x03 mask 0x01"),
    ("seed", "Invalid pgtable release half 0x03 mask 0x01"),
    ("v66", "Invalid pgtable release half 0x03 mask 0x01"),
])
def test_a_pgste_page_freed_through_rcu_with_a_wrong_byte_warns_in_tlb_remove_table(version, message):
    k, mm = kernel(version, pgste=True)
    table = k.page_table_alloc(mm)
    page = page_of(k, table)
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, table)
    set_byte(k, page, 0x02)
    k.tlb_finish_mmu(tlb)
    k.rcu_barrier()
    assert warnings(k) == [("page_table_release_check", page, message)]
    assert freed(k, page)


def test_v66_releasing_a_page_still_on_a_list_says_so():
    k, mm = kernel("v66", pgste=True)
    table = k.page_table_alloc(mm)
    page = page_of(k, table)
    lists.list_add(k.mem, page + LRU, mm + PGTABLE_LIST)     # a PGSTE page is never listed
    k.page_table_free(mm, table)
    assert warnings(k) == [("page_table_release_check", page,
                            "Invalid pgtable release half 0 mask 0x00 (still listed)")]


def test_v66_a_clean_release_warns_nothing():
    k, mm = kernel("v66", pgste=True)
    table = k.page_table_alloc(mm)
    k.page_table_free(mm, table)
    assert warnings(k) == [] and freed(k, page_of(k, table))


# -- WARN_ON_ONCEs ----------------------------------------------------------------------------

def test_v66_pte_free_defer_on_a_pgste_mm_warns():
    k, mm = kernel("v66", pgste=True)
    table = k.page_table_alloc(mm)
    page = page_of(k, table)
    k.pte_free_defer(mm, table)
    assert warnings(k) == [("WARN_ON_ONCE(mm_has_pgste(mm))", page, "pte_free_defer on an mm that uses PGSTEs")]
    # SetPageActive came first: the release test-cleared it and went through RCU
    assert [f for _, f, *_ in k.rcu] == ["pte_free_now"] and not k.mem_map.test_flag(page, S.PG_active)


@pytest.mark.parametrize("path", ["page_table_free", "page_table_free_rcu", "pte_free_defer"])
def test_seed_each_free_warns_when_page_pt_mm_is_another_mm(path):
    k, mm = kernel("seed")
    other = MM.mm_alloc(k)
    table = k.page_table_alloc(mm)
    k.page_table_alloc(mm)                          # the other half stays allocated
    page = page_of(k, table)
    k.mem_map.set_field(page, "pt_mm", other)
    if path == "page_table_free_rcu":
        k.page_table_free_rcu(k.tlb_gather_mmu(mm), table)
    else:
        getattr(k, path)(mm, table)
    assert warnings(k) == [("WARN_ON_ONCE(page->pt_mm != mm)", page,
                            f"{path}: page->pt_mm {other:#x} != mm {mm:#x}")]


def test_seed_frees_of_the_owner_mm_warn_nothing():
    k, mm = kernel("seed")
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    k.pte_free_defer(mm, a)
    k.page_table_free(mm, b)
    k.rcu_barrier()
    assert warnings(k) == [] and freed(k, page_of(k, a))


@pytest.mark.parametrize("byte,name,message", [
    (0x10, "WARN_ON_ONCE(mask & ~0x03U)", "listed page has pending bits 0x10"),
    (0x00, "WARN_ON_ONCE(mask == 0x00U || mask == 0x03U)", "listed page has mask 0x00"),
])
def test_seed_page_table_alloc_names_the_byte_of_a_listed_page_it_warns_on(byte, name, message):
    k, mm = kernel("seed")
    page = page_of(k, k.page_table_alloc(mm))       # a new page, A0, listed
    set_byte(k, page, byte)
    k.page_table_alloc(mm)
    assert warnings(k) == [(name, page, message)]


# -- PGSTE and walker paths -------------------------------------------------------------------

def test_seed_pte_free_defer_of_a_pgste_table_goes_through_pte_free_pgste():
    k, mm = kernel("seed", pgste=True, checks=True)
    table = k.page_table_alloc(mm)
    page = page_of(k, table)
    k.pte_free_defer(mm, table)
    assert [(h, f) for h, f, *_ in k.rcu] == [(page + RCU_HEAD, "pte_free_pgste")]
    assert k.byte(page) == 0x03 and not freed(k, page)
    k.rcu_barrier()
    assert freed(k, page) and k.rcu == []


@pytest.mark.parametrize("walkers", [False, True])
def test_v64_pte_free_defer_is_pte_free_with_or_without_the_sync_ipi(walkers):
    k, mm = kernel("v64", checks=True, walkers=walkers)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    k.pte_free_defer(mm, b)
    assert k.byte(page_of(k, a)) == 0x01
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == [page_of(k, a) + LRU]
    k.pte_free_defer(mm, a)
    assert freed(k, page_of(k, a)) and k.rcu == []


# -- the seed's pte_free_half reads the low refcount bits ----------------------------------------

@pytest.mark.parametrize("refcount,requeued", [(1, False), (4, True), (8, True), (3, False)])
def test_seed_pte_free_half_requeues_the_other_half_on_low_refcount_bits_as_posted(refcount, requeued):
    k, mm = kernel("seed")
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = page_of(k, a)
    k.pte_free_defer(mm, b)                         # upper half: pte_free_now1 queued
    assert [f for _, f, *_ in k.rcu] == ["pte_free_now1"] and k.byte(page) == 0x29
    k.mem_map.set_refcount(page, (k.mem_map.refcount(page) & 0xFF00_0000) | refcount)
    k.rcu_grace_period()
    k.run_rcu_callback(0, k.ready_callbacks()[0])
    while k.busy(0):
        assert k.step(0) is not BLOCKED
    # the callback cleared H1 and P1; "if (mask & 0x0CU)" then looked at the refcount
    assert k.byte(page) == 0x01
    assert [(h, f) for h, f, *_ in k.rcu] == ([(page + RCU_HEAD, "pte_free_now0")] if requeued else [])


def test_seed_pte_free_half_of_the_lower_half_requeues_pte_free_now1():
    k, mm = kernel("seed")
    a, _ = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = page_of(k, a)
    k.pte_free_defer(mm, a)
    k.mem_map.set_refcount(page, (k.mem_map.refcount(page) & 0xFF00_0000) | 4)
    k.rcu_grace_period()
    k.run_rcu_callback(0, k.ready_callbacks()[0])
    while k.busy(0):
        assert k.step(0) is not BLOCKED
    assert k.byte(page) == 0x02
    assert [(h, f) for h, f, *_ in k.rcu] == [(page + RCU_HEAD, "pte_free_now1")]


# -- spin_lock_bh(&mm->context.lock) waits for its holder --------------------------------------

def _hold_context_lock(k, mm, spare, cpu=1):
    """Start page_table_free of ``spare`` on ``cpu`` and step it until it holds the lock."""
    k.start(cpu, k.v.page_table_free(mm=mm, table=spare))
    while mm + CONTEXT_LOCK not in k.locks:
        assert k.step(cpu) is not BLOCKED


@pytest.mark.parametrize("version,start,label", [
    ("v64", "alloc", "spin_lock_bh(&mm->context.lock)"),
    ("v64", "alloc", "spin_lock_bh(&mm->context.lock) [list_add]"),
    ("v64", "free", "spin_lock_bh(&mm->context.lock)"),
    ("v64", "free_rcu", "spin_lock_bh(&mm->context.lock)"),
    ("seed", "defer", "spin_lock_bh(&mm->context.lock)"),
])
def test_each_context_lock_step_waits_while_another_cpu_holds_the_lock(version, start, label):
    k, mm = kernel(version, checks=True)
    tables = [k.page_table_alloc(mm) for _ in range(4)]     # two full pages: nothing listed
    v = k.v
    path = {"alloc": lambda: v.page_table_alloc(mm=mm),
            "free": lambda: v.page_table_free(mm=mm, table=tables[0]),
            "free_rcu": lambda: v.page_table_free_rcu(tlb=k.tlb_gather_mmu(mm), table=tables[0]),
            "defer": lambda: v.pte_free_defer(mm=mm, table=tables[0])}[start]()
    k.start(0, path)
    while k.position(0)[2] != label:                # up to the lock step, the lock free
        assert k.step(0) is not BLOCKED
    _hold_context_lock(k, mm, tables[3])
    assert k.step(0) is BLOCKED and k.position(0)[2] == label
    assert k.step(0) is BLOCKED                     # still, while CPU 1 holds it


def test_seed_tlb_remove_table_relinks_under_the_lock_and_releases_it_as_a_softirq_lock():
    k, mm = kernel("seed", checks=True)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = page_of(k, a)
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, b)
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == []        # pending: not listed
    k.tlb_finish_mmu(tlb)
    k.rcu_barrier()
    # the other half is allocated: relinked through page->pt_mm's lock, in softirq context
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == [page + LRU] and k.byte(page) == 0x01
    assert (k.cpus[0].bh_soft, k.cpus[0].bh_proc, k.locks) == (0, 0, {})


def test_seed_pte_free_defer_of_the_last_allocated_half_takes_the_page_off_the_list():
    k, mm = kernel("seed", checks=True)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = page_of(k, a)
    k.page_table_free(mm, a)
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == [page + LRU]
    k.pte_free_defer(mm, b)
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == [] and k.byte(page) == 0x28
    k.rcu_barrier()
    assert freed(k, page)


def test_seed_relink_rereads_the_byte_under_the_lock_and_frees_a_page_emptied_meanwhile():
    # __tlb_remove_table of B1 saw A0 allocated and went for page->pt_mm's lock; CPU 1
    # frees A0 and holds the lock meanwhile.  Once it has the lock, the XOR of P1 leaves
    # 0: no relink, the page is released.
    k, mm = kernel("seed", checks=True)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = page_of(k, a)
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, b)
    k.tlb_finish_mmu(tlb)
    k.rcu_grace_period()
    k.run_rcu_callback(0, k.ready_callbacks()[0])
    while k.position(0)[1:] != ("__tlb_remove_table", "spin_lock_bh(&mm->context.lock)"):
        assert k.step(0) is not BLOCKED
    k.start(1, k.v.page_table_free(mm=mm, table=a))
    while mm + CONTEXT_LOCK not in k.locks:
        assert k.step(1) is not BLOCKED
    assert k.step(0) is BLOCKED
    while k.busy(1):
        assert k.step(1) is not BLOCKED
    assert not freed(k, page) and k.byte(page) == 0x20
    while k.busy(0):
        assert k.step(0) is not BLOCKED
    assert freed(k, page) and lists.list_entries(k.mem, mm + PGTABLE_LIST) == [] and k.warnings == []


# -- both halves freed --------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v515", "v64", "seed", "v66", "v67"])
def test_freeing_both_tables_of_a_page_with_page_table_free_frees_the_page(version):
    k, mm = kernel(version, checks=True)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    pages = {page_of(k, a), page_of(k, b)}
    k.page_table_free(mm, b)
    k.page_table_free(mm, a)
    k.rcu_barrier()
    assert all(freed(k, p) for p in pages) and k.warnings == []
    assert lists.list_entries(k.mem, mm + PGTABLE_LIST) == []
