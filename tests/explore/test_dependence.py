"""The dependence census (``pgalloc.explore.dependence``, ``tools/dependence.py``): every
pair of transitions the sleep sets call independent commutes when both orders are taken,
on every version and example patch; the census can tell pairs that do not."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgalloc.explore import Setup
from pgalloc.explore import dependence as D
from pgalloc.registry import load_version

ROOT = Path(__file__).resolve().parents[2]
PATCHES = sorted(str(p) for p in (ROOT / "examples" / "patches").glob("*.py"))


@pytest.mark.parametrize("walkers", [True, False], ids=["walkers", "no-walkers"])
@pytest.mark.parametrize("version", ["v515", "v64", "seed", "v66", "v67"] + PATCHES,
                         ids=lambda v: os.path.basename(v))
def test_every_pair_the_sleep_sets_call_independent_commutes(version, walkers):
    c = D.census(Setup(version=load_version(version), max_ops=2, walkers=walkers), states=150)
    assert c.unsound == []
    assert sum(c.by_category.values()) + c.with_finding == c.pairs > 0
    assert all(c.commuting[cat] <= c.by_category[cat] for cat in D.CATEGORIES)
    # Pairs that write one doubleword and do not commute exist everywhere: the census
    # does take both orders.
    assert c.commuting["step-words"] < c.by_category["step-words"]


def test_three_cpus():
    r = _tool("--version", "seed", "--cpus", "3", "--max-ops", "1", "--states", "30", "--walkers", "off", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["cpus"] == 3 and doc["pairs"] > 0 and doc["unsound"] == []


def test_a_relation_that_calls_everything_independent_is_caught(monkeypatch):
    monkeypatch.setattr(D, "independent", lambda a, b: True)
    c = D.census(Setup(version="seed", max_ops=2, walkers=False), states=60)
    assert c.unsound and c.by_category["independent"] == c.pairs - c.with_finding
    assert c.commuting["independent"] < c.by_category["independent"]


def test_shared_doublewords_are_named_by_where_they_lie():
    c = D.census(Setup(version="seed", max_ops=2, walkers=False), states=150)
    assert {"mm_struct.context.lock", "struct page._mapcount/page_type"} <= set(c.regions)
    assert not any(r.startswith("frame ") for r, n in c.regions.most_common(3))


def _tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "dependence.py"), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_tool_prints_the_census_as_a_table_and_as_json():
    r = _tool("--version", "v515", "--max-ops", "1", "--states", "40", "--walkers", "off")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("v515, 2 CPUs, --max-ops 1, walkers off: the first 40 worlds (breadth first), ")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[3:9]] == [*D.CATEGORIES, "all"]
    r = _tool("--version", "v515", "--max-ops", "1", "--states", "40", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and set(doc) == {"version", "cpus", "max_ops", "walkers", "states", "complete", "pairs",
                                              "with_finding", "categories", "shared_parts", "regions", "kinds",
                                              "unsound"}
    assert list(doc["categories"]) == list(D.CATEGORIES) and doc["unsound"] == [] and doc["complete"] is False
    assert all(sum(doc["kinds"][cat].values()) == doc["categories"][cat]["pairs"] for cat in D.CATEGORIES)
    r = _tool("--version", "v515", "--max-ops", "1", "--states", "100000", "--walkers", "off")
    assert r.returncode == 0 and r.stdout.startswith("v515, 2 CPUs, --max-ops 1, walkers off: all ")


@pytest.mark.parametrize("args, message", [(["--version", "v99"], "unknown version"),
                                           (["--version", "nowhere.py"], "no such version file"),
                                           (["--states", "0"], "invalid count value"),
                                           (["--walkers", "maybe"], "invalid choice")])
def test_bad_arguments_get_one_line_and_exit_2(args, message):
    r = _tool(*args)
    assert r.returncode == 2 and r.stdout == "" and message in r.stderr and "Traceback" not in r.stderr


def test_the_census_says_complete_only_when_it_sampled_every_world():
    setup = Setup(version="v515", max_ops=1, walkers=False)
    everything = D.census(setup, states=10**6)
    assert everything.complete
    assert D.census(setup, states=everything.states).complete
    short = D.census(setup, states=everything.states - 1)
    assert not short.complete and short.states == everything.states - 1


def test_a_patch_whose_bug_fires_in_the_setup_gets_one_line_and_exit_3(tmp_path):
    from .test_incomplete import WRONG_HALF

    patch = tmp_path / "sets_p.py"
    patch.write_text(WRONG_HALF)
    r = _tool("--version", str(patch), "--max-ops", "1", "--states", "10")
    assert r.returncode == 3 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.startswith("dependence: the setup breaks a check before any interleaving: ")
    assert len(r.stderr.strip().splitlines()) == 1


def test_ctrl_c_gets_one_line_and_exit_130():
    import signal
    import time

    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "dependence.py"), "--states", "100000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # a background job ignores it
    time.sleep(5)                   # past the imports: the census runs for minutes
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and out == "" and err == "dependence: interrupted; no census printed\n"


def test_the_ceiling_narrows_where_one_cpu_commutes_and_keeps_the_seeds_findings():
    c = D.ceiling(Setup(version="seed", max_ops=2, walkers=False))
    assert c.full_complete and c.complete
    # The full search is the census's: the same worlds, breadth first, every one of them.
    assert c.full_states == D.census(Setup(version="seed", max_ops=2, walkers=False), states=10**6).states
    assert 0 < c.narrowed <= c.branching and c.states < c.full_states
    assert c.full_findings and c.findings <= c.full_findings
    assert {f.split("]")[0] for f in c.findings} == {f.split("]")[0] for f in c.full_findings}


def test_the_ceiling_narrows_nowhere_when_nothing_commutes(monkeypatch):
    monkeypatch.setattr(D, "commute", lambda ctx, a, b: False)
    c = D.ceiling(Setup(version="v515", max_ops=2, walkers=False))
    assert c.narrowed == 0 and c.branching > 0 and c.states == c.full_states and c.findings == c.full_findings


def test_the_tool_prints_the_ceiling_as_lines_and_as_json():
    r = _tool("--ceiling", "--version", "v515", "--max-ops", "1", "--walkers", "off")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "v515, 2 CPUs, --max-ops 1, walkers off (symmetry and subsumption off):"
    assert lines[1].split()[:2] == ["every", "transition"] and "narrowed at" in lines[2]
    r = _tool("--ceiling", "--version", "v515", "--max-ops", "1", "--walkers", "off", "--states", "5", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and set(doc) == {"version", "cpus", "max_ops", "walkers", "every_transition",
                                              "one_cpu_where_it_commutes"}
    assert doc["every_transition"] == {"states": 5, "complete": False, "findings": []}
    assert set(doc["one_cpu_where_it_commutes"]) == {"states", "complete", "findings", "branching", "narrowed"}
