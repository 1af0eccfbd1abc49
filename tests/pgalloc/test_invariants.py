"""Every invariant ``pgalloc.checks`` raises, by the smallest violating state built
directly (a byte, a list link, a record), expected BY NAME, beside its nearest clean
neighbour.  The four survivors of issue 17 live in ``test_checks_edges.py``; this file
is the rest (docs/testing.md lists which check each test pins).

The hooks are called as the kernel calls them, with ``k.cur`` set to a one-attribute
stand-in of the running frame where the hook reads it (its ``mm``): the hooks read
nothing else of a frame, and building the frame by running a real path would test the
path, not the check.

Over 500 lines on purpose: one section per invariant, in ``checks.py``'s numbering, so
that an invariant's violating states and clean neighbours are read in one place.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

import pgalloc
from pgalloc import checks as C
from pgalloc import mm as MM
from pgalloc.errors import BadTable, Violation
from s390emu import lists
from s390emu import structs as S

LRU = S.page.fields["lru"]
RCU = S.page.fields["rcu_head"]
LOCK = S.mm_struct.fields["context.lock"]
PGT = S.mm_struct.fields["context.pgtable_list"]

#: the legal fragment bytes, worked out by hand from pgalloc-versions.md section 5:
#: two halves, each free (0), allocated (A), pending (P); the seed adds P+H (pending by rcu_head)
LEGAL_NO_H = {0x00, 0x01, 0x02, 0x03, 0x10, 0x20, 0x30, 0x12, 0x21}
_SEED_HALF = (0x00, 0x01, 0x10, 0x14)          # free, A, P, P+H of half 0 (shift 1 for half 1)
LEGAL_SEED = {a | b << 1 for a in _SEED_HALF for b in _SEED_HALF}


def kernel(version="v64", pgste=False):
    k = pgalloc.Kernel(version, checks=True)
    return k, MM.mm_alloc(k, pgste=pgste)


def running(k, mm=0, func="f", pc="label", **more):
    """Make ``k`` look as if a frame of ``mm`` were running (what the hooks read)."""
    fr = SimpleNamespace(FUNC=func, pc=pc, mm=mm, **more)
    k.cur = (0, "process", fr)
    return fr


def lock(k, mm):
    running(k, mm)
    assert k.spin_lock(mm + LOCK, True)


def set_byte(k, page, byte):
    k.mem_map.set_refcount(page, byte << 24 | (k.mem_map.refcount(page) & 0xFF_FFFF))


def raises(name, fn, *args):
    """``fn(*args)`` raises the Violation ``name``; when ``args[0]`` is the kernel, the
    violation names the step running (``running``'s) or, outside any step, none
    (``after_step`` names the step it is given instead: its tests check that)."""
    with pytest.raises(Violation) as e:
        fn(*args)
    assert e.value.name == name, e.value
    k = args[0] if args else None
    if isinstance(k, pgalloc.Kernel) and fn is not C.after_step:
        assert e.value.step == ("CPU0 process f: label" if k.cur else ""), e.value
    return e.value


# -- bit_legality (1) -------------------------------------------------------------------------

@pytest.mark.parametrize("version,legal", [("v64", LEGAL_NO_H), ("v515", LEGAL_NO_H), ("v66", LEGAL_NO_H),
                                           ("seed", LEGAL_SEED), ("v67", {0x00})])
def test_legal_byte_accepts_exactly_the_legal_bytes_of_each_version(version, legal):
    v = pgalloc.Kernel(version).v
    assert {b for b in range(256) if C.legal_byte(v, b)} == legal


def test_fmt_names_every_bit():
    assert C.fmt(0xFF) == "0xff [A0 A1 H0 H1 P0 P1 b6 b7]"
    assert C.fmt(0) == "0x00 [-]"


def test_an_illegal_byte_on_a_page_table_page_is_bit_legality_and_its_neighbour_is_clean():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    set_byte(k, page, 0x11)                                 # A0 and P0
    found = C.check_all(k)
    assert [(v.name, v.page, v.message) for v in found] == [("bit_legality", page, "byte 0x11 [A0 P0]")]
    set_byte(k, page, 0x01)
    assert C.check_all(k) == []


def test_a_byte_with_bit_6_or_7_is_illegal():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    set_byte(k, page, 0x41)
    assert "bit_legality" in [v.name for v in C.check_all(k)]


def test_v67_page_table_pages_must_keep_a_zero_byte():
    k, mm = kernel("v67")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    assert C.check_all(k) == []
    set_byte(k, page, 0x01)
    assert [v.name for v in C.check_all(k)] == ["bit_legality"]


def test_an_xor_that_would_leave_an_illegal_byte_is_bit_legality():
    # Each half's transition is one the seed knows (A -> P+H) but v6.4 has no H bits; and
    # bits 6-7 belong to no half, so only the resulting byte can refuse them.
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lock(k, mm)
    v = raises("bit_legality", C.before_xor, k, page, 0x01000001, 0x15 << 24)
    assert v.message == "byte 0x01 [A0] -> 0x14 [H0 P0]"
    raises("bit_legality", C.before_xor, k, page, 0x01000001, 0x40 << 24)
    C.before_xor(k, page, 0x01000001, 0x11 << 24)


# -- xor_precondition (2) -----------------------------------------------------------------------

def _xor_ok(ob, tb, version="v64"):
    k, mm = kernel(version)
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lock(k, mm)
    try:
        C.before_xor(k, page, ob << 24 | 1, tb << 24)
    except Violation as v:
        return v.name
    return "ok"


@pytest.mark.parametrize("ob,tb,want", [
    (0x00, 0x01, "ok"), (0x02, 0x01, "ok"), (0x01, 0x01, "ok"),        # A: set on a free half, clear an allocated one
    (0x10, 0x01, "xor_precondition"),                                  # A on a pending half
    (0x01, 0x11, "ok"), (0x00, 0x11, "xor_precondition"),              # A|P: allocated -> pending only
    (0x11, 0x11, "xor_precondition"),
    (0x10, 0x10, "ok"), (0x00, 0x10, "xor_precondition"),              # P: clear a pending half only
    (0x02, 0x20, "xor_precondition"), (0x20, 0x20, "ok"),
    (0x00, 0x03, "ok"),                                                # both A bits at once (a new page)
    (0x00, 0x05, "xor_precondition"),                                  # A|H is no transition
])
def test_each_xor_transition_of_a_half_is_allowed_only_from_its_own_states(ob, tb, want):
    assert _xor_ok(ob, tb) == want


@pytest.mark.parametrize("ob,tb,want", [
    (0x14, 0x04, "ok"), (0x10, 0x04, "xor_precondition"),              # H: clear a set H only
    (0x01, 0x15, "ok"), (0x05, 0x15, "xor_precondition"),              # A|H|P: allocated -> pending by rcu_head
    (0x11, 0x15, "xor_precondition"), (0x00, 0x15, "xor_precondition"),
    (0x02, 0x2A, "ok"),                                                # half 1 likewise, half 0 untouched
])
def test_the_seed_h_transitions(ob, tb, want):
    assert _xor_ok(ob, tb, "seed") == want


def test_an_xor_touching_the_low_refcount_bits_is_xor_precondition():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lock(k, mm)
    v = raises("xor_precondition", C.before_xor, k, page, 0x01000001, 0x01000000 | 1)
    assert "low refcount bits" in v.message
    C.before_xor(k, page, 0x01000001, 0x01000000)


def test_any_xor_in_a_version_without_fragments_is_xor_precondition():
    k, mm = kernel("v67")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    running(k, mm)
    v = raises("xor_precondition", C.before_xor, k, page, 1, 0x01000000)
    assert "v67, which has no fragment byte" in v.message


def test_the_message_names_the_half_and_both_bytes():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lock(k, mm)
    v = raises("xor_precondition", C.before_xor, k, page, 0x01000001, 0x20 << 24)
    assert v.message == "XOR 0x20 on half 1 of byte 0x01 [A0] would give 0x21 [A0 P1]"
    assert v.step == "CPU0 process f: label"


# -- locking (10), the A bits ----------------------------------------------------------------

def test_a_bits_of_a_fresh_page_may_change_without_the_lock():
    # old byte 0: nobody else can see the page yet.
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    running(k, mm)
    C.before_xor(k, page, 1, 0x01 << 24)


def test_both_a_bits_at_once_need_no_lock_but_one_does():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    running(k, mm)
    C.before_xor(k, page, 0x03000001, 0x03 << 24)          # the whole page, not a shared half
    raises("locking", C.before_xor, k, page, 0x01000001, 0x01 << 24)


def test_an_a_bit_xor_outside_any_frame_is_not_a_locking_violation():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    C.before_xor(k, page, 0x01000001, 0x01 << 24)          # no k.cur: the test's own setup


def test_an_a_bit_xor_in_a_frame_without_an_mm_is_a_locking_violation():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    running(k, 0)
    raises("locking", C.before_xor, k, page, 0x01000001, 0x01 << 24)


# -- list_operation (5) and the list lock ------------------------------------------------------

def _half_listed(version="v64"):
    """One page, lower half allocated, listed on its mm's pgtable_list."""
    k, mm = kernel(version)
    t0 = k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    assert C.listed_pages(k) == {page: mm}
    running(k, mm)                                           # the hooks run inside a step
    return k, mm, t0, page


def test_list_add_of_a_listed_page_is_list_operation():
    k, mm, t0, page = _half_listed()
    lock(k, mm)
    v = raises("list_operation", C.before_list_op, k, page, "list_add_tail")
    assert v.message == "list_add_tail of a page already on the list (byte 0x01 [A0])"
    C.before_list_op(k, page, "list_del")


def test_list_del_of_an_unlisted_page_is_list_operation():
    k, mm, t0, page = _half_listed()
    lock(k, mm)
    lists.list_del(k.mem, page + LRU)
    raises("list_operation", C.before_list_op, k, page, "list_del")
    C.before_list_op(k, page, "list_add")


def test_a_list_op_without_the_lock_is_locking():
    k, mm, t0, page = _half_listed()
    running(k, mm)
    v = raises("locking", C.before_list_op, k, page, "list_del")
    assert v.message == f"list_del on mm {mm:#x}'s pgtable_list without its context.lock"


def test_a_list_op_outside_an_mm_frame_is_not_checked_against_a_list():
    k, mm, t0, page = _half_listed()
    running(k, 0)
    C.before_list_op(k, page, "list_add")


def test_a_list_op_on_a_page_whose_rcu_head_is_queued_is_list_operation():
    k, mm, t0, page = _half_listed()
    k.rcu.append((page + RCU, "pte_free_now", (), False))
    raises("list_operation", C.before_list_op, k, page, "list_del")


# -- rcu_head (6) -------------------------------------------------------------------------------

def test_call_rcu_on_a_queued_head_is_rcu_head():
    k, mm, t0, page = _half_listed()
    lists.list_del(k.mem, page + LRU)
    running(k, mm)
    C.before_call_rcu(k, page + RCU, "pte_free_now")
    k.rcu.append((page + RCU, "pte_free_now", (), False))
    v = raises("rcu_head", C.before_call_rcu, k, page + RCU, "pte_free_now")
    assert (v.page, v.message, v.step) == (page, "call_rcu(pte_free_now) on a rcu_head that is already queued",
                                           "CPU0 process f: label")


def test_call_rcu_on_a_listed_page_is_rcu_head():
    k, mm, t0, page = _half_listed()
    running(k, mm)
    v = raises("rcu_head", C.before_call_rcu, k, page + RCU, "pte_free_now")
    assert (v.page, v.message, v.step) == (page, "call_rcu(pte_free_now) while the page is on pgtable_list "
                                           "(lru overlays rcu_head)", "CPU0 process f: label")


def test_a_set_h_bit_without_a_queued_callback_is_rcu_head():
    k, mm = kernel("seed")
    t0, t1 = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    set_byte(k, page, 0x14 | 0x02)                          # half 0 pending by rcu_head, half 1 allocated
    assert [v.name for v in C.check_all(k)] == ["rcu_head"]
    k.rcu.append((page + RCU, "pte_free_now0", (), False))
    assert C.check_all(k) == []


# -- pgste_page (3) -----------------------------------------------------------------------------

def test_a_pgste_table_page_with_one_half_is_pgste_page():
    k, mm = kernel(pgste=True)
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    assert (k.byte(page), C.check_all(k)) == (0x03, [])
    set_byte(k, page, 0x01)
    found = C.check_all(k)
    assert [(v.name, v.message) for v in found] == [("pgste_page", "PGSTE table page has byte 0x01 [A0]")]


def test_a_listed_pgste_table_page_is_pgste_page():
    k, mm = kernel(pgste=True)
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lists.list_add(k.mem, page + LRU, mm + PGT)
    assert [v.message for v in C.check_all(k)] == ["PGSTE table page has byte 0x03 [A0 A1], listed"]


# -- list_membership (4), each version's RULES -------------------------------------------------

def test_a_full_page_on_the_list_is_list_membership():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x03)
    assert [(v.name, v.message) for v in C.check_all(k)] == [("list_membership", "listed with byte 0x03 [A0 A1]")]


def test_a_listed_page_with_nothing_free_or_pending_is_list_membership():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x00)
    assert [v.name for v in C.check_all(k)] == ["list_membership"]
    set_byte(k, page, 0x10)                                  # a pending half may stay listed (v6.4)
    assert C.check_all(k) == []


def test_list_membership_is_not_judged_while_a_lock_is_held():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x03)
    lock(k, mm)
    assert C.check_all(k) == []


@pytest.mark.parametrize("byte,listed_ok", [(b, b in (0x01, 0x02)) for b in sorted(LEGAL_SEED)])
def test_the_seed_lists_a_page_exactly_when_one_half_is_allocated_and_nothing_pends(byte, listed_ok):
    k, mm = kernel("seed")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    k.owner[k.mem_map.page_address(page) + 0x800] = mm
    if page + RCU not in C.queued_heads(k):
        k.rcu.append((page + RCU, "pte_free_now", (), False))  # keep rcu_head out of the picture
    set_byte(k, page, byte)
    lists.list_del_init(k.mem, page + LRU) if C.listed_pages(k) else None
    unlisted = [v.message for v in C.check_all(k) if v.name == "list_membership"]
    assert unlisted == ([f"not listed although byte is {C.fmt(byte)} (one half free)"] if listed_ok else [])
    lists.list_add(k.mem, page + LRU, mm + PGT)
    listed = [v.message for v in C.check_all(k) if v.name == "list_membership"]
    assert listed == ([] if listed_ok else [f"listed with byte {C.fmt(byte)}"])


def test_v66_a_listed_page_active_page_is_list_membership_unless_its_frame_runs():
    k, mm, t0, page = _half_listed("v66")
    k.mem_map.set_flag(page, S.PG_active, True)
    assert [v.message for v in C.check_all(k)] == ["listed with byte 0x01 [A0] and PG_active"]
    k.cpus[0].proc.append(SimpleNamespace(page=page))
    assert C.check_all(k) == []


def test_v67_no_page_may_be_listed():
    k, mm = kernel("v67")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    assert C.check_all(k) == []


# -- double_allocation / allocation_safety (7), v66's extra check -----------------------------

def _after_alloc(k, table):
    """``after_alloc`` as ``page_table_alloc`` of the kernel's one mm returning ``table``."""
    running(k)
    C.after_alloc(k, SimpleNamespace(result=table, mm=C.live_mms(k)[0]))


def test_a_table_returned_twice_is_double_allocation():
    k, mm, t0, page = _half_listed()
    v = raises("double_allocation", _after_alloc, k, t0)
    assert v.message == f"page_table_alloc returned {t0:#x}, already allocated to mm {mm:#x} (byte 0x01 [A0])"
    del k.owner[t0]
    _after_alloc(k, t0)


def test_a_misaligned_table_is_allocation_safety():
    k, mm, t0, page = _half_listed()
    del k.owner[t0]
    v = raises("allocation_safety", _after_alloc, k, t0 + 0x400)
    assert v.message == f"page_table_alloc returned {t0 + 0x400:#x}: misaligned or not a page-table page"
    _after_alloc(k, t0 + 0x800)                             # the other 2K half is aligned


def test_v67_tables_must_be_4k_aligned():
    k, mm = kernel("v67")
    t = k.page_table_alloc(mm)
    del k.owner[t]
    v = raises("allocation_safety", _after_alloc, k, t + 0x800)
    assert v.message == f"page_table_alloc returned {t + 0x800:#x}: misaligned or not a page-table page"
    _after_alloc(k, t)


def test_a_table_outside_a_page_table_page_is_allocation_safety():
    k, mm = kernel()
    frame = k.alloc_page()
    raises("allocation_safety", _after_alloc, k, frame)


def test_a_table_with_a_valid_pte_is_allocation_safety():
    k, mm, t0, page = _half_listed()
    del k.owner[t0]
    k.mem.write_u64(t0 + 8 * 255, 0)
    v = raises("allocation_safety", _after_alloc, k, t0)
    assert "not all _PAGE_INVALID" in v.message


def test_a_table_of_a_pgste_mm_with_stale_pgstes_is_allocation_safety():
    k, mm = kernel("v67", pgste=True)
    t = k.page_table_alloc(mm)
    del k.owner[t]
    _after_alloc(k, t)                                       # page_table_alloc zeroed them
    k.mem.write_u64(t + 0x800 + 8 * 7, 0x0080000000000000)   # a PCL bit left in PGSTE 7
    v = raises("allocation_safety", _after_alloc, k, t)
    assert v.message == f"page_table_alloc returned {t:#x} to a PGSTE mm whose PGSTEs (upper 2K) are not all zero"


def test_v66_a_half_of_a_page_active_page_whose_other_half_is_gone_is_allocation_safety():
    k, mm = kernel("v66")
    t0, t1 = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    del k.owner[t1]
    k.mem_map.set_flag(page, S.PG_active, True)
    _after_alloc(k, t1)                                     # the other half (t0) is still allocated
    set_byte(k, page, 0x02)
    v = raises("allocation_safety", _after_alloc, k, t1)
    assert "PageActive page whose deferred half is already freed" in v.message
    k.mem_map.set_flag(page, S.PG_active, False)
    _after_alloc(k, t1)


# -- page_free / use_after_free (8) ---------------------------------------------------------------

def _lone_page(version="v64"):
    """A page-table page whose only table was freed by hand: byte 0, _refcount 1, unlisted."""
    k, mm, t0, page = _half_listed(version)
    lists.list_del_init(k.mem, page + LRU)
    set_byte(k, page, 0)
    return k, mm, page


def test_freeing_a_clean_last_reference_is_fine():
    k, mm, page = _lone_page()
    C.before_page_free(k, page, 0)


def test_freeing_a_page_with_fragment_bits_is_page_free():
    k, mm, page = _lone_page()
    set_byte(k, page, 0x10)
    k.cur = None
    v = raises("page_free", C.before_page_free, k, page, 0)
    assert v.message == "page freed with _refcount 0x10000001 (byte 0x10 [P0])"
    assert v.step == "" and str(v) == f"[page_free] page {page:#x}: {v.message}"     # raised outside any step
    set_byte(k, page, 0x01)                                  # the lowest fragment bit counts too
    raises("page_free", C.before_page_free, k, page, 0)


def test_freeing_a_listed_page_is_page_free():
    k, mm, page = _lone_page()
    lists.list_add(k.mem, page + LRU, mm + PGT)
    assert raises("page_free", C.before_page_free, k, page, 0).message == "page freed while still on a pgtable_list"


def test_freeing_a_page_whose_rcu_head_is_queued_is_page_free():
    k, mm, page = _lone_page()
    k.rcu.append((page + RCU, "pte_free_now", (), False))
    assert raises("page_free", C.before_page_free, k, page, 0).message == "page freed while its rcu_head is queued"


def test_freeing_a_compound_page_with_another_order_is_page_free():
    # v6.7's CRSTs are order-2 compound pages (PG_head, the folio order in page[1]):
    # free_pages_prepare's VM_BUG_ON_PAGE(compound && compound_order(page) != order).
    from pgalloc.crst import CRST_ALLOC_ORDER, crst_table_alloc, is_crst_page

    k, mm = kernel("v67")
    page = k.mem_map.virt_to_page(crst_table_alloc(k, mm))
    assert is_crst_page(k, page)
    v = raises("page_free", C.before_page_free, k, page, 0)
    assert v.message == "compound page of order 2 freed with order 0"
    C.before_page_free(k, page, CRST_ALLOC_ORDER)
    free_before = k.frames.nr_free()
    k.free_page(page, CRST_ALLOC_ORDER)             # the folio order goes with the head
    assert not k.mem_map.test_flag(page, S.PG_head) and not is_crst_page(k, page)
    assert k.frames.nr_free() == free_before + 4


def test_unheld_frames_are_the_frames_in_use_that_no_table_or_mm_holds():
    k, mm = kernel("v64")
    before = C.unheld_frames(k, [mm])
    pgd = k.mem.read_u64(mm + S.mm_struct.fields["pgd"])
    assert mm not in before and not {pgd + i * 0x1000 for i in range(4)} & before
    lost = k.alloc_page(2)                                  # allocated, and then held by nothing
    assert C.unheld_frames(k, [mm]) == before | {lost + i * 0x1000 for i in range(4)}
    k.free_page(k.mem_map.virt_to_page(lost), 2)
    assert C.unheld_frames(k, [mm]) == before
    assert mm in C.unheld_frames(k, [])                     # an mm nobody names holds nothing


def test_freeing_a_page_active_page_is_page_free():
    k, mm, page = _lone_page("v66")
    k.mem_map.set_flag(page, S.PG_active, True)
    assert raises("page_free", C.before_page_free, k, page, 0).message == "page freed with PG_active set"


def test_freeing_a_page_a_gather_still_holds_a_table_of_is_page_free():
    k, mm, page = _lone_page()
    base = k.mem_map.page_address(page)
    k.gathers[1] = (mm, [base | 1], False)
    assert raises("page_free", C.before_page_free, k, page, 0).message == (
        f"page freed while {base | 1:#x} still waits in an mmu_gather batch")
    k.gathers[1] = (mm, [base + 0x1000], False)             # the next page's table
    C.before_page_free(k, page, 0)


def test_freeing_a_page_an_rcu_batch_still_holds_a_table_of_is_page_free():
    k, mm, page = _lone_page()
    base = k.mem_map.page_address(page)
    k.rcu.append((0, "tlb_remove_table_rcu", (base | 2,), False))
    raises("page_free", C.before_page_free, k, page, 0)


def test_freeing_a_page_a_running_batch_has_not_reached_is_page_free():
    k, mm, page = _lone_page()
    base = k.mem_map.page_address(page)
    k.cpus[1].soft.append(SimpleNamespace(FUNC="tlb_remove_table_rcu", batch=[base | 1, base | 2], i=0))
    raises("page_free", C.before_page_free, k, page, 0)
    k.cpus[1].soft[-1].i = 1                                # the batch is past both: nothing pends
    C.before_page_free(k, page, 0)


def test_not_the_last_reference_is_not_checked_further():
    k, mm, page = _lone_page()
    lists.list_add(k.mem, page + LRU, mm + PGT)
    k.mem_map.set_refcount(page, 2)
    C.before_page_free(k, page, 0)
    k.mem_map.set_refcount(page, 1)
    C.before_page_free(k, page, 1)                          # a higher order: not a page table's put


def test_a_double_free_is_page_free():
    k, mm, page = _lone_page()
    k.mem_map.set_page_type(page, S.PAGE_TYPE_NONE)
    k.free_page(page)
    assert raises("page_free", C.before_page_free, k, page, 0).message == "double free: the page is already free"


def test_an_atomic_op_on_a_free_page_is_use_after_free():
    k, mm, page = _lone_page()
    k.mem_map.set_page_type(page, S.PAGE_TYPE_NONE)
    k.free_page(page)
    raises("use_after_free", k.atomic_xor_bits, page, 0x01 << 24)


# -- mm_use_after_free (11) ---------------------------------------------------------------------

def test_spinning_on_the_lock_of_a_freed_mm_is_mm_use_after_free():
    k, mm = kernel()
    C.lock_of_freed_mm(k, mm + LOCK)
    k.mem.write_u32(mm + S.mm_struct.fields["mm_count"], 0x6B6B6B6B)
    running(k, mm)
    v = raises("mm_use_after_free", C.lock_of_freed_mm, k, mm + LOCK)
    assert v.page == 0 and v.message == (f"spin_lock of {mm + LOCK:#x} in mm {mm:#x}, which has been freed "
                                         "(mm_count 0x6b6b6b6b)")
    k.mem.write_u32(mm + S.mm_struct.fields["mm_count"], 0)
    raises("mm_use_after_free", C.lock_of_freed_mm, k, mm + LOCK)


# -- tag_consistency (12) ----------------------------------------------------------------------

@pytest.mark.parametrize("tag,ok", [(0, False), (1, True), (2, False), (3, False)])
def test_the_tag_of_a_lower_half_is_1(tag, ok):
    k, mm, t0, page = _half_listed()
    call = (lambda: C.tag_check(k, t0 | tag, page))
    if ok:
        call()
    else:
        raises("tag_consistency", call)


def test_the_tag_of_an_upper_half_is_2_and_3_means_the_whole_pgste_page():
    k, mm = kernel()
    t0, t1 = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    C.tag_check(k, t1 | 2, page)
    raises("tag_consistency", C.tag_check, k, t1 | 1, page)
    C.tag_check(k, t0 | 3, page)                            # byte 0x03, 4K aligned
    raises("tag_consistency", C.tag_check, k, t1 | 3, page)
    set_byte(k, page, 0x01)
    raises("tag_consistency", C.tag_check, k, t0 | 3, page)


def test_tag_0_is_a_crst_table_16k_aligned_off_any_page_table_page():
    k, mm = kernel()
    crst = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"]) & ~0xFFF
    page = k.mem_map.virt_to_page(crst)
    C.tag_check(k, crst, page)
    raises("tag_consistency", C.tag_check, k, crst + 0x1000, page)
    t0 = k.page_table_alloc(mm)
    raises("tag_consistency", C.tag_check, k, t0, k.mem_map.virt_to_page(t0))


def test_v67_tags_are_always_0():
    k, mm = kernel("v67")
    t = k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t)
    C.tag_check(k, t, page)
    raises("tag_consistency", C.tag_check, k, t | 1, page)
    raises("tag_consistency", C.tag_check, k, t + 0x800, page)


# -- after_step: the per-page checks of the page a step touched ------------------------------

def test_after_step_raises_the_first_violation_of_the_page_with_the_step():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x11)
    fr = SimpleNamespace(FUNC="page_table_free", page=page)
    with pytest.raises(Violation) as e:
        C.after_step(k, 0, "process", fr, "here")
    assert (e.value.name, e.value.step) == ("bit_legality", "CPU0 process page_table_free: here")
    assert str(e.value) == f"[bit_legality] page {page:#x}: byte 0x11 [A0 P0] (after CPU0 process page_table_free: here)"
    set_byte(k, page, 0x01)
    C.after_step(k, 0, "process", fr, "here")


def test_after_step_skips_list_membership_under_a_lock_and_pages_that_are_no_page_tables():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x03)
    fr = SimpleNamespace(FUNC="f", page=page)
    lock(k, mm)
    C.after_step(k, 0, "process", fr, "here")
    k.spin_unlock(mm + LOCK, True)
    raises("list_membership", C.after_step, k, 0, "process", fr, "here")
    C.after_step(k, 0, "process", SimpleNamespace(FUNC="f", page=0), "here")
    C.after_step(k, 0, "process", SimpleNamespace(FUNC="f", page=k.mem_map.virt_to_page(k.alloc_page())), "x")


def test_after_step_checks_the_page_the_step_touched_too():
    k, mm, t0, page = _half_listed()
    set_byte(k, page, 0x11)
    k._touch = (page, 0x01)
    raises("bit_legality", C.after_step, k, 0, "process", SimpleNamespace(FUNC="f", page=0), "here")


# -- validate_free: BadTable for bad input -----------------------------------------------------

def test_bad_frees_are_bad_table_with_their_reason():
    k, mm, t0, page = _half_listed()
    other = MM.mm_alloc(k)
    cases = [(t0 + 0x100, "misaligned page table"),
             (t0 + 0x800, "is not allocated (byte 0x01 [A0])"),
             (k.mem.size, "is not in storage"),
             (k.alloc_page(), "was never allocated as a page table")]
    for table, why in cases:
        with pytest.raises(BadTable, match=re.escape(why)) as e:
            C.validate_free(k, mm, table, "page_table_free")
        assert e.value.name == "page_table_free"
    with pytest.raises(BadTable, match=f"belongs to mm {mm:#x}, not {other:#x}") as e:
        C.validate_free(k, other, t0, "page_table_free")
    assert e.value.name == "page_table_free"
    del k.owner[t0]
    with pytest.raises(BadTable, match="was never allocated") as e:
        C.validate_free(k, mm, t0, "page_table_free")
    assert e.value.name == "page_table_free"
    k.owner[t0] = mm
    C.validate_free(k, mm, t0, "page_table_free")


def _bad_free(k, mm, table):
    with pytest.raises(BadTable) as e:
        C.validate_free(k, mm, table, "page_table_free")
    assert e.value.name == "page_table_free"
    assert e.value.page == k.mem_map.virt_to_page(table & ~0xFFF)
    return e.value.message


def test_a_table_whose_8_bytes_cross_the_end_of_storage_is_not_in_storage():
    k, mm = kernel()
    size = k.mem.size
    assert _bad_free(k, mm, size - 4) == f"{size - 4:#x} is not in storage"
    assert _bad_free(k, mm, size - 8).startswith(f"misaligned page table {size - 8:#x}")


@pytest.mark.parametrize("version,pgste", [("v64", True), ("v67", False)])
def test_where_tables_are_whole_pages_an_upper_2k_half_is_misaligned(version, pgste):
    k, mm = kernel(version, pgste=pgste)
    t = k.page_table_alloc(mm)
    assert _bad_free(k, mm, t + 0x800).startswith(f"misaligned page table {t + 0x800:#x}")
    C.validate_free(k, mm, t, "page_table_free")


# -- leak (9) --------------------------------------------------------------------------------

def test_a_clean_quiescent_state_has_no_leak_and_a_pending_byte_is_one():
    k, mm, t0, page = _half_listed()
    assert C.check_quiescent(k) == []
    set_byte(k, page, 0x11 ^ 0x10 | 0x20)                   # A0 P1
    assert [v.name for v in C.check_quiescent(k)] == ["leak"]


# -- reachability (14) and crst (13) ----------------------------------------------------------

def _installed(version="v64"):
    k, mm = kernel(version)
    t0 = MM.pte_table(k, mm, 0, alloc=True)
    return k, mm, t0, k.mem_map.virt_to_page(t0)


def test_a_table_of_another_mm_reachable_from_this_one_is_reachability():
    k, mm, t0, page = _installed()
    other = MM.mm_alloc(k)
    k.owner[t0] = other
    found = C.reachability(k, [mm])
    assert [(v.name, v.page, v.message.split(" (")[0]) for v in found] == [
        ("reachability", page, f"mm {mm:#x} reaches page table {t0:#x} owned by mm {other:#x}")]
    k.owner[t0] = mm
    assert C.reachability(k, [mm]) == []


def test_a_reachable_table_in_a_freed_frame_is_reachability():
    k, mm, t0, page = _installed()
    k.mem_map.set_refcount(page, 0)
    assert [v.message.split(" (")[0] for v in C.reachability(k)] == [f"mm {mm:#x} reaches page table {t0:#x} in a freed frame"]


def test_a_reachable_table_in_a_frame_that_is_no_page_table_is_reachability():
    k, mm, t0, page = _installed()
    k.mem_map.set_page_type(page, S.PAGE_TYPE_NONE)
    assert "in a freed frame" in C.reachability(k)[0].message


def test_a_crst_table_in_a_freed_frame_is_reachability():
    k, mm, t0, page = _installed()
    crst = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"]) & ~0xFFF
    cpage = k.mem_map.virt_to_page(crst)
    k.mem_map.set_refcount(cpage, 0)
    found = C.reachability(k)
    assert any(v.page == cpage and v.message.endswith(f"table {crst:#x} in a freed frame") for v in found)


def test_a_crst_table_beyond_storage_is_reachability_by_its_own_message():
    k, mm, t0, page = _installed()
    asce = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"])
    k.mem.write_u64(mm + S.mm_struct.fields["context.asce"], (asce & 0xFFF) | k.mem.size)
    found = C.reachability(k)
    assert [(v.name, v.page) for v in found] == [("reachability", 0)]
    assert found[0].message.startswith(f"mm {mm:#x} reaches ") and found[0].message.endswith(
        f"table {k.mem.size:#x}, beyond storage ({k.mem.size:#x} bytes)")


def _point_ste(k, mm, origin):
    ste = MM.segment_table(k, mm, 0)
    k.mem.write_u64(ste, origin | (k.mem.read_u64(ste) & 0x7FF))


def test_a_page_table_just_past_the_end_of_storage_is_beyond_it_and_the_last_2k_is_not():
    k, mm, t0, page = _installed()
    size = k.mem.size
    _point_ste(k, mm, size)
    assert [(v.name, v.page, v.message.split(" (")[0]) for v in C.reachability(k)] == [
        ("reachability", 0, f"mm {mm:#x} reaches page table {size:#x}, beyond storage")]
    _point_ste(k, mm, size - 0x800)                          # in storage: judged by its page instead
    found = C.reachability(k)
    assert len(found) == 1 and "beyond storage" not in found[0].message
    assert found[0].page == k.mem_map.virt_to_page(size - 0x1000)


def test_reachability_walks_only_the_mms_asked_for_and_every_one_of_them():
    k, mm, t0, page = _installed()
    empty = MM.mm_alloc(k)                                   # no page table at all
    other = MM.mm_alloc(k)
    MM.pte_table(k, other, 0, alloc=True)
    _point_ste(k, other, t0)                                 # other reaches mm's table
    assert C.reachability(k, [mm]) == []
    for mms in ([empty, other], [other, empty], None):
        found = C.reachability(k, mms)
        assert [v.message.split(" (")[0] for v in found] == [f"mm {other:#x} reaches page table {t0:#x} owned by mm {mm:#x}"]


def test_a_crst_table_in_a_freed_frame_is_reported_by_name_and_message():
    k, mm, t0, page = _installed()
    crst = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"]) & ~0xFFF
    cpage = k.mem_map.virt_to_page(crst)
    k.mem_map.set_refcount(cpage, 0)
    found = [v for v in C.reachability(k) if v.page == cpage]
    assert [v.name for v in found] == ["reachability"]
    assert found[0].message.startswith(f"mm {mm:#x} reaches ") and found[0].message.endswith(
        f" table {crst:#x} in a freed frame")


def _seed_listed_h_page():
    """A seed page listed with byte 0x16 (A1, H0+P0): not a listable byte, and an H bit
    with no callback queued: two findings on one page, list_membership first."""
    k, mm = kernel("seed")
    t0, t1 = k.page_table_alloc(mm), k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    set_byte(k, page, 0x16)
    lists.list_add(k.mem, page + LRU, mm + PGT)
    return k, mm, page


def test_under_a_lock_list_membership_is_skipped_and_the_pages_next_finding_still_reported():
    k, mm, page = _seed_listed_h_page()
    assert [v.name for v in C.check_all(k)] == ["list_membership", "rcu_head"]
    lock(k, mm)
    assert [v.name for v in C.page_checks(k)] == ["rcu_head"]
    raises("rcu_head", C.after_step, k, 0, "process", SimpleNamespace(FUNC="f", page=page), "here")


def test_clearing_the_a_bit_of_an_a_and_p_half_is_allowed_it_is_how_the_byte_gets_legal_again():
    # A(h) with P(h) is illegal; XOR A(h) takes the half to pending, which is legal.
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lock(k, mm)
    C.before_xor(k, page, 0x11000001, 0x01 << 24)
    raises("xor_precondition", C.before_xor, k, page, 0x10000001, 0x01 << 24)


def test_a_list_op_outside_any_step_or_in_a_frame_without_an_mm_checks_no_lock():
    k, mm, t0, page = _half_listed()
    k.cur = None
    C.before_list_op(k, page, "list_add")                   # no k.cur: setup code
    k.cur = (0, "process", SimpleNamespace(FUNC="f", pc="label"))
    C.before_list_op(k, page, "list_add")                   # a frame with no mm local
    k.rcu.append((page + RCU, "pte_free_now", (), False))
    running(k, mm)
    v = raises("list_operation", C.before_list_op, k, page, "list_del")
    assert v.message == "list_del on page->lru while page->rcu_head is queued for RCU"


def test_list_op_messages():
    k, mm, t0, page = _half_listed()
    lock(k, mm)
    k.cur = (0, "process", SimpleNamespace(FUNC="f", pc="label", mm=mm))
    lists.list_del(k.mem, page + LRU)
    v = raises("list_operation", C.before_list_op, k, page, "list_del")
    assert v.message == "list_del of a page that is not listed (byte 0x01 [A0])"


def test_v67_a_crst_table_off_a_16k_boundary_is_tag_consistency():
    k, mm = kernel("v67")
    crst = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"]) & ~0xFFF
    page = k.mem_map.virt_to_page(crst)
    C.tag_check(k, crst, page)
    v = raises("tag_consistency", C.tag_check, k, crst + 0x1000, page)
    assert v.message == f"__tlb_remove_table({crst + 0x1000:#x}): tag 0 does not match the table (byte 0x00 [-], PageTable False)"


def test_v67_an_upper_2k_half_or_a_freed_frame_is_not_a_reachable_table():
    k, mm, t0, page = _installed("v67")
    assert C.reachability(k) == []
    _point_ste(k, mm, t0 + 0x800)
    found = C.reachability(k)
    assert [(v.name, v.page, v.message.split(" (")[0]) for v in found] == [
        ("reachability", page, f"mm {mm:#x} reaches page table {t0 + 0x800:#x} in a free half")]
    _point_ste(k, mm, t0)
    k.mem_map.set_refcount(page, 0)
    assert [v.message.split(" (")[0] for v in C.reachability(k)] == [f"mm {mm:#x} reaches page table {t0:#x} in a freed frame"]


def test_a_reachable_table_with_no_owner_record_is_owned_by_mm_0():
    k, mm, t0, page = _installed()
    del k.owner[t0]
    found = C.reachability(k)
    assert [(v.name, v.page) for v in found] == [("reachability", page)]
    assert found[0].message.startswith(f"mm {mm:#x} reaches page table {t0:#x} owned by mm 0x0 (byte 0x01 [A0], STE at ")


def test_an_a_bit_xor_in_a_frame_with_no_mm_local_is_a_locking_violation():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    k.cur = (0, "process", SimpleNamespace(FUNC="f", pc="label"))
    raises("locking", C.before_xor, k, page, 0x01000001, 0x01 << 24)


def test_a_seed_h_bit_without_its_p_bit_is_bit_legality_on_the_page():
    k, mm = kernel("seed")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    set_byte(k, page, 0x04)
    assert "bit_legality" in [v.name for v in C.check_all(k)]


def test_after_step_ignores_a_page_that_is_no_page_table_whatever_its_byte():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.alloc_page())
    set_byte(k, page, 0x11)
    C.after_step(k, 0, "process", SimpleNamespace(FUNC="f", page=page), "label")


def test_after_step_applies_the_unlisted_rule_when_no_lock_is_held():
    k, mm = kernel("seed")
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    lists.list_del_init(k.mem, page + LRU)
    v = raises("list_membership", C.after_step, k, 0, "process", SimpleNamespace(FUNC="f", page=page), "label")
    assert v.message == "not listed although byte is 0x01 [A0] (one half free)"


def test_a_crst_table_in_the_last_4k_of_storage_is_not_beyond_it():
    k, mm, t0, page = _installed()
    asce = k.mem.read_u64(mm + S.mm_struct.fields["context.asce"])
    k.mem.write_u64(mm + S.mm_struct.fields["context.asce"], (asce & 0xFF0) | (k.mem.size - 0x1000))
    assert not any("beyond storage" in v.message for v in C.reachability(k))
