"""A search that did not look everywhere never says it did (issue 15): operations that
can never start are refused when the scenario loads, or reported; a cut search exits 5."""

import json

import pytest
from click.testing import CliRunner

from pgalloc.explore import Setup, explore
from pgalloc.explore.scenario import ScenarioError, load_scenario, parse_scenario
from s390emu.cli import main
from s390emu.commands.common import EXIT_INCOMPLETE

ALLOCS = ", ".join(['"alloc"'] * 200)


@pytest.mark.parametrize("text, words", [
    ('[setup]\nfree = [0]\n[[cpu]]\nops = ["free T0"]\n', "free T0 (free T0) but the table is freed by the setup"),
    ('[[cpu]]\nops = ["alloc S0"]\n', "1 alloc S0 but slot S0 is empty 0 time(s)"),
    ('[[cpu]]\nops = ["free T0"]\n[[cpu]]\nops = ["free_tlb T0"]\n', "2 operation(s) free T0 (free T0, free_tlb T0)"),
    ('[[cpu]]\nops = ["free T0", "free T0"]\n', "one never starts"),
    (f'[[cpu]]\nops = [{ALLOCS}]\n', "200 alloc S2"),
    ('[[cpu]]\nops = ["exit", "free T0"]\n', "'free T0' after 'exit' never starts"),
    ('[[cpu]]\nops = ["exit"]\n[[cpu]]\nops = ["exit"]\n', "a second 'exit' never starts"),
])
def test_an_operation_the_setup_decides_never_starts_is_refused_at_load(text, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario('version = "v64"\n' + text)
    assert words in str(e.value)


def test_a_free_after_a_refill_of_its_slot_is_accepted():
    s = parse_scenario('version = "v64"\n[[cpu]]\nops = ["free T0", "alloc S0", "free T0"]\n')
    r = explore(s)
    assert r.complete and r.never_started == [] and r.violations == []


def test_an_operation_no_interleaving_starts_makes_the_search_incomplete(tmp_path):
    # alloc S0 waits for slot 0 to empty, which only the same CPU's later free would do.
    f = tmp_path / "stuck.toml"
    f.write_text('version = "v64"\n[[cpu]]\nops = ["alloc S0", "free T0"]\n')
    r = explore(load_scenario(f))
    assert not r.complete and r.cut is None
    assert r.never_started == ["CPU0 operation 1 (alloc S0)", "CPU0 operation 2 (free T0)"]
    res = CliRunner().invoke(main, ["explore", "--scenario", str(f), "--no-progress"])
    assert res.exit_code == EXIT_INCOMPLETE == 5, res.output
    assert res.output.splitlines()[-2:] == [
        "never started: CPU0 operation 1 (alloc S0); CPU0 operation 2 (free T0)",
        "INCOMPLETE: 2 scenario operation(s) that no interleaving started (above): what they would do was not explored"]
    res = CliRunner().invoke(main, ["explore", "--scenario", str(f), "--json"])
    d = json.loads(res.output)
    assert res.exit_code == 5 and d["complete"] is False and d["never_started"] == r.never_started and d["cut"] is None


@pytest.mark.parametrize("option, cut", [(["--max-states", "3"], "max-states"), (["--max-steps", "2"], "max-steps"),
                                         (["--max-seconds", "0.0001"], "max-seconds")])
def test_a_cut_search_exits_5_and_says_why_in_its_last_line_and_in_json(option, cut):
    args = ["explore", "--version", "v64", "--max-ops", "2", "--workers", "1", "--no-progress"] + option
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 5, r.output
    last = r.output.splitlines()[-1]
    assert last.startswith("INCOMPLETE: the search was cut by " + option[0]), last
    r = CliRunner().invoke(main, args + ["--json"])
    d = json.loads(r.output)
    assert r.exit_code == 5 and d["complete"] is False and d["cut"] == cut


def test_a_cut_search_that_found_a_violation_still_exits_4():
    r = CliRunner().invoke(main, ["explore", "--version", "v515", "--max-ops", "2", "--first", "--workers", "1",
                                  "--no-progress"])
    assert r.exit_code == 4, r.output
    assert r.output.splitlines()[-1].startswith("INCOMPLETE: the search was cut by --first")


def test_a_search_whose_last_level_fits_the_bounds_is_complete():
    full = explore(Setup(version="v64", max_ops=1))
    r = explore(Setup(version="v64", max_ops=1, max_states=full.states, max_steps=full.depth))
    assert r.complete and r.cut is None and r.states == full.states


@pytest.mark.parametrize("text, words", [
    ('[bounds]\nmax_steps = -5\n', "bounds.max_steps must be an integer >= 0, not -5"),
    ('[bounds]\nmax_states = 0\n', "bounds.max_states must be an integer >= 1, not 0"),
    ('[bounds]\nmax_states = "lots"\n', "bounds.max_states must be an integer >= 1, not 'lots'"),
    ('[bounds]\nmax_steps = 1.5\n', "bounds.max_steps must be an integer"),
    ('[setup]\nlazy_refs = 100000000000\n', "setup.lazy_refs (one per CPU at most, 1 CPUs) must be an integer 0..1"),
    ('[setup]\nlazy_refs = -1\n', "setup.lazy_refs"),
    ('[setup]\npages = true\n', "setup.pages must be an integer 1..4, not True"),
    ('[setup]\nfree = [0, 0]\n', "lists a table twice"),
    ('[setup]\nfree = [true]\n', "setup.free must list"),
    ('[setup]\npgste = 1\n', "setup.pgste must be true or false, not 1"),
    ('[checks]\nsleep_sets = "yes"\n', "checks.sleep_sets must be true or false"),
    ('[checks]\nquiescent = 0\n', "checks.quiescent must be true or false"),
    ('name = 3\n', "name must be a string"),
    ('description = []\n', "description must be a string"),
    ('cpus = true\n', "cpus must be an integer"),
    ('version = 64\n', "version must be a string"),
])
def test_every_field_of_the_scenario_format_is_checked(text, words):
    # The [[cpu]] tables come last: TOML puts keys after a table header into that table.
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text + '[[cpu]]\nops = ["free T0"]\n')
    assert words in str(e.value)


def test_bad_scenario_values_and_files_exit_1_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    for body in (b'[setup]\nlazy_refs = 100000000000\n[[cpu]]\nops = ["free T0"]\n', b'version = "v64"\n\xff\xfe\n'):
        bad.write_bytes(body)
        r = CliRunner().invoke(main, ["explore", "--version", "v64", "--scenario", str(bad)])
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "not UTF-8 text (byte 0xff at offset 16)" in r.output
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--scenario", str(tmp_path)])
    assert r.exit_code == 1 and "a directory, not a scenario file" in r.output, r.output


@pytest.mark.parametrize("option, value", [
    ("--max-ops", "-1"), ("--max-ops", "21"), ("--max-ops", "x"), ("--cpus", "0"), ("--cpus", "9"), ("--pages", "5"),
    ("--max-steps", "-5"), ("--max-states", "0"), ("--max-states", "lots"), ("--max-seconds", "-1"),
    ("--max-seconds", "nan"), ("--max-seconds", "inf"), ("--workers", "0"), ("--workers", "65"),
])
def test_every_numeric_option_is_checked_with_one_line_and_exit_2(option, value):
    args = ["explore", "--version", "v64", "--max-ops", "1"]
    if option == "--max-ops":
        args = args[:3]
    r = CliRunner().invoke(main, args + [option, value])
    assert r.exit_code == 2 and option in r.output, r.output


WRONG_HALF = '''"""v6.4 whose page_table_alloc sets P with A: the setup's second table breaks it."""
from pgalloc.v64 import *  # noqa: F401,F403
from pgalloc import v64
from pgalloc.steps import step

NAME = "v64-alloc-sets-p"


class page_table_alloc(v64.page_table_alloc):
    @step("atomic_xor_bits(A)")
    def xor_a(self, k):
        k.atomic_xor_bits(self.page, 0x11 << (self.bit + 24))
        return "list_del(&page->lru)"
'''


def test_a_patch_whose_bug_fires_in_the_setup_exits_4_with_the_setups_steps_as_its_trace(tmp_path):
    patch = tmp_path / "sets_p.py"
    patch.write_text(WRONG_HALF)
    r = CliRunner().invoke(main, ["explore", "--version", str(patch), "--max-ops", "1", "--no-progress"])
    assert r.exit_code == 4, r.output
    assert "Traceback" not in r.output and "[1] xor_precondition: page 0x3700" in r.output
    assert "operations: the setup, before any CPU starts an operation" in r.output
    assert r.output.splitlines()[-1] == "INCOMPLETE: a check failed while the setup was built: no interleaving was explored"
    r = CliRunner().invoke(main, ["explore", "--version", str(patch), "--max-ops", "1", "--json"])
    d = json.loads(r.output)
    assert r.exit_code == 4 and d["cut"] == "setup" and d["complete"] is False
    (f,) = d["violations"]
    rows = f["trace"]
    assert [row["label"] for row in rows[:2]] == ["if (!mm_alloc_pgste(mm))", "spin_lock_bh(&mm->context.lock)"]
    assert rows[-1]["label"] == "atomic_xor_bits(A)" and rows[-1]["violation"].startswith("[xor_precondition]")
    assert [row["n"] for row in rows] == list(range(1, len(rows) + 1))


def test_html_keeps_an_existing_file_unless_force_and_checks_its_path_before_the_search(tmp_path, monkeypatch):
    import pgalloc.explore

    searched = []
    real = pgalloc.explore.explore
    monkeypatch.setattr(pgalloc.explore, "explore", lambda *a, **kw: searched.append(1) or real(*a, **kw))
    base = ["explore", "--version", "v64", "--max-ops", "1", "--no-progress", "--html"]
    out = tmp_path / "t.html"
    out.write_text("mine")
    for path, words in ((out, "exists (use --force to overwrite --html)"),
                        (tmp_path / "no" / "t.html", "No such file or directory"),
                        (tmp_path, "is a directory (only a regular file is written or replaced) (--html)")):
        r = CliRunner().invoke(main, base + [str(path)])
        assert r.exit_code == 1 and words in r.output and len(r.output.splitlines()) == 1, r.output
    assert out.read_text() == "mine" and searched == []
    r = CliRunner().invoke(main, base + [str(out), "--force"])
    assert r.exit_code == 0 and out.read_text().startswith("<!doctype html>") and searched == [1]


def test_a_version_the_scenario_names_badly_is_the_files_error_and_an_empty_ops_list_bad_usage(tmp_path):
    f = tmp_path / "v99.toml"
    f.write_text('version = "v99"\n[[cpu]]\nops = ["free T0"]\n')
    r = CliRunner().invoke(main, ["explore", "--scenario", str(f)])
    assert r.exit_code == 1 and f"{f}: version: unknown version 'v99'" in r.output, r.output
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "1", "--ops", ","])
    assert r.exit_code == 2 and "--ops" in r.output, r.output


def test_the_html_report_says_what_was_not_explored(tmp_path):
    out = tmp_path / "cut.html"
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "2", "--max-states", "3", "--no-progress",
                                  "--html", str(out)])
    assert r.exit_code == 5
    assert "INCOMPLETE: the search was cut by --max-states" in out.read_text()
