"""The readers in flight in the explorer (issue 13): the calibration patch is found by a
walker, and only with walkers; the merged versions stay clean with them."""

from pathlib import Path

import pytest

from pgalloc import tlbflush as F
from pgalloc.explore import Setup, explore
from pgalloc.registry import load_version

PATCH = Path(__file__).parents[2] / "examples" / "patches" / "v66-defer-without-rcu.py"


@pytest.fixture(scope="module")
def patch_results():
    name = load_version(str(PATCH))
    return {w: explore(Setup(version=name, max_ops=3, walkers=w), workers=2) for w in (True, False)}


def test_pte_free_defer_without_setpageactive_is_found_by_a_walker(patch_results):
    r = patch_results[True]
    found = [f for f in r.violations if f.name == "walker_use_after_free"]
    assert found, [f.name for f in r.violations]
    f = min(found, key=lambda f: len(f.trace))
    walker_cpus = {row["cpu"] for row in f.trace if row.get("func") in ("gup_fast", "pte_offset_map_lock")}
    retract_cpus = {row["cpu"] for row in f.trace if row.get("func") == "retract_page_tables"}
    assert walker_cpus and retract_cpus and walker_cpus.isdisjoint(retract_cpus)
    # The walker loaded the pointer before the table was unhooked, and still holds it.
    first_walk = min(i for i, row in enumerate(f.trace) if row.get("func") in ("gup_fast", "pte_offset_map_lock"))
    unhook = min(i for i, row in enumerate(f.trace) if row.get("label") == "pmdp_collapse_flush(pmd)"
                 and row.get("func") == "retract_page_tables" and i > first_walk - 3)
    assert first_walk < max(unhook, first_walk + 1)
    assert "handed out again" in f.message or "freed to the page allocator" in f.message


def test_without_walkers_the_patch_looks_clean(patch_results):
    r = patch_results[False]
    assert r.violations == [] and r.complete


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_merged_versions_are_clean_with_walkers_at_max_ops_3(results, version):
    r = results(version, 3)
    assert r.setup.walkers and r.violations == [] and r.complete


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_merged_versions_are_clean_with_walkers_at_max_ops_4(results, version):
    """The issue's calibration bound (30 to 75 s each on two workers: docs/benchmarks.md)."""
    r = results(version, 4)
    assert r.setup.walkers and r.violations == [] and r.complete and r.states > 100_000


def test_a_direct_flush_that_reads_the_attach_mask_is_found_once_a_cpu_switches_away(monkeypatch):
    """A CPU that switched away stays in mm_cpumask (its TLB may hold entries) but leaves
    cpu_attach_mask: an IDTE made local because the attach mask says "this CPU alone"
    leaves the other CPU's entries, and the table's free finds them (I1).  The kernel's
    mask (mm_cpumask) keeps the IDTE global: clean."""
    script = ((("defer", 0), ("defer", 1)), (("switch_mm",),))
    clean = explore(Setup(version="v66", script=script))
    assert clean.violations == [] and clean.complete
    monkeypatch.setattr(F, "mm_cpumask", F.cpu_attach_mask)
    broken = explore(Setup(version="v66", script=script))
    assert {f.name for f in broken.violations} == {"tlb_stale"}
    f = min(broken.violations, key=lambda f: len(f.trace))
    assert any(row.get("func") == "context_switch" and row.get("cpu") == 1 for row in f.trace)
    assert any("IDTE local" in p for row in f.trace for p in row.get("purges", ()))
