"""The readers in flight in trace rows (``purges``, ``tlb``, ``walker``), the text report
and the HTML timeline: a walker finding of the calibration patch, and a clean
``free_tlb`` run whose rows are checked against ``dat.tlb`` read on the setup's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dat.tlb import describe, formable, naming
from pgalloc.explore import Finding, Setup, build, copy_world, explore, replay, transitions
from pgalloc.explore.reductions import apply
from pgalloc.explore.report import WIDTH, html_report, text_report
from pgalloc.registry import load_version
from pgalloc.tlbflush import asce_of
from pgalloc.walkers import gup_fast
from s390emu.cli import main

PATCH = Path(__file__).parents[2] / "examples" / "patches" / "v66-defer-without-rcu.py"
# CPU0 frees T0, then khugepaged retracts T1; CPU1 walks T1's MiB with GUP-fast: the
# scenario of the patch's --max-ops 3 finding, explored in a fraction of a second.
WALKER_SCRIPT = ((("free", 0), ("defer", 1)), (("gup_fast", 1),))


@pytest.fixture(scope="module")
def walker_result():
    return explore(Setup(version=load_version(str(PATCH)), script=WALKER_SCRIPT))


def test_a_walker_finding_shows_the_segment_entry_the_walker_read_and_the_free(walker_result):
    r = walker_result
    [f] = r.violations
    assert f.name == "walker_use_after_free"
    ctx, w0 = build(r.setup)
    slot, table = ctx.slots[1], ctx.tables[1]
    ste = w0.k.mem.read_u64(slot)           # the entry as the setup made it (T1, valid)
    assert ste & ~0x7FF == table
    rows = f.trace
    [read] = [i for i, row in enumerate(rows) if row.get("label") == gup_fast.ENTRY]
    assert rows[read]["func"] == "gup_fast" and rows[read]["cpu"] == 1
    assert rows[read]["walker"] == {"pmdp": f"{slot:#x}", "pmd": f"{ste:#x}", "pt": f"{table:#x}", "pte": "0x0"}
    free = rows[-1]
    assert (free["func"], free["label"]) == ("pte_free_now", "pgtable_pte_page_dtor; __free_page")
    assert free["cpu"] == 0 and "[walker_use_after_free]" in free["violation"]
    # The walker held the pointer from its read to the free: no later step of it let go.
    assert all(row.get("walker", {}).get("pt", f"{table:#x}") == f"{table:#x}" for row in rows[read:])
    # khugepaged's pmdp_collapse_flush purged T1's entries from both TLBs before the free.
    gone = [describe(e) for e in sorted(naming(formable(w0.k.mem, asce_of(w0.k, ctx.mm)), table, table + 0x800))]
    [flush] = [row for row in rows[read:] if row.get("purges")]
    assert flush["purges"] == [f"IDTE global of the STE at {slot:#x} -> {table:#x}"]
    assert flush["tlb"] == {f"CPU{c}": {"+": [], "-": gone} for c in (0, 1)}
    # Only walker frames' rows have the walker key.
    assert all(("walker" in row) == (row.get("func") == "gup_fast") for row in rows)


def test_the_text_report_shows_them_under_their_step_within_the_width(walker_result):
    r = walker_result
    lines = text_report(r).splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    [i] = [i for i, line in enumerate(lines) if line.endswith("gup_fast: " + gup_fast.ENTRY)]
    f = r.violations[0]
    seen = next(row["walker"] for row in f.trace if row.get("label") == gup_fast.ENTRY)
    assert lines[i + 1].strip() == f"walker holds pmdp {seen['pmdp']} pmd {seen['pmd']} pt {seen['pt']}"
    load = next(i for i, row in enumerate(f.trace) if row.get("label") == gup_fast.ENTRY)
    flush = next(row for row in f.trace[load:] if row.get("purges"))     # khugepaged's, after the load
    assert any(line.strip() == "purges: " + flush["purges"][0] for line in lines)
    change = " ".join(f"{s} {', '.join(flush['tlb']['CPU0'][s])}" for s in "+-" if flush["tlb"]["CPU0"][s])
    tlb_text = " ".join(line.strip() for line in lines if line.strip().startswith("TLB CPU0, CPU1: "))
    assert f"TLB CPU0, CPU1: {change}" in tlb_text


def test_the_html_timeline_has_a_tlb_and_walker_lane_per_cpu(walker_result):
    page = html_report(walker_result)
    assert page.count("<th>CPU0 TLB / walker</th>") == 1 and page.count("<th>CPU1 TLB / walker</th>") == 1
    assert "<b>walker</b> pmdp 0x18008 pmd 0x1c800 pt 0x1c800" in page
    assert "<b>purge</b> IDTE global of the STE at 0x18008 -&gt; 0x1c800" in page


def _clean_run(setup: Setup) -> tuple:
    """A hand-made finding of the one run of ``setup``'s scenario in the lowest order
    (nothing is found: its rows are those of a clean run), replayed."""
    ctx, w0 = build(setup)
    w = copy_world(w0)
    ts = []
    while (enabled := transitions(ctx, w)):
        ts.append(min(enabled))
        apply(ctx, w, ts[-1])
    f = Finding("none", 0, "a clean run", "", ts)
    replay(ctx, w0, f)
    return ctx, w0, f


def test_a_free_tlb_run_shows_the_ipte_and_the_idte_by_asce_and_what_they_purged():
    ctx, w0, f = _clean_run(Setup(version="v64", script=((("free_tlb", 0),), ())))
    t0 = ctx.tables[0]
    asce = asce_of(w0.k, ctx.mm)
    held = naming(formable(w0.k.mem, asce), t0, t0 + 0x800)
    ste = [describe(e) for e in held if e[3] == 0]
    ptes = [describe(e) for e in held if e[3] < 0]
    assert len(ste) == 1 and len(ptes) == 1
    purging = [row for row in f.trace if row.get("purges")]
    assert [row["purges"] for row in purging] == [[f"IPTE global of the PTEs of {t0:#x}"],
                                                  [f"IDTE by ASCE {asce:#x}, all CPUs"]]
    ipte, idte = purging
    assert ipte["func"] == "free_pgtables" and idte["func"] == "__tlb_flush_mm_lazy"
    # The IPTE takes the PTEs (the STE still designates T0 until pmd_clear); the IDTE
    # by ASCE takes every entry of the ASCE, and the fill after it forms again all but
    # the STE that pmd_clear emptied: the row shows that one gone, on both CPUs.
    assert ipte["tlb"] == {f"CPU{c}": {"+": [], "-": ptes} for c in (0, 1)}
    assert idte["tlb"] == {f"CPU{c}": {"+": [], "-": ste} for c in (0, 1)}
    assert [row for row in f.trace if "tlb" in row] == purging      # nothing else changed a TLB
    assert not any("walker" in row for row in f.trace)


def test_without_walkers_the_rows_have_none_of_the_keys_and_the_html_no_lane():
    ctx, w0, f = _clean_run(Setup(version="v64", script=((("free_tlb", 0),), ()), walkers=False))
    assert f.trace and not any({"purges", "tlb", "walker"} & row.keys() for row in f.trace)
    r = explore(Setup(version="v64", script=((("free", 0),), (("free", 1),)), walkers=False))
    assert "TLB / walker" not in html_report(r)


def test_no_walkers_on_the_command_line_is_the_search_without_walkers():
    args = ["explore", "--version", "v64", "--max-ops", "1", "--workers", "1", "--no-progress"]
    on = json.loads(CliRunner().invoke(main, args + ["--json"]).output)
    r = CliRunner().invoke(main, args + ["--json", "--no-walkers"])
    off = json.loads(r.output)
    plain = explore(Setup(version="v64", max_ops=1, walkers=False))
    assert (off["walkers"], on["walkers"]) == (False, True)
    assert (off["states"], off["transitions"]) == (plain.states, plain.transitions) != (on["states"], on["transitions"])
    text = CliRunner().invoke(main, args + ["--no-walkers"]).output
    assert "no readers in flight (--no-walkers)" in text.splitlines()[0] + text.splitlines()[1]
