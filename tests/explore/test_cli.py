"""``s390emu explore``: exit codes, reports, version files and scenario files."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgalloc import explore as X
from s390emu.cli import main


def test_cli_exits_4_with_the_trace_for_v515_and_0_for_v66():
    runner = CliRunner()
    r = runner.invoke(main, ["explore", "--version", "v515", "--max-ops", "2", "--no-progress"])
    assert r.exit_code == 4, r.output
    assert "page_free" in r.output and "states/s" in r.output and "--max-ops 2 reached" in r.output
    r = runner.invoke(main, ["explore", "--version", "v66", "--max-ops", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "no violation found" in r.output


def test_cli_max_seconds_stops_at_a_level_end_and_says_the_search_is_incomplete():
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "3", "--max-seconds", "0.001",
                                  "--workers", "1", "--no-progress", "--json"])
    assert r.exit_code == 5, r.output
    d = json.loads(r.output)
    assert d["complete"] is False and 1 < d["states"] < 1000 and d["depth"] == 1 and d["cut"] == "max-seconds"


PATCH = str(Path(__file__).resolve().parents[2] / "examples" / "patches" / "v66-relist-deferred.py")


def test_a_patch_as_a_version_file_is_explored_and_its_bug_found():
    # v6.6 without the PageActive test: the deferred half goes back on pgtable_list.
    r = CliRunner().invoke(main, ["explore", "--version", PATCH, "--max-ops", "2", "--workers", "2",
                                  "--no-progress", "--json"])
    assert r.exit_code == 4, r.output
    d = json.loads(r.output)
    assert d["version"] == "v66-relist-deferred"
    assert {v["invariant"] for v in d["violations"]} == {"list_membership"}
    assert "listed with byte 0x02 [A1] and PG_active" in d["violations"][0]["message"]


def test_a_version_file_in_the_format_of_fa4c2bc_explores_like_the_example_patch_today():
    # The same patch as commit fa4c2bc shipped it (steps returning labels, its predecessor
    # copied to change one edge) and as examples/ has it now (a REDIRECT): one graph.
    from pgalloc.registry import load_version

    old = load_version(str(Path(__file__).with_name("fixtures") / "v66_relist_deferred_fa4c2bc.py"))
    new = load_version(PATCH)
    a, b = (X.explore(X.Setup(version=v, max_ops=2)) for v in (old, new))
    assert (a.states, a.transitions) == (b.states, b.transitions) and a.states > 0
    assert [f.kind for f in a.violations] == [f.kind for f in b.violations] != []
    assert [f.trace for f in a.violations] == [f.trace for f in b.violations]


def test_a_patch_that_rewrites_a_local_step_gets_it_interleaved(tmp_path):
    # The local lists name steps by label, but only the built-in code was read: a patch
    # that rewrites pte_free_half's requeue under the same label is interleaved, and the
    # steps it inherits unchanged stay local.
    from pgalloc import seed
    from pgalloc.versions import load_version, VERSIONS
    f = tmp_path / "seed-requeue.py"
    f.write_text("from pgalloc.seed import *\nfrom pgalloc import seed\nfrom pgalloc.steps import DONE, step\n"
                 "NAME = 'seed-requeue'\n"
                 "class pte_free_half(seed.pte_free_half):\n"
                 "    @step('if (mask & 0x0CU) call_rcu(other half)')\n"
                 "    def requeue(self, k):\n"
                 "        k.call_rcu(self.page + 16, 'pte_free_now1')\n"
                 "        return DONE\n")
    patched = VERSIONS[load_version(str(f))].pte_free_half
    for label in ("if (mask & 0x0CU) call_rcu(other half)", "__tlb_remove_table(table | 1 << bit)"):
        ours, theirs = seed.pte_free_half(page=0, bit=0), patched(page=0, bit=0)
        ours.pc = theirs.pc = label
        assert X.is_local(ours)
        assert X.is_local(theirs) == (label != "if (mask & 0x0CU) call_rcu(other half)")


@pytest.mark.parametrize("text, code, words", [
    (None, 1, "no such version file"),
    ("def broken(:\n", 1, "cannot load it: SyntaxError"),
    ("NAME = 'x'\n", 1, "must define FRAGMENTS"),
    ("from pgalloc.v66 import *\n", 1, "NAME = 'v66' is already a version"),
])
def test_bad_version_files_exit_1_with_the_reason(tmp_path, text, code, words):
    f = tmp_path / "patch.py"
    if text is not None:
        f.write_text(text)
    r = CliRunner().invoke(main, ["explore", "--version", str(f), "--max-ops", "1", "--no-progress"])
    assert r.exit_code == code and words in r.output, r.output
    assert "Traceback" not in r.output


def test_an_unknown_version_name_is_a_usage_error():
    r = CliRunner().invoke(main, ["explore", "--version", "v99", "--max-ops", "1", "--no-progress"])
    assert r.exit_code == 2 and "unknown version 'v99'" in r.output


def test_cli_json_and_html(tmp_path):
    runner = CliRunner()
    html = tmp_path / "t.html"
    r = runner.invoke(main, ["explore", "--version", "v515", "--max-ops", "2", "--json", "--html", str(html)])
    assert r.exit_code == 4
    doc = json.loads(r.output)
    assert doc["version"] == "v515" and doc["states"] > 0 and doc["states_per_second"] > 0
    v = doc["violations"][0]
    assert v["invariant"] and v["trace"] and {"cpu", "context", "func", "label"} <= set(v["trace"][-1])
    text = html.read_text()
    assert "<table" in text and "CPU0" in text and "CPU1" in text and "half" in text


def test_cli_usage_errors_exit_2_and_a_bad_scenario_file_exits_1(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["explore", "--max-ops", "1"]).exit_code == 2
    assert runner.invoke(main, ["explore", "--version", "v99", "--max-ops", "1"]).exit_code == 2
    assert runner.invoke(main, ["explore", "--version", "v64"]).exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cpu]]\nops = ['nope']\n")
    r = runner.invoke(main, ["explore", "--scenario", str(bad), "--version", "v64"])
    assert r.exit_code == 1 and "unknown operation" in r.output
    r = runner.invoke(main, ["explore", "--scenario", str(tmp_path / "missing.toml")])
    assert r.exit_code == 1


def test_cli_runs_the_example_scenarios():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2] / "examples" / "scenarios"
    files = sorted(root.glob("*.toml"))
    assert files
    runner = CliRunner()
    for f in files:
        r = runner.invoke(main, ["explore", "--scenario", str(f), "--no-progress"])
        assert r.exit_code in (0, 4), (f, r.output)


def test_ops_of_the_readers_in_flight_without_walkers_is_bad_usage():
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "1", "--ops", "free,gup_fast,switch_mm",
                                  "--no-walkers", "--no-progress"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().endswith("Error: --ops gup_fast, switch_mm: operations of the readers in flight, "
                                     "which --no-walkers leaves out")
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "1", "--ops", "free,gup_fast,switch_mm",
                                  "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["walkers"] is True


PGSTE_BUG = str(Path(__file__).with_name("fixtures") / "injected" / "v64-pgste-free-tlb-untagged.py")


def test_pgste_explores_a_kvm_mm_whose_own_steps_a_plain_mm_never_runs():
    r = CliRunner().invoke(main, ["explore", "--version", PGSTE_BUG, "--max-ops", "2", "--pgste", "--workers", "1",
                                  "--no-progress", "--json"])
    assert r.exit_code == 4, r.output
    d = json.loads(r.output)
    assert d["pgste"] is True and "tag_consistency" in {v["invariant"] for v in d["violations"]}
    r = CliRunner().invoke(main, ["explore", "--version", PGSTE_BUG, "--max-ops", "2", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0 and "both halves in use" in r.output, r.output
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "1", "--pgste", "--workers", "1",
                                  "--no-progress"])
    assert r.exit_code == 0 and "a KVM (PGSTE) mm: 2 page tables of a 4K page each (T0, T1)" in r.output, r.output


def test_pgste_with_a_scenario_is_a_usage_error(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('version = "v64"\n[[cpu]]\nops = ["alloc"]\n')
    r = CliRunner().invoke(main, ["explore", "--scenario", str(f), "--pgste", "--no-progress"])
    assert r.exit_code == 2 and "--pgste is for generated mode" in r.output and "Traceback" not in r.output
