"""``explore --engine ray --checkpoint DIR``: on a local Ray with 2 actors, a checkpointed
search is the one without a checkpoint and the local one; a driver killed with SIGKILL,
or an actor killed, leaves the last level's end, from which either engine at any number
of workers resumes to the uninterrupted result; a foreign or damaged checkpoint is one
line and exit 6 or 1, before Ray starts."""

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgalloc.explore import Setup, explore, ray_engine
from pgalloc.explore import checkpoint as C
from s390emu.cli import main

from .test_checkpoint import SAME, _cli
from .test_ray_engine import local_ray, outcome  # noqa: F401 - local_ray: the module's Ray, autouse

cli_explore = importlib.import_module("s390emu.commands.explore")     # the module, not its command
ROOT = Path(__file__).resolve().parents[2]
KILL_AT = 6         # the level the killed driver is in when it dies: level 5's checkpoint is written
SEED = ["--version", "seed", "--max-ops", "2"]

if ray_engine.ray is None:
    if os.environ.get("CI"):
        pytest.fail("Ray is not installed: CI installs the test extra, which has it", pytrace=False)
    pytest.skip("Ray is not installed (pip install -e '.[test]')", allow_module_level=True)

# The driver, on the tests' Ray (its address in argv[2]), killed with SIGKILL once it has
# expanded level KILL_AT and before it writes that level's checkpoint; its actors die with it.
KILLED = f"""
import os, signal, sys
from pgalloc.explore import Setup, ray_engine
def progress(depth, states, frontier):
    if depth == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
ray_engine.explore(Setup(version="seed", max_ops=2), workers=2, progress=progress, checkpoint=sys.argv[1],
                   address=sys.argv[2])
"""


@pytest.fixture(scope="module")
def whole():
    """The seed's uninterrupted search at --max-ops 2, as the local CLI reports it."""
    code, d = _cli(*SEED, "--workers", "1", "--json")
    assert code == 4 and len(d["violations"]) == 5
    return d


@pytest.mark.parametrize("kw", [{"version": "seed", "max_ops": 2}, {"version": "v64", "max_ops": 2, "sleep_sets": True},
                                {"version": "v64", "max_ops": 2, "subsumption": False}],
                         ids=["seed", "sleep-sets", "no-subsumption"])
def test_a_checkpointed_ray_search_is_the_plain_one_and_the_local_one(tmp_path, kw):
    on_ray = ray_engine.explore(Setup(**kw), workers=2, checkpoint=tmp_path)
    assert outcome(on_ray) == outcome(ray_engine.explore(Setup(**kw), workers=2)) \
        == outcome(explore(Setup(**kw), workers=1))
    man = C.check_directory(tmp_path, Setup(**kw))
    assert (man["engine"], man["actors"], man["depth"], man["states"]) == ("ray", 2, on_ray.depth, on_ray.states)
    # The same files the local engine writes: its loader reads the same search back.
    local_dir = tmp_path / "local"
    explore(Setup(**kw), workers=1, checkpoint=local_dir)
    a, b = C.load(tmp_path, man), C.load(local_dir, C.check_directory(local_dir, Setup(**kw)))
    assert (a.visited, a.sleeps, a.parents, a.variants, a.transitions) == (b.visited, b.sleeps, b.parents,
                                                                            b.variants, b.transitions)
    assert C.check_directory(local_dir, Setup(**kw))["engine"] == "local"


def test_a_killed_driver_resumes_on_either_engine_to_the_uninterrupted_result(tmp_path, whole):
    d = tmp_path / "ck"
    address = ray_engine.ray.get_runtime_context().gcs_address
    p = subprocess.run([sys.executable, "-c", KILLED, str(d), address], capture_output=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    man = json.loads((d / C.MANIFEST).read_text())
    assert (man["engine"], man["actors"], man["depth"]) == ("ray", 2, KILL_AT - 1) and man["frontier"] > 0
    for i, (engine, workers) in enumerate([("ray", "2"), ("ray", "1"), ("local", "1")]):
        copy = tmp_path / f"ck{i}"
        copy.mkdir()
        for f in d.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        code, resumed = _cli(*SEED, "--engine", engine, "--workers", workers, "--checkpoint", str(copy), "--json")
        assert code == 4 and resumed["resumed_depth"] == KILL_AT - 1, (engine, workers)
        assert {k: resumed[k] for k in SAME} == {k: whole[k] for k in SAME}, (engine, workers)
    assert whole["states"] > 2 * man["states"]
    # The finished checkpoint reports the result again, searching nothing.
    code, again = _cli(*SEED, "--engine", "ray", "--workers", "2", "--checkpoint", str(tmp_path / "ck0"), "--json")
    assert code == 4 and again["resumed_depth"] == whole["depth"]
    assert {k: again[k] for k in SAME} == {k: whole[k] for k in SAME}


def test_a_cut_ray_search_resumes_with_a_larger_bound(tmp_path, whole):
    code, cut = _cli(*SEED, "--engine", "ray", "--workers", "2", "--checkpoint", str(tmp_path), "--max-states", "1500",
                     "--json")
    assert code == 4 and cut["cut"] == "max-states" and cut["states"] < whole["states"]
    code, rest = _cli(*SEED, "--engine", "ray", "--workers", "2", "--checkpoint", str(tmp_path), "--json")
    assert code == 4 and rest["resumed_depth"] == cut["depth"]
    assert {k: rest[k] for k in SAME} == {k: whole[k] for k in SAME}


def _owner_processes() -> list[int]:
    """The pids of this process's Ray actors of class ``Owner`` (descendants of it)."""
    parent = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out = []
    for pid in parent:
        q = pid
        while q > 1 and q != os.getpid():
            q = parent.get(q, 0)
        if q == os.getpid():
            try:
                if (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(b"ray::Owner"):
                    out.append(pid)
            except OSError:
                pass
    return out


class KillingProgress:
    """The CLI's progress meter, replaced: at depth 4 it kills one of the search's actors."""

    def __init__(self, setup):
        self.killed = []

    def __call__(self, depth, states, frontier):
        if depth == 4 and not self.killed:
            owners = _owner_processes()
            assert len(owners) == 2, owners
            os.kill(owners[0], signal.SIGKILL)
            self.killed.append(owners[0])

    def close(self):
        pass


def test_a_dead_actor_ends_the_search_as_a_dead_worker_and_the_checkpoint_resumes(tmp_path, whole, monkeypatch):
    d = tmp_path / "ck"
    monkeypatch.setattr(cli_explore, "Progress", KillingProgress)
    r = CliRunner().invoke(main, ["explore", *SEED, "--engine", "ray", "--workers", "2", "--checkpoint", str(d),
                                  "--progress", "--json"])
    assert r.exit_code == 5, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("s390emu: a Ray actor died") and str(d) in lines[0], r.stderr
    died = json.loads(r.stdout)
    assert died["cut"] == "worker-died" and not died["complete"]
    man = json.loads((d / C.MANIFEST).read_text())
    assert man["depth"] == 3            # level 4's checkpoint asked the dead actor for its part
    monkeypatch.undo()
    code, rest = _cli(*SEED, "--engine", "ray", "--workers", "2", "--checkpoint", str(d), "--json")
    assert code == 4 and rest["resumed_depth"] == 3
    assert {k: rest[k] for k in SAME} == {k: whole[k] for k in SAME}


def test_a_foreign_or_damaged_checkpoint_is_one_line_and_its_exit_code_on_ray(tmp_path):
    d = tmp_path / "ck"
    args = ["--version", "v64", "--max-ops", "1", "--engine", "ray", "--workers", "2", "--checkpoint", str(d)]
    assert CliRunner().invoke(main, ["explore", "--no-progress", *args]).exit_code == 0
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = CliRunner().invoke(main, ["explore", "--no-progress", *args[:2], "--max-ops", "2", *args[4:]])
    assert r.exit_code == 6 and r.output.count("\n") == 1, r.output
    assert "holds a checkpoint of another search: max_ops 1 (here 2)" in r.output
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    man = json.loads((d / C.MANIFEST).read_text())
    (d / C.MANIFEST).write_text(json.dumps(dict(man, head=dict(man["head"], sha256="0" * 64))))
    r = CliRunner().invoke(main, ["explore", "--no-progress", *args])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "does not match its manifest's SHA-256" in r.output
    (d / C.MANIFEST).write_text(json.dumps(dict(man, format=99)))
    r = CliRunner().invoke(main, ["explore", "--no-progress", *args])
    assert r.exit_code == 6 and r.output.count("\n") == 1 and "checkpoint format 99" in r.output
