"""``explore --checkpoint DIR`` (issue 16, point 4): a search killed with SIGKILL resumes
from its last level's checkpoint to the result of an uninterrupted run; a kill while a
checkpoint is written leaves the previous one; another search's checkpoint is refused
(exit 6) and left as it is."""

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgalloc.explore import Setup, explore
from pgalloc.explore import checkpoint as C
from pgalloc.registry import load_version
from s390emu.cli import main

ROOT = Path(__file__).resolve().parents[2]
KILL_AT = 6         # the level the killed search is in when it dies: level 5's checkpoint is written

# The search, killed with SIGKILL (its whole process group: the pool's workers too) once it
# has expanded level KILL_AT and before it writes that level's checkpoint.
KILLED = f"""
import os, signal, sys
from pgalloc.explore import Setup, explore
def progress(depth, states, frontier):
    if depth == {KILL_AT}:
        os.killpg(os.getpgrp(), signal.SIGKILL)
explore(Setup(version="seed", max_ops=2), workers=2, progress=progress, checkpoint=sys.argv[1])
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _cli(*args) -> tuple[int, dict | str]:
    r = CliRunner().invoke(main, ["explore", "--no-progress", *args])
    try:
        return r.exit_code, json.loads(r.output)
    except ValueError:
        return r.exit_code, r.output


SAME = ("states", "transitions", "depth", "complete", "cut", "ops_bound_reached", "violations")


def test_a_search_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(tmp_path):
    d = tmp_path / "ck"
    p = subprocess.run([sys.executable, "-c", KILLED, str(d)], env=_env(), capture_output=True, timeout=300,
                       start_new_session=True)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    man = json.loads((d / C.MANIFEST).read_text())
    assert man["format"] == C.FORMAT and man["depth"] == KILL_AT - 1 and man["frontier"] > 0
    code, resumed = _cli("--version", "seed", "--max-ops", "2", "--workers", "1", "--checkpoint", str(d), "--json")
    code0, whole = _cli("--version", "seed", "--max-ops", "2", "--workers", "2", "--json")
    assert code == code0 == 4
    assert resumed["resumed_depth"] == KILL_AT - 1 and whole["resumed_depth"] is None
    assert {k: resumed[k] for k in SAME} == {k: whole[k] for k in SAME}
    assert len(whole["violations"]) == 5 and whole["states"] > 2 * man["states"]
    # Resuming the finished search's checkpoint gives the result again, searching nothing.
    code, again = _cli("--version", "seed", "--max-ops", "2", "--checkpoint", str(d), "--json")
    assert code == 4 and again["resumed_depth"] == whole["depth"]
    assert {k: again[k] for k in SAME} == {k: whole[k] for k in SAME}


@pytest.mark.parametrize("kw", [{}, {"sleep_sets": True}, {"subsumption": False}])
def test_a_search_cut_by_a_bound_resumes_with_a_larger_one(tmp_path, kw):
    setup = lambda **more: Setup(version="v515", max_ops=2, **kw, **more)      # noqa: E731
    whole = explore(setup(), workers=1)
    cut = explore(setup(max_states=300), workers=1, checkpoint=tmp_path)
    assert cut.cut == "max-states" and cut.states < whole.states
    man = C.check_directory(tmp_path, setup())
    again = explore(setup(max_states=300), workers=1, resume=C.load(tmp_path, man))
    assert (again.cut, again.states, again.depth) == (cut.cut, cut.states, cut.depth)      # the same cut at once
    half = explore(setup(max_states=1200), workers=1, checkpoint=tmp_path, resume=C.load(tmp_path, man))
    assert half.cut == "max-states" and cut.states < half.states < whole.states         # resumed twice
    man = C.check_directory(tmp_path, setup())
    assert len(man["parts"]) == half.depth
    rest = explore(setup(), workers=1, checkpoint=tmp_path, resume=C.load(tmp_path, man))
    assert rest.complete and rest.resumed_depth == half.depth
    assert (rest.states, rest.transitions, rest.depth) == (whole.states, whole.transitions, whole.depth)
    assert [v.as_dict() for v in rest.violations] == [v.as_dict() for v in whole.violations] != []


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one(tmp_path, monkeypatch):
    class Killed(BaseException):
        pass

    saved = []
    real = C.Writer._save

    def dying(self, level):
        if len(saved) == 3:                     # the fourth level's checkpoint dies half written
            monkeypatch.setattr(C._Hashing, "write", lambda self, b: (_ for _ in ()).throw(Killed()))
        real(self, level)
        saved.append(level.depth)

    monkeypatch.setattr(C.Writer, "_save", dying)
    with pytest.raises(Killed):
        explore(Setup(version="v64", max_ops=2), workers=1, checkpoint=tmp_path)
    monkeypatch.undo()
    assert saved == [1, 2, 3] and (tmp_path / "part-00004.pickle.tmp").exists()
    man = C.check_directory(tmp_path, Setup(version="v64", max_ops=2))
    assert man["depth"] == 3
    rest = explore(Setup(version="v64", max_ops=2), workers=1, checkpoint=tmp_path, resume=C.load(tmp_path, man))
    whole = explore(Setup(version="v64", max_ops=2), workers=1)
    assert (rest.states, rest.transitions, rest.depth, rest.complete) == (whole.states, whole.transitions,
                                                                         whole.depth, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [C.MANIFEST, f"head-{whole.depth:05d}.pickle"] + [
        f"part-{i:05d}.pickle" for i in range(1, whole.depth + 1)]


def _files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_another_search_checkpoint_is_refused_with_exit_6_and_left_as_it_is(tmp_path):
    d = tmp_path / "ck"
    code, first = _cli("--version", "v64", "--max-ops", "1", "--workers", "1", "--checkpoint", str(d), "--json")
    assert code == 0 and first["resumed_depth"] is None
    before = _files(d)
    for other, says in ((["--version", "v66", "--max-ops", "1"], "version 'v64' (here 'v66')"),
                        (["--version", "v64", "--max-ops", "2"], "max_ops 1 (here 2)"),
                        (["--version", "v64", "--max-ops", "1", "--no-walkers"], "walkers True (here False)")):
        r = CliRunner().invoke(main, ["explore", "--no-progress", *other, "--checkpoint", str(d)])
        assert r.exit_code == 6, r.output
        assert r.output.count("\n") == 1 and "holds a checkpoint of another search" in r.output and says in r.output
        assert _files(d) == before
    code, again = _cli("--version", "v66", "--max-ops", "1", "--checkpoint", str(d), "--restart", "--json")
    assert code == 0 and again["resumed_depth"] is None and again["version"] == "v66"
    assert json.loads((d / C.MANIFEST).read_text())["setup"]["version"] == "v66"


def test_an_unknown_format_other_files_and_a_damaged_checkpoint_are_refused(tmp_path):
    d = tmp_path / "ck"
    args = ["explore", "--no-progress", "--version", "v64", "--max-ops", "1", "--checkpoint", str(d)]
    assert CliRunner().invoke(main, args).exit_code == 0
    man = json.loads((d / C.MANIFEST).read_text())
    (d / C.MANIFEST).write_text(json.dumps(dict(man, format=99)))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 6 and "checkpoint format 99, this s390emu reads format 1 only" in r.output
    (d / C.MANIFEST).write_text(json.dumps(dict(man, head=dict(man["head"], sha256="0" * 64))))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "does not match its manifest's SHA-256" in r.output
    (d / C.MANIFEST).write_text("{")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "not a checkpoint manifest" in r.output and r.output.count("\n") == 1
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    r = CliRunner().invoke(main, args[:-1] + [str(other)])
    assert r.exit_code == 6 and "holds files that are not a checkpoint's (todo.txt)" in r.output
    assert _files(other) == {"todo.txt": b"mine"}
    r = CliRunner().invoke(main, args[:-2] + ["--restart"])
    assert r.exit_code == 2 and "--restart needs --checkpoint DIR" in r.output


@pytest.mark.parametrize("data, says", [(b"not a pickle", "not a checkpoint's data"),
                                        (pickle.dumps((0, [])), "not a level's part"),
                                        (pickle.dumps({"depth": 1}), "holds no search level")],
                         ids=["no-pickle", "part", "head"])
def test_data_files_matching_their_hash_but_not_a_checkpoint_s_are_one_clear_line(tmp_path, data, says):
    # A manifest edited by hand (or another program's files): hashes that match, content that does not.
    d = tmp_path / "ck"
    args = ["explore", "--no-progress", "--version", "v64", "--max-ops", "1", "--checkpoint", str(d)]
    assert CliRunner().invoke(main, args).exit_code == 0
    man = json.loads((d / C.MANIFEST).read_text())
    entry = man["head"] if says == "holds no search level" else man["parts"][0]
    (d / entry["file"]).write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (d / C.MANIFEST).write_text(json.dumps(man))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and says in r.output and r.output.count("\n") == 1, r.output


def test_a_version_file_s_content_is_part_of_the_checkpoint_s_identity(tmp_path):
    patch = tmp_path / "ck_mine.py"
    patch.write_text('from pgalloc.v66 import *\nNAME = "ck-mine"\n')
    setup = Setup(version=load_version(str(patch)))
    first = C.code_identity(setup)
    assert first != C.code_identity(Setup(version="v66")) and first == C.code_identity(setup)
    patch.write_text('from pgalloc.v66 import *\nNAME = "ck-mine"\n# changed\n')
    assert C.code_identity(setup) != first


@pytest.mark.parametrize("sleep_sets", [False, True])
def test_each_level_writes_what_it_added_and_loads_back_whole(tmp_path, sleep_sets):
    setup = Setup(version="v64", sleep_sets=sleep_sets)
    lv = C.Level(depth=1, frontier=[(1, b"w1", frozenset())], visited={b"k0": 0, b"k1": 1},
                 sleeps={0: frozenset(), 1: frozenset({"a"})}, parents=[(-1, None), (0, ("step", 0))],
                 variants={}, kinds={}, begun=set())
    w = C.Writer(tmp_path, setup, lv)
    w.save(lv)
    lv.depth, lv.frontier = 2, [(2, b"w2", frozenset())]
    lv.visited.update({b"k2": 2, b"k3": 1})             # k3: subsumed by state 1
    lv.parents.append((1, ("gp",)))
    lv.sleeps[2] = frozenset()
    if sleep_sets:
        lv.sleeps[1] = frozenset()                      # an old state's sleep set narrowed
    lv.kinds = {("x",): "finding"}
    w.save(lv)
    man = C.check_directory(tmp_path, setup)
    assert [e["file"] for e in man["parts"]] == ["part-00001.pickle", "part-00002.pickle"]
    back = C.load(tmp_path, man)
    assert (back.visited, back.sleeps, back.parents, back.frontier, back.kinds, back.depth) == (
        lv.visited, lv.sleeps, lv.parents, lv.frontier, lv.kinds, 2)
    assert back.variants == {b"k0": [(b"k0", 0)], b"k1": [(b"k1", 1)], b"k2": [(b"k2", 2)]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [C.MANIFEST, "head-00002.pickle", "part-00001.pickle",
                                                         "part-00002.pickle"]
