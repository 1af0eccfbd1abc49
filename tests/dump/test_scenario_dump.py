"""``dump save --scenario``: the state a scenario leaves, then checked and listed from the dump."""

import json
from pathlib import Path

import pytest
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


PATCH = str(Path(__file__).resolve().parents[2] / "examples" / "patches" / "v66-relist-deferred.py")


def test_a_patchs_dump_is_checked_with_its_version_file(tmp_path):
    # v6.6 without the PageActive test relists the deferred half: the dump keeps it listed.
    core = tmp_path / "patch.vmcore"
    r = run("dump", "save", "--scenario", DEFER_BOTH, "--version", PATCH, str(core))
    assert r.exit_code == 0 and "list_membership" in r.stderr
    # (A fresh process that has not loaded the patch cannot read the dump: see
    # test_a_dump_of_an_unknown_allocator_is_refused_by_name.)
    r = run("check", "--dump", str(core), "--version", PATCH, "--json")
    assert r.exit_code == 4
    d = json.loads(r.stdout)
    assert d["version"] == "v66-relist-deferred"
    assert [v["invariant"] for v in d["violations"]] == ["list_membership"]
    assert run("pages", "--dump", str(core), "--version", PATCH).exit_code == 0
    # A built-in name with --dump: the dump names its allocator itself.
    assert run("check", "--dump", str(core), "--version", "v66").exit_code == 2


def test_every_command_that_builds_the_demo_takes_a_version_file(tmp_path):
    r = run("demo", "--version", PATCH)
    assert r.exit_code == 0 and f"s390emu translate --demo {PATCH} 0x10000000" in r.stdout
    assert run("translate", "--demo", PATCH, "0x10000000").exit_code == 0
    assert run("ptdump", "--demo", PATCH).exit_code == 0
    assert run("check", "--version", PATCH).exit_code == 0
    r = run("dump", "save", "--version", str(tmp_path / "missing.py"), str(tmp_path / "x.vmcore"))
    assert r.exit_code == 1 and "no such version file" in r.stderr
    assert run("demo", "--version", "v99").exit_code == 2


def test_a_dump_of_an_unknown_allocator_is_refused_by_name():
    from pgalloc.attach import AttachError, version_of
    with pytest.raises(AttachError, match="S390EMU_PGALLOC=my-patch is not an allocator version .*version file"):
        version_of({"S390EMU_PGALLOC": "my-patch", "OSRELEASE": "6.6.0-s390emu-my-patch"})
