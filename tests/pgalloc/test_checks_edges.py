"""The four invariants of ``pgalloc.checks`` that a weakened check used to pass unnoticed
(issue 17's survivors), each by the smallest violating state, expected by name and
message, beside its nearest neighbour that is clean:

* ``leak`` in ``check_quiescent``: a page-table page that holds no owned table any more;
  and the stuck-bits mask, which must include the H bits (0x0C) as well as P (0x30);
* ``locking`` in ``before_xor``: an A-bit XOR on a byte another table shares, without
  ``mm->context.lock``;
* ``reachability``: a table reachable from a live ASCE that lies in a pending half (its
  own message, not "a free half").

States are reached with the public API (``pgalloc.Kernel(version, checks=True)``,
``pgalloc.mm``), except where a broken kernel is the point: then one named byte or
record is changed by hand.
"""

from __future__ import annotations

import pgalloc
from pgalloc import mm as MM
from pgalloc.steps import BLOCKED, DONE, Path, step


def _two_halves(version: str = "v64"):
    k = pgalloc.Kernel(version, checks=True)
    mm = MM.mm_alloc(k)
    t0, t1 = k.page_table_alloc(mm), k.page_table_alloc(mm)
    return k, mm, t0, t1, k.mem_map.virt_to_page(t0)


def _set_byte(k, page: int, byte: int) -> None:
    k.mem_map.set_refcount(page, byte << 24 | (k.mem_map.refcount(page) & 0xFF_FFFF))


def names(violations) -> list[str]:
    return sorted(v.name for v in violations)


# -- leak -------------------------------------------------------------------------------------

def test_a_quiescent_state_with_both_tables_owned_is_clean():
    k, mm, t0, t1, page = _two_halves()
    assert pgalloc.check_quiescent(k) == []


def test_a_page_table_page_holding_no_owned_table_is_a_leak():
    k, mm, t0, t1, page = _two_halves()
    # Both tables lost (nobody will ever free them): the page cannot go back.
    del k.owner[t0], k.owner[t1]
    found = pgalloc.check_quiescent(k)
    assert names(found) == ["leak"]
    assert found[0].page == page
    assert found[0].message == "page-table page with no allocated table left (byte 0x03 [A0 A1], _refcount 0x03000001)"
    assert pgalloc.check_all(k) == []               # a leak is a quiescent-state finding only


def test_one_owned_table_left_is_not_a_leak():
    k, mm, t0, t1, page = _two_halves()
    del k.owner[t1]
    assert "leak" not in names(pgalloc.check_quiescent(k))


def test_stuck_p_bits_after_rcu_drained_are_a_leak():
    k, mm, t0, t1, page = _two_halves()
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, t1)
    k.tlb_finish_mmu(tlb)
    k.rcu_barrier()
    assert (k.byte(page), pgalloc.check_quiescent(k)) == (0x01, [])     # drained: clean
    _set_byte(k, page, 0x21)                                            # P1 never cleared
    found = [v for v in pgalloc.check_quiescent(k) if v.name == "leak"]
    assert [v.message for v in found] == ["stuck pending bits 0x21 [A0 P1] after RCU drained"]


def test_stuck_h_bits_after_rcu_drained_are_a_leak_too():
    # The seed's H bits (0x04, 0x08) mean "pending free by page->rcu_head": one left over
    # after RCU drained is as stuck as a P bit, whatever else is wrong with the byte.
    k, mm, t0, t1, page = _two_halves("seed")
    k.page_table_free(mm, t1)
    assert (k.byte(page), pgalloc.check_quiescent(k)) == (0x01, [])
    _set_byte(k, page, 0x09)                                            # A0 H1
    found = pgalloc.check_quiescent(k)
    assert "stuck pending bits 0x09 [A0 H1] after RCU drained" in [v.message for v in found if v.name == "leak"]
    assert {"bit_legality", "leak", "rcu_head"} <= set(names(found))


# -- locking ----------------------------------------------------------------------------------

class xor_a1(Path):
    """``page_table_alloc``'s taking of the upper half (A1 XOR, ``list_del``), inside
    ``mm->context.lock`` only when ``locked``."""

    LOCALS = ("mm", "page", "locked")

    @step("spin_lock_bh(&mm->context.lock) if locked")
    def lock(self, k):
        if self.locked and not k.spin_lock(self.lock_addr(), True):
            return BLOCKED
        return "atomic_xor_bits(A1)"

    @step("atomic_xor_bits(A1)")
    def xor(self, k):
        k.atomic_xor_bits(self.page, 0x02 << 24)
        return "list_del(&page->lru)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock) if locked"

    @step("spin_unlock_bh(&mm->context.lock) if locked")
    def unlock(self, k):
        if self.locked:
            k.spin_unlock(self.lock_addr(), True)
        return DONE


def _shared_page():
    """A page whose lower half is allocated (byte 0x01): the upper half is free, listed."""
    k = pgalloc.Kernel("v64", checks=True)
    mm = MM.mm_alloc(k)
    t0 = k.page_table_alloc(mm)
    return k, mm, k.mem_map.virt_to_page(t0)


def test_an_a_bit_xor_on_a_shared_byte_without_the_lock_is_a_locking_violation():
    k, mm, page = _shared_page()
    try:
        k.run(xor_a1(mm=mm, page=page, locked=0))
    except pgalloc.Violation as v:
        assert (v.name, v.page) == ("locking", page)
        assert v.message == "A bits changed (0x01 [A0] -> 0x03 [A0 A1]) without mm->context.lock"
        assert k.byte(page) == 0x01                     # raised before the XOR
    else:
        raise AssertionError("no locking violation")


def test_the_same_xor_under_the_lock_is_clean():
    k, mm, page = _shared_page()
    k.run(xor_a1(mm=mm, page=page, locked=1))
    assert k.byte(page) == 0x03 and pgalloc.check_all(k) == []


# -- reachability -----------------------------------------------------------------------------

def _installed():
    """Two page tables of one page installed for segments 0 and 1 of a v6.4 mm."""
    k = pgalloc.Kernel("v64", checks=True)
    mm = MM.mm_alloc(k)
    t0 = MM.pte_table(k, mm, 0x00000, alloc=True)
    t1 = MM.pte_table(k, mm, 0x100000, alloc=True)
    assert t1 - t0 == 2048
    return k, mm, t0, t1, k.mem_map.virt_to_page(t0)


def test_installed_tables_in_allocated_halves_are_reachable_and_clean():
    k, mm, t0, t1, page = _installed()
    assert pgalloc.reachability(k) == []


def test_a_reachable_table_in_a_pending_half_is_reported_as_pending():
    # page_table_free_rcu of t1 while its STE still points at it (the caller "forgot"
    # pmd_clear): the half is pending (P1), the table still reachable.
    k, mm, t0, t1, page = _installed()
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, t1)
    assert k.byte(page) == 0x21
    found = pgalloc.reachability(k)
    assert names(found) == ["reachability"] and found[0].page == page
    assert found[0].message.startswith(f"mm {mm:#x} reaches page table {t1:#x} in a pending half "
                                       f"(byte 0x21 [A0 P1], STE at ")


def test_the_same_table_once_rcu_is_done_is_reported_in_a_free_half():
    k, mm, t0, t1, page = _installed()
    tlb = k.tlb_gather_mmu(mm)
    k.page_table_free_rcu(tlb, t1)
    k.tlb_finish_mmu(tlb)
    k.rcu_barrier()
    found = pgalloc.reachability(k)
    assert [v.message.split(" (")[0] for v in found] == [f"mm {mm:#x} reaches page table {t1:#x} in a free half"]


def test_a_pending_half_is_reported_even_when_its_a_bit_is_also_set():
    # A(h) and P(h) together are illegal (bit_legality says so too), but the half is
    # pending all the same: reachability must not take the A bit's word for it.
    k, mm, t0, t1, page = _installed()
    _set_byte(k, page, 0x23)                                            # A0 A1 P1
    found = pgalloc.reachability(k)
    assert [v.message.split(" (")[0] for v in found] == [f"mm {mm:#x} reaches page table {t1:#x} in a pending half"]
    _set_byte(k, page, 0x03)
    assert pgalloc.reachability(k) == []


def test_a_half_with_its_h_bit_set_is_not_reachable_either():
    # The seed's H(h): the half waits for pte_free_now; a table there must not be reachable.
    k = pgalloc.Kernel("seed", checks=True)
    mm = MM.mm_alloc(k)
    t0 = MM.pte_table(k, mm, 0x00000, alloc=True)
    t1 = MM.pte_table(k, mm, 0x100000, alloc=True)
    page = k.mem_map.virt_to_page(t0)
    assert pgalloc.reachability(k) == []
    _set_byte(k, page, 0x07)                                            # A0 A1 H0
    found = pgalloc.reachability(k)
    assert len(found) == 1 and found[0].message.startswith(f"mm {mm:#x} reaches page table {t0:#x} in a ")
