"""The explorer against bugs injected into v6.6 and v6.7 (one version file each in
``fixtures/injected/``, its docstring saying what it breaks): each is found, by the
invariant it breaks, at a small bound, and a harmless change stays clean.  A weakened
check or an unsound reduction loses these first; the calibration tests only see the
five versions' own histories."""

from pathlib import Path

import pytest

from pgalloc.explore import Setup, explore
from pgalloc.registry import load_version

INJECTED = Path(__file__).with_name("fixtures") / "injected"

# (version file, --max-ops, walkers, an invariant that must be among the findings)
CASES = [
    ("free-xor-other-p.py", 2, False, "xor_precondition"),
    ("remove-table-no-xor.py", 2, False, "leak"),
    ("free-ignores-pending.py", 2, False, "page_table_release_check"),
    ("free-no-list-del.py", 2, False, "list_membership"),
    ("alloc-ignores-pending.py", 2, False, "xor_precondition"),
    ("free-unlocked.py", 2, False, "locking"),
    ("alloc-list-del-poison.py", 2, False, "list_corruption"),
    ("defer-active-late.py", 2, False, "use_after_free"),
    ("free-single-xor.py", 2, False, "page_table_release_check"),
    # Bugs only the readers in flight can see: a grace period or a flush taken away.
    ("free-rcu-no-grace.py", 2, True, "tlb_stale"),
    ("remove-table-ignores-active.py", 3, True, "walker_use_after_free"),
    # A 16K table freed with order 0: v6.7's compound page says so at the free, v6.4's
    # frames leak; and a v6.7 table written while walkers read it.
    ("v67-crst-free-order0.py", 2, False, "page_free"),
    ("v64-crst-free-order0.py", 2, False, "leak"),
    ("v67-defer-rcu-head-in-table.py", 2, True, "unhooked_table_not_empty"),
]


@pytest.mark.parametrize("name, ops, walkers, invariant", CASES, ids=[c[0][:-3] for c in CASES])
def test_an_injected_bug_is_found_by_the_invariant_it_breaks(name, ops, walkers, invariant):
    r = explore(Setup(version=load_version(str(INJECTED / name)), max_ops=ops, walkers=walkers), workers=2)
    names = sorted({v.name for v in r.violations})
    assert invariant in names, names
    assert r.states > 100           # found by the search, not while the setup was built


# Bugs in the branches of a KVM (PGSTE) mm, which only a search with ``pgste`` runs.
PGSTE_CASES = [
    ("v64-pgste-free-tlb-untagged.py", "tag_consistency"),
    ("v67-alloc-pgstes-not-cleared.py", "allocation_safety"),
]


@pytest.mark.parametrize("name, invariant", PGSTE_CASES, ids=[c[0][:-3] for c in PGSTE_CASES])
def test_an_injected_bug_of_a_kvm_mm_is_found_with_pgste(name, invariant):
    version = load_version(str(INJECTED / name))
    r = explore(Setup(version=version, max_ops=2, pgste=True), workers=2)
    assert invariant in {v.name for v in r.violations} and r.states > 100
    assert explore(Setup(version=version, max_ops=2), workers=2).violations == []      # a plain mm never runs it


def test_a_harmless_change_stays_clean():
    # Relisting at the head only wastes a half for a while: no invariant may break.
    r = explore(Setup(version=load_version(str(INJECTED / "relist-at-head.py")), max_ops=2), workers=2)
    assert r.violations == [] and r.complete and r.states > 1_000
