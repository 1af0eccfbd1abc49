"""``dump save --scenario``: the state a scenario leaves, then checked and listed from the dump."""

import json
from pathlib import Path

from click.testing import CliRunner

from s390emu.cli import main

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
DEFER_BOTH = str(SCENARIOS / "defer-both-halves.toml")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_the_seeds_stuck_deferred_half_survives_into_the_dump_and_check_names_it(tmp_path):
    core = tmp_path / "seed.vmcore"
    r = run("dump", "save", "--scenario", DEFER_BOTH, "--version", "seed", str(core))
    assert r.exit_code == 0 and "rcu_head" in r.stderr
    r = run("check", "--dump", str(core), "--json")
    assert r.exit_code == 4
    (v,) = json.loads(r.stdout)["violations"]
    assert v["invariant"] == "rcu_head" and v["byte"] == 0x28
    frames = json.loads(run("pages", "--dump", str(core), "--json").stdout)["frames"]
    assert [(f["byte"], [h["state"] for h in f["halves"]]) for f in frames] == [(0x28, ["free", "deferred"])]


def test_the_merged_version_frees_both_deferred_halves(tmp_path):
    core = tmp_path / "v66.vmcore"
    assert run("dump", "save", "--scenario", DEFER_BOTH, str(core)).exit_code == 0
    r = run("check", "--dump", str(core))
    assert r.exit_code == 0, r.output
    assert json.loads(run("pages", "--dump", str(core), "--json").stdout)["frames"] == []


def test_a_bad_scenario_file_exits_1_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "v64"\n[[cpu]]\nops = ["frobnicate T0"]\n')
    r = run("dump", "save", "--scenario", str(bad), str(tmp_path / "x.vmcore"))
    assert r.exit_code == 1 and "frobnicate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.vmcore").exists()
