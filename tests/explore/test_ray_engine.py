"""``explore --engine ray`` (pgalloc/explore/ray_engine.py) against the local search: on
a local Ray with 2 actors, the same states, transitions, depth, cut and findings with
the same shortest traces, since the states' ids are assigned in the local order."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgalloc.explore import Setup, explore, ray_engine
from pgalloc.explore.scenario import load_scenario
from s390emu.cli import main

ROOT = Path(__file__).resolve().parents[2]
PATCH = str(ROOT / "examples" / "patches" / "v66-relist-deferred.py")

if ray_engine.ray is None:
    if os.environ.get("CI"):
        pytest.fail("Ray is not installed: CI installs the test extra, which has it", pytrace=False)
    pytest.skip("Ray is not installed (pip install -e '.[test]')", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray with 2 CPUs for the whole module (starting one costs seconds)."""
    ray_engine.start(2)
    yield
    ray_engine.ray.shutdown()


def outcome(r):
    """What both engines must agree on."""
    return {"states": r.states, "transitions": r.transitions, "depth": r.depth, "complete": r.complete,
            "cut": r.cut, "ops_bound_reached": r.ops_bound_reached, "never_started": r.never_started,
            "findings": [(f.key, f.transitions) for f in r.violations],
            "trace": [f.trace for f in r.violations], "state": [f.state for f in r.violations]}


def both(setup_kw, **kw):
    local = explore(Setup(**setup_kw), workers=1, **kw)
    on_ray = ray_engine.explore(Setup(**setup_kw), workers=2, **kw)
    assert on_ray.engine == "ray" and local.engine == "local"
    return outcome(local), outcome(on_ray)


@pytest.mark.parametrize("setup_kw", [
    {"version": "seed", "max_ops": 2},                                   # findings
    {"version": "v66", "max_ops": 2},                                    # clean
    {"version": "seed", "max_ops": 2, "sleep_sets": True},               # re-exploration under sleep sets
    {"version": "seed", "max_ops": 2, "subsumption": False},
    {"version": "v64", "max_ops": 2, "max_states": 300},                 # cut at a level's end
    {"version": "v515", "max_ops": 2, "max_steps": 6},
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_the_ray_engine_explores_what_the_local_one_does(setup_kw):
    local, on_ray = both(setup_kw)
    assert on_ray == local
    assert local["states"] > 100
    if setup_kw["version"] == "seed":
        assert len(local["findings"]) == 5
    if "max_states" in setup_kw:
        assert local["cut"] == "max-states" and not local["complete"]


def test_the_first_level_with_a_finding_cuts_as_in_the_local_search():
    local, on_ray = both({"version": "seed", "max_ops": 2}, first_only=True)
    assert on_ray == local and local["cut"] == "first"


def test_a_scenario_file_explores_the_same_on_ray():
    setup = load_scenario(str(ROOT / "examples" / "scenarios" / "release-race.toml"))
    local = outcome(explore(setup, workers=1))
    on_ray = outcome(ray_engine.explore(load_scenario(str(ROOT / "examples" / "scenarios" / "release-race.toml")),
                                        workers=2))
    assert on_ray == local and local["findings"]


def test_the_partition_is_stable_and_keeps_budget_variants_together():
    keys = [bytes([i]) * 16 + bytes([j]) * 8 for i in range(40) for j in range(3)]
    owners = [ray_engine.owner_of(k, 2) for k in keys]
    assert {0, 1} == set(owners)                             # both actors own something
    assert all(len({ray_engine.owner_of(k[:16] + bytes([j]) * 8, 2) for j in range(5)}) == 1 for k in keys)
    # Not Python's salted hash(): another process puts every key on the same owner.
    code = ("from pgalloc.explore.ray_engine import owner_of; "
            f"print([owner_of(bytes([i]) * 16 + bytes([j]) * 8, 2) for i in range(40) for j in range(3)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "7", "PYTHONPATH": str(ROOT)}).stdout
    assert json.loads(out) == owners


def _json(args):
    r = CliRunner().invoke(main, ["explore", *args, "--no-progress", "--json"])
    d = json.loads(r.output)
    for k in ("seconds", "states_per_second", "engine"):
        d.pop(k)
    return r.exit_code, d


def test_the_cli_json_on_ray_is_the_local_one_but_for_time_and_engine():
    code, local = _json(["--version", PATCH, "--max-ops", "2", "--workers", "1"])
    code_ray, on_ray = _json(["--version", PATCH, "--max-ops", "2", "--workers", "2", "--engine", "ray"])
    assert code == code_ray == 4                 # a patch: each actor loads the version file too
    local["workers"] = 2
    assert on_ray == local
    r = CliRunner().invoke(main, ["explore", "--version", "v66", "--max-ops", "1", "--engine", "ray", "--workers", "2",
                                  "--no-progress", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["engine"] == "ray"


@pytest.mark.parametrize("args, message", [
    (["--ray-address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
    (["--workers", "3"], "the Ray cluster has 2 CPUs: --workers 3 needs one per actor"),
], ids=["nothing-listens", "too-few-cpus"])
def test_what_the_ray_engine_refuses_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["explore", "--version", "v66", "--max-ops", "1", "--engine", "ray", *args,
                                  "--no-progress"])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_ray_address_without_the_ray_engine_is_bad_usage():
    r = CliRunner().invoke(main, ["explore", "--version", "v66", "--max-ops", "1", "--ray-address", "auto"])
    assert r.exit_code == 2 and "--ray-address needs --engine ray" in r.output


def test_without_ray_installed_the_engine_says_how_to_get_it():
    # A process where `import ray` fails: the local engine runs, the ray engine is one line.
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['s390emu'] + sys.argv[1:]; "
            "from s390emu.cli import main; main()")
    base = [sys.executable, "-c", code, "explore", "--version", "v66", "--max-ops", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(base + ["--engine", "ray"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.strip() == "s390emu: " + ray_engine.MISSING, r.stderr
    r = subprocess.run(base + ["--workers", "1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
