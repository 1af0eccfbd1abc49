"""The explorer against known kernel history: each version's findings (issue 4)."""

import pytest


def test_v515_yields_the_c2c224932fd0_release_race_a_page_freed_under_another_cpus_list_entry(results):
    r = results("v515")
    assert r.complete
    race = [f for f in r.violations if f.name in ("page_free", "use_after_free", "list_corruption")]
    assert race, [v.name for v in r.violations]
    f = race[0]
    # One CPU is inside page_table_free (holding the lock, past its XOR) while the
    # other's __tlb_remove_table turns the byte to 0 and frees the page.
    rows = f.trace
    free_cpu = {r["cpu"] for r in rows if r.get("func") == "page_table_free"}
    remove_cpu = {r["cpu"] for r in rows if r.get("func") == "__tlb_remove_table"}
    assert free_cpu and remove_cpu and free_cpu != remove_cpu
    xor = [r for r in rows if r.get("func") == "page_table_free" and r["label"] == "atomic_xor_bits(A)"]
    assert xor and xor[0]["after"] & 0x03 == 0
    assert rows[-1].get("violation")


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_fixed_versions_are_clean_within_the_ci_bound(results, version):
    r = results(version)
    assert r.violations == [], [f"{v.name}: {v.message} at {v.where}" for v in r.violations]
    assert r.complete and r.ops_bound_reached
    assert r.states > 300


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_fixed_versions_are_clean_at_max_ops_3(results, version):
    r = results(version, 3)
    assert r.violations == [] and r.complete and r.states > 1_000


def test_the_generated_search_finds_what_the_seed_gets_wrong(results):
    r = results("seed")
    names = {v.name for v in r.violations}
    # Hugh's admitted flaw: __tlb_remove_table locks page->pt_mm after the mm was freed.
    assert "mm_use_after_free" in names
    # pte_free_half tests an unshifted mask: the second deferred half keeps its H bit.
    stuck = [v for v in r.violations if v.name == "rcu_head"]
    assert stuck and any("pte_free_defer" in " ".join(o for o in v.state["operations"]) or "defer" in
                         " ".join(v.state["operations"]) for v in stuck)
    # The lock is now taken in softirq, but __tlb_flush_mm_lazy takes it with plain spin_lock.
    assert "deadlock" in names


def test_one_more_operation_keeps_every_seed_finding_and_adds_the_speculative_put(results):
    """At --max-ops 3, with every reduction on, the seed's three causes are all still
    found, and a speculative reference's put_page strands an H bit too."""
    two = {(v.name, v.where.split(": ", 1)[-1]) for v in results("seed").violations}
    three = {(v.name, v.where.split(": ", 1)[-1]) for v in results("seed", 3).violations}
    assert two <= three
    assert ("rcu_head", "put_page(page)") in three - two


def test_each_trace_is_a_shortest_one_and_ends_at_the_violation(results):
    r = results("seed")
    for f in r.violations:
        assert f.trace[-1].get("violation")
        assert f.trace[0]["kind"] == "start"
        steps = [row for row in f.trace if row["kind"] == "step" and row.get("func")]
        assert all(row["context"] in ("process", "softirq") for row in steps)
    # BFS: the findings come out ordered by trace length.
    lens = [len(f.transitions) for f in r.violations]
    assert lens == sorted(lens)
