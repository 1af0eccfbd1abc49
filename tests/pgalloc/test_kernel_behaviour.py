"""Behaviour a kernel developer relies on, pinned by name and read from the bytes.

* ``TestSetPageXxx`` / ``TestClearPageXxx`` (``MemMap.set_flag``) return the OLD bit;
  v6.6's ``TestClearPageActive`` decides between ``call_rcu(pte_free_now)`` and an
  immediate free on it.
* The order of ``mm->context.pgtable_list`` after each free path, per version, read
  through the ``list_head`` bytes (``s390emu.lists.list_entries``): ``page_table_free``
  adds at the head, ``page_table_free_rcu`` at the tail (v5.15, v6.4, v6.6), so that
  ``page_table_alloc``, which looks at the first page only, hands out the free half of
  another page before it reaches the page whose other half is still pending; the seed
  does not list a page with a pending half and its ``__tlb_remove_table`` relists it at
  the head.
* How ``page_table_alloc`` treats each fragment byte the first listed page can hold:
  which half it takes (and the byte it leaves), or a new page.
* v6.6's ``pte_free_defer``: ``SetPageActive``, the page off ``pgtable_list`` and the
  deferred half never handed out again; the last half's free goes through RCU.

Every state is reached through the public API (``pgalloc.Kernel(version, checks=True)``,
``pgalloc.mm.mm_alloc``, ``page_table_alloc`` and the free paths), except the byte table,
which writes each byte value into a listed page's ``_refcount`` (``checks=False``: most
values break an invariant on purpose).
"""

from __future__ import annotations

import pytest

import pgalloc
from pgalloc import mm as MM
from s390emu import structs as S
from s390emu.lists import list_entries
from s390emu.machine import Machine
from s390emu.page import MemMap

LRU = S.page.fields["lru"]
PGTABLE_LIST = S.mm_struct.fields["context.pgtable_list"]
HALF = 2048
LISTING = ["v515", "v64", "seed", "v66"]       #: the versions with a pgtable_list


class State:
    """A kernel with one mm and two 4K page-table pages A and B, both halves of each
    allocated (``A0 A1 B0 B1``), so that no page is listed yet."""

    def __init__(self, version: str):
        self.k = k = pgalloc.Kernel(version, checks=True)
        self.mm = MM.mm_alloc(k)
        self.a0, self.a1, self.b0, self.b1 = (k.page_table_alloc(self.mm) for _ in range(4))
        self.A, self.B = self.page(self.a0), self.page(self.b0)
        assert (self.a1 - self.a0, self.b1 - self.b0) == (HALF, HALF)
        assert self.listed() == []

    def page(self, table: int) -> int:
        return self.k.mem_map.virt_to_page(table)

    def listed(self) -> list[str]:
        """``pgtable_list`` from its bytes, as page names (A, B, or the address)."""
        names = {self.A: "A", self.B: "B"}
        return [names.get(node - LRU, hex(node - LRU))
                for node in list_entries(self.k.mem, self.mm + PGTABLE_LIST)]

    def name(self, table: int) -> str:
        """``A0``, ``A1``, ``B0``, ``B1`` or ``new`` (a table in another page)."""
        return {self.a0: "A0", self.a1: "A1", self.b0: "B0", self.b1: "B1"}.get(table, "new")

    def freed(self, page: int) -> bool:
        """The page went back to the page allocator (``pgtable_pte_page_dtor`` ran)."""
        return not self.k.mem_map.has_type(page, S.PG_table)


# -- TestSetPageXxx / TestClearPageXxx --------------------------------------------------------

def test_set_flag_returns_the_old_bit_like_test_set_and_test_clear_page():
    m = Machine(8 << 20, ncpus=1)
    mm_ = MemMap(m.mem, m.mem_map.base)
    page = mm_.pfn_to_page(100)
    m.mem.write_u64(page, 0)
    assert mm_.set_flag(page, S.PG_active) is False            # TestSetPageActive: was clear
    assert mm_.set_flag(page, S.PG_active) is True             # and now set
    assert mm_.flags(page) == 1 << S.PG_active
    assert mm_.set_flag(page, S.PG_active, False) is True      # TestClearPageActive: was set
    assert mm_.set_flag(page, S.PG_active, False) is False     # and now clear
    assert mm_.flags(page) == 0


def test_set_flag_touches_only_its_bit():
    m = Machine(8 << 20, ncpus=1)
    page = m.mem_map.pfn_to_page(100)
    m.mem.write_u64(page, 0xFFFF_FFFF_FFFF_FFFF & ~(1 << S.PG_active))
    assert m.mem_map.set_flag(page, S.PG_active) is False
    assert m.mem_map.flags(page) == 0xFFFF_FFFF_FFFF_FFFF
    assert m.mem_map.set_flag(page, S.PG_head, False) is True
    assert m.mem_map.flags(page) == 0xFFFF_FFFF_FFFF_FFFF & ~(1 << S.PG_head)
    assert m.mem_map.test_flag(page, S.PG_active) and not m.mem_map.test_flag(page, S.PG_head)


# -- pgtable_list order after each free path ---------------------------------------------------

#: version, free path of B1 (after A1 was freed with page_table_free, listing A) ->
#: (the list and B's byte right after the path, the list once RCU is done, what the
#: next page_table_alloc returns)
LIST_ORDER = {
    ("v515", "page_table_free"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("v515", "page_table_free_rcu"): (["A", "B"], 0x21, ["A", "B"], "A1"),
    ("v515", "pte_free_defer"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("v64", "page_table_free"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("v64", "page_table_free_rcu"): (["A", "B"], 0x21, ["A", "B"], "A1"),
    ("v64", "pte_free_defer"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("seed", "page_table_free"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("seed", "page_table_free_rcu"): (["A"], 0x21, ["B", "A"], "B1"),
    ("seed", "pte_free_defer"): (["A"], 0x29, ["B", "A"], "B1"),
    ("v66", "page_table_free"): (["B", "A"], 0x01, ["B", "A"], "B1"),
    ("v66", "page_table_free_rcu"): (["A", "B"], 0x21, ["A", "B"], "A1"),
    ("v66", "pte_free_defer"): (["A"], 0x01, ["A"], "A1"),
}


def _free_b1(s: State, path: str) -> int | None:
    """Free B1 by ``path``; the mmu_gather it opened (page_table_free_rcu), else None."""
    if path == "page_table_free":
        s.k.page_table_free(s.mm, s.b1)
    elif path == "pte_free_defer":
        s.k.pte_free_defer(s.mm, s.b1)
    else:
        tlb = s.k.tlb_gather_mmu(s.mm)
        s.k.page_table_free_rcu(tlb, s.b1)
        return tlb
    return None


@pytest.mark.parametrize("version,path", list(LIST_ORDER))
def test_pgtable_list_order_after_each_free_path(version, path):
    after, byte, settled, handed_out = LIST_ORDER[version, path]
    s = State(version)
    s.k.page_table_free(s.mm, s.a1)
    assert (s.listed(), s.k.byte(s.A)) == (["A"], 0x01)
    tlb = _free_b1(s, path)
    assert (s.listed(), s.k.byte(s.B)) == (after, byte)
    if tlb is not None:
        s.k.tlb_finish_mmu(tlb)
    s.k.rcu_barrier()
    assert s.listed() == settled
    assert s.name(s.k.page_table_alloc(s.mm)) == handed_out


@pytest.mark.parametrize("version", ["v515", "v64", "v66"])
def test_a_half_pending_rcu_is_behind_another_pages_free_half(version):
    # page_table_free_rcu lists at the tail, so while B1 is still pending (before the
    # batch is even flushed) the allocator takes A1, not a new page.
    s = State(version)
    s.k.page_table_free(s.mm, s.a1)
    tlb = s.k.tlb_gather_mmu(s.mm)
    s.k.page_table_free_rcu(tlb, s.b1)
    assert s.listed() == ["A", "B"]
    assert s.name(s.k.page_table_alloc(s.mm)) == "A1"
    assert s.listed() == ["B"] and s.k.byte(s.B) == 0x21
    # B's only free half is pending: the next table is a new page, listed at the head.
    new = s.k.page_table_alloc(s.mm)
    assert s.name(new) == "new" and s.k.byte(s.B) == 0x21
    assert s.listed() == [hex(s.page(new)), "B"]


@pytest.mark.parametrize("version", ["v515", "v64", "v66"])
def test_page_table_free_lists_at_the_head(version):
    # Both A1 and B1 free with page_table_free: the last freed comes first.
    s = State(version)
    s.k.page_table_free(s.mm, s.b1)
    s.k.page_table_free(s.mm, s.a1)
    assert s.listed() == ["A", "B"]
    assert [s.name(s.k.page_table_alloc(s.mm)) for _ in range(3)] == ["A1", "B1", "new"]


# -- page_table_alloc and each fragment byte of the first listed page ---------------------------

#: v5.15 / v6.4 / v6.6 ("PP AA", A(h) and P(h) exclusive): byte -> (table taken, byte left)
PPAA = {
    0x00: ("lower", 0x01), 0x01: ("upper", 0x03), 0x02: ("lower", 0x03), 0x03: ("new", 0x03),
    0x10: ("upper", 0x12), 0x20: ("lower", 0x21), 0x30: ("new", 0x30),
    0x12: ("new", 0x12), 0x21: ("new", 0x21),
}
#: the seed ("PPHHAA": half h free, A, P or P|H): byte -> (taken, byte left, warnings);
#: it takes the upper half iff A0 is set, whatever else the byte says.
PENDING, MASK = "WARN_ON_ONCE(mask & ~0x03U)", "WARN_ON_ONCE(mask == 0x00U || mask == 0x03U)"
SEED = {
    0x00: ("lower", 0x01, {MASK}), 0x01: ("upper", 0x03, set()),
    0x02: ("lower", 0x03, set()), 0x03: ("upper", 0x01, {MASK}),
    0x10: ("lower", 0x11, {PENDING}), 0x14: ("lower", 0x15, {PENDING}),
    0x20: ("lower", 0x21, {PENDING}), 0x28: ("lower", 0x29, {PENDING}),
    0x30: ("lower", 0x31, {PENDING}), 0x34: ("lower", 0x35, {PENDING}),
    0x38: ("lower", 0x39, {PENDING}), 0x3C: ("lower", 0x3D, {PENDING}),
    0x12: ("lower", 0x13, {PENDING}), 0x16: ("lower", 0x17, {PENDING}),
    0x21: ("upper", 0x23, {PENDING}), 0x29: ("upper", 0x2B, {PENDING}),
}
BYTE_CASES = ([(v, b) for v in ("v515", "v64", "v66") for b in PPAA]
              + [("seed", b) for b in SEED])


@pytest.mark.parametrize("version,byte", BYTE_CASES, ids=[f"{v}-{b:#04x}" for v, b in BYTE_CASES])
def test_page_table_alloc_per_fragment_byte_of_the_first_listed_page(version, byte):
    k = pgalloc.Kernel(version, checks=False)
    mm = MM.mm_alloc(k)
    first = k.page_table_alloc(mm)                 # a new page, A0, listed
    page = k.mem_map.virt_to_page(first)
    head = mm + PGTABLE_LIST
    assert list_entries(k.mem, head) == [page + LRU]
    k.mem_map.set_refcount(page, byte << 24 | (k.mem_map.refcount(page) & 0xFF_FFFF))
    table = k.page_table_alloc(mm)
    if version == "seed":
        taken, left, warnings = SEED[byte]
        assert {w.name for w in k.warnings} == warnings
    else:
        taken, left = PPAA[byte]
        assert k.warnings == []
    got = {first: "lower", first + HALF: "upper"}.get(table, "new")
    assert (got, k.byte(page)) == (taken, left)
    if taken == "new":     # the new page goes in front; the first page stays listed
        assert list_entries(k.mem, head) == [k.mem_map.virt_to_page(table) + LRU, page + LRU]
    else:
        assert list_entries(k.mem, head) == []


def test_the_ppaa_table_covers_every_byte_the_layout_can_hold():
    states = [(h0, h1) for h0 in (0, 0x01, 0x10) for h1 in (0, 0x02, 0x20)]
    assert sorted(PPAA) == sorted(h0 | h1 for h0, h1 in states)
    seed = [(h0, h1) for h0 in (0, 0x01, 0x10, 0x14) for h1 in (0, 0x02, 0x20, 0x28)]
    assert sorted(SEED) == sorted(h0 | h1 for h0, h1 in seed)


# -- v6.6 pte_free_defer: SetPageActive, never relisted, freed through RCU ----------------------

def test_v66_pte_free_defer_sets_page_active_and_takes_the_page_off_the_list():
    s = State("v66")
    s.k.page_table_free(s.mm, s.a1)            # A listed with a free half
    s.k.pte_free_defer(s.mm, s.b1)
    assert s.k.mem_map.test_flag(s.B, S.PG_active)
    assert not s.k.mem_map.test_flag(s.A, S.PG_active)
    assert s.k.byte(s.B) == 0x01 and s.listed() == ["A"]
    # B's lru is an empty list (list_del_init), not poison: list_empty says "unlisted".
    assert s.k.mem.read_u64(s.B + LRU) == s.B + LRU


def test_v66_a_deferred_half_is_never_handed_out_again():
    s = State("v66")
    s.k.pte_free_defer(s.mm, s.b1)
    assert s.listed() == []
    s.k.rcu_barrier()
    tables = [s.k.page_table_alloc(s.mm) for _ in range(4)]
    assert s.b1 not in tables and [s.name(t) for t in tables] == ["new"] * 4
    assert s.k.byte(s.B) == 0x01 and s.k.mem_map.test_flag(s.B, S.PG_active)
    assert "B" not in s.listed()


def test_v66_freeing_the_other_half_of_a_deferred_page_goes_through_rcu():
    s = State("v66")
    s.k.pte_free_defer(s.mm, s.b1)
    assert s.k.rcu == []                        # nothing queued while B0 is in use
    s.k.page_table_free(s.mm, s.b0)
    # TestClearPageActive saw the bit set: call_rcu(pte_free_now), the page not yet freed.
    assert s.k.byte(s.B) == 0x00 and not s.k.mem_map.test_flag(s.B, S.PG_active)
    assert [r[1] for r in s.k.rcu] == ["pte_free_now"] and not s.freed(s.B)
    s.k.rcu_barrier()
    assert s.freed(s.B) and s.k.rcu == []


def test_v66_freeing_both_halves_of_a_page_never_deferred_frees_it_at_once():
    s = State("v66")
    s.k.page_table_free(s.mm, s.b1)
    s.k.page_table_free(s.mm, s.b0)
    assert s.freed(s.B) and s.k.rcu == [] and s.listed() == []


def test_v66_deferring_the_last_half_queues_pte_free_now():
    s = State("v66")
    s.k.page_table_free(s.mm, s.b0)
    assert s.listed() == ["B"]
    s.k.pte_free_defer(s.mm, s.b1)
    assert s.listed() == [] and [r[1] for r in s.k.rcu] == ["pte_free_now"] and not s.freed(s.B)
    s.k.rcu_barrier()
    assert s.freed(s.B)
