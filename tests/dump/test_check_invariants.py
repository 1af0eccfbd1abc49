"""The checks of ``s390emu check --dump`` that ``test_check.py`` does not reach: each a
dump of the demo with one field corrupted, the invariant expected by name (``--json``'s
``invariant``), beside the uncorrupted neighbour that checks clean.

* ``list_corruption`` of ``mm_list`` itself (``attach``'s defensive walk);
* ``list_membership`` the other way: a seed page with one free half that is not listed;
* ``rcu_head``: a seed page with an H bit whose ``rcu_head.func`` names no callback, and
  the stale callback of a half that already ran;
* ``locking``: a held lock word that is no CPU's.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from pgalloc import mm as MM
from pgalloc.demo import TEXT, build_demo
from pgalloc.kernel import func_addr
from pgalloc.pgtable import RCU_HEAD
from s390emu import dump, lists
from s390emu import structs as S
from s390emu.cli import main
from s390emu.machine import MM_LIST

_MM = S.mm_struct.fields
_LRU = S.page.fields["lru"]


def check(tmp_path, d):
    """``check --dump --json`` of the demo ``d`` saved as it is now: (exit code, findings)."""
    path = tmp_path / "vmcore"
    if path.exists():
        path.unlink()
    dump.save(path, d.machine)
    r = CliRunner().invoke(main, ["check", "--dump", str(path), "--json"])
    assert r.exit_code in (0, 4), r.output
    return r.exit_code, json.loads(r.output)["violations"]


def set_byte(k, page, byte):
    k.mem.write_u32(page + S.page.fields["_refcount"], (k.mem.read_u32(page + S.page.fields["_refcount"]) & 0xFFFFFF)
                    | byte << 24)


def test_a_broken_mm_list_link_is_list_corruption_and_the_mms_before_it_are_still_checked(tmp_path):
    d = build_demo("v64")
    assert check(tmp_path, d) == (0, [])
    k = d.kernel
    first = k.mem.read_u64(MM_LIST)
    k.mem.write_u64(first + 8, first)                        # its prev no longer points at the head
    code, found = check(tmp_path, d)
    assert code == 4
    assert [f["invariant"] for f in found] == ["list_corruption"]
    assert found[0]["message"].startswith(f"mm_list at {MM_LIST:#x}: broken link {first:#x} after {MM_LIST:#x}; 0 mms")


def test_a_mm_list_pointing_outside_storage_is_list_corruption(tmp_path):
    d = build_demo("v64")
    d.kernel.mem.write_u64(MM_LIST, 1 << 40)
    code, found = check(tmp_path, d)
    assert code == 4 and [f["invariant"] for f in found] == ["list_corruption"]


def test_a_seed_page_with_one_free_half_off_its_list_is_list_membership(tmp_path):
    d = build_demo("seed")
    k = d.kernel
    # A new table (not yet installed): its page's upper half is free, so the seed lists it.
    node = k.mem_map.virt_to_page(k.page_table_alloc(d.mm5)) + _LRU
    assert lists.list_entries(k.mem, d.mm5 + _MM["context.pgtable_list"]) == [node]
    assert check(tmp_path, d) == (0, [])
    lists.list_del_init(k.mem, node)
    code, found = check(tmp_path, d)
    assert code == 4
    assert [(f["invariant"], f["page"]) for f in found] == [("list_membership", f"{node - _LRU:#x}")]
    assert found[0]["message"].startswith("not listed although byte is")


def _seed_page_pending_by_rcu_head():
    """The seed demo with one full page's half 1 made pending by rcu_head (A1 -> P1 H1)
    and the page's rcu_head.func set to ``func``'s address, its STE cleared."""
    d = build_demo("seed")
    k = d.kernel
    page = k.mem_map.virt_to_page(MM.pte_table(k, d.mm5, TEXT))
    assert k.byte(page) == 0x03
    upper = k.mem_map.page_address(page) + 0x800
    seg = MM.segment_table(k, d.mm5, TEXT)
    for addr in range(seg, seg + 0x4000, 8):
        if k.mem.read_u64(addr) & ~0x7FF == upper:
            k.mem.write_u64(addr, 0x20)                      # an invalid STE: nothing reaches the half
    set_byte(k, page, 0x29)                                  # A0, H1, P1
    return d, k, page


def test_a_seed_h_bit_whose_rcu_head_names_its_callback_is_clean_and_without_it_is_rcu_head(tmp_path):
    d, k, page = _seed_page_pending_by_rcu_head()
    k.mem.write_u64(page + RCU_HEAD + 8, func_addr("pte_free_now1"))
    assert check(tmp_path, d) == (0, [])
    k.mem.write_u64(page + RCU_HEAD + 8, 0)
    code, found = check(tmp_path, d)
    assert code == 4
    assert [(f["invariant"], f["page"]) for f in found] == [("rcu_head", f"{page:#x}")]
    assert found[0]["message"] == "H bit set (0x29 [A0 H1 P1]) but no pte_free_now callback is queued or running for the page"


def test_the_other_halfs_callback_is_stale_and_does_not_cover_an_h_bit(tmp_path):
    # rcu_head.func names pte_free_now0, whose half (H0) is not set: that callback already
    # ran, so nothing is queued for H1.
    d, k, page = _seed_page_pending_by_rcu_head()
    k.mem.write_u64(page + RCU_HEAD + 8, func_addr("pte_free_now0"))
    code, found = check(tmp_path, d)
    assert [f["invariant"] for f in found] == ["rcu_head"]


def test_a_held_lock_word_that_is_no_cpu_is_reported_with_a_question_mark(tmp_path):
    d = build_demo("v66")
    d.kernel.mem.write_u32(d.mm3 + _MM["context.lock"], 5)
    code, found = check(tmp_path, d)
    assert code == 4 and [f["invariant"] for f in found] == ["locking"]
    assert found[0]["message"] == (f"mm {d.mm3:#x}: context.lock is held (lock word 0x00000005, CPU ?) "
                                   "in a dump that should be quiescent")
