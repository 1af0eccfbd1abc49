"""tools/fragmap.py and tools/pttree.py keep the CLI's conventions: usage on stderr and
exit 2, a bad file or output path exit 1 with one line, nothing overwritten without
--force and nothing but a regular file ever, a full or closed stdout one line and exit 1.
tools/bench_explore.py's --walkers columns hold what the explorer itself finds."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s390emu import dump
from pgalloc.demo import build_demo
from pgalloc.explore import Setup, explore

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def tool(name, *args, stdout=subprocess.PIPE, shell_suffix=""):
    if shell_suffix:
        cmd = " ".join([sys.executable, str(ROOT / "tools" / f"{name}.py"), *map(str, args)]) + shell_suffix
        return subprocess.run(cmd, shell=True, env=ENV, stderr=subprocess.PIPE, text=True, timeout=120)
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *map(str, args)], env=ENV,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "demo.vmcore"
    dump.save(path, build_demo("v66").machine)
    return path


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["--bogus", "x", "y"]])
def test_fragmap_usage_goes_to_stderr_with_exit_2(args):
    r = tool("fragmap", *args)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("usage: fragmap")


@pytest.mark.parametrize("args", [[], ["d", "--asce", "zz"], ["d", "--asce", "0x1_0000_0000_0000_0000"],
                                  ["d", "--cpu", "x"], ["d", "--asce", "1", "--cpu", "1"]])
def test_pttree_usage_goes_to_stderr_with_exit_2(args):
    r = tool("pttree", *args)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("usage: pttree")


def test_fragmap_never_overwrites_without_force_nor_anything_but_a_file(vmcore, tmp_path):
    svg = tmp_path / "f.svg"
    svg.write_text("mine")
    r = tool("fragmap", vmcore, svg)
    assert (r.returncode, r.stderr) == (1, f"fragmap: {svg}: exists (use --force to overwrite)\n")
    assert svg.read_text() == "mine"
    assert tool("fragmap", vmcore, svg, "--force").returncode == 0 and svg.read_text().startswith("<svg")
    os.mkfifo(tmp_path / "fifo")
    for path, kind in ((tmp_path / "fifo", "a fifo"), ("/dev/null", "a character device"), (tmp_path, "a directory")):
        r = tool("fragmap", vmcore, path, "--force")
        assert r.returncode == 1 and r.stderr == f"fragmap: {path}: is {kind} (only a regular file is written or replaced)\n"


@pytest.mark.parametrize("name", ["fragmap", "pttree"])
def test_a_bad_file_is_one_line_and_exit_1(name, tmp_path):
    (tmp_path / "random.bin").write_bytes(os.urandom(4096 * 4))
    (tmp_path / "short").write_bytes(b"\x7fELF" + bytes(10))
    for bad in (tmp_path / "missing", tmp_path, tmp_path / "short"):
        r = tool(name, bad, *([tmp_path / "o.svg"] if name == "fragmap" else ["--asce", "7"]))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith(f"{name}: {bad}"), r.stderr
    if name == "fragmap":
        r = tool(name, tmp_path / "random.bin", tmp_path / "o.svg")
        assert r.returncode == 1 and r.stderr.startswith(f"fragmap: {tmp_path / 'random.bin'}: VMCOREINFO")
        assert not (tmp_path / "o.svg").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_pttree_on_a_full_or_closed_stdout(vmcore):
    with open("/dev/full", "w") as full:
        r = tool("pttree", vmcore, stdout=full)
    assert (r.returncode, r.stderr) == (1, "pttree: cannot write to stdout: No space left on device\n")
    r = tool("pttree", vmcore, shell_suffix=" >&-")
    assert (r.returncode, r.stderr) == (1, "pttree: stdout is closed: the output would be lost\n")


# -- tools/bench_explore.py --walkers: the columns hold what explore() itself finds ---------------

SEARCH = ["states", "transitions", "seconds", "states/s", "violations", "complete"]
PLAIN = dict(movers=False, subsumption=False, local_steps=False, dead_locals=False)


def bench_table(tmp_path, *args):
    """Run bench_explore.py at --max-ops 1 with --markdown; its Markdown table as
    ``(header, rows)``, after checking that stdout prints the same header and rows."""
    md = tmp_path / "b.md"
    md.write_text("# mine\n")
    r = tool("bench_explore", "--max-ops", 1, "--workers", 1, *args, "--markdown", md)
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert text.startswith("# mine\n\n<!-- bench:explore -->\nMeasured ") and "<!-- /bench:explore -->" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    out = r.stdout.splitlines()
    assert out[0].split() == " ".join(header).split() + [out[0].split()[-2], out[0].split()[-1]]
    assert [line.split() for line in out[1:1 + len(rows)]] == rows
    return header, rows


def test_bench_explore_walkers_both_puts_each_search_and_the_on_off_ratios_side_by_side(tmp_path):
    header, rows = bench_table(tmp_path, "--versions", "seed,v64")
    assert header == (["version", "ops"] + [f"on {c}" for c in SEARCH] + [f"off {c}" for c in SEARCH]
                      + ["states on/off", "time on/off"])
    assert [row[:2] for row in rows] == [["seed", "1"], ["v64", "1"]]
    for row in rows:
        on, off = (explore(Setup(version=row[0], max_ops=1, walkers=w), workers=1) for w in (True, False))
        assert row[2:4] + row[6:8] == [f"{on.states:,}", f"{on.transitions:,}", str(len(on.violations)), "yes"]
        assert row[8:10] + row[12:14] == [f"{off.states:,}", f"{off.transitions:,}", str(len(off.violations)), "yes"]
        assert row[14] == f"{on.states / off.states:.2f}" and float(row[15]) > 0
    assert rows[0][6] == "1" and rows[0][12] == "0"      # seed's walker finding needs the walkers


def test_bench_explore_walkers_on_with_compare_keeps_the_plain_columns(tmp_path):
    header, rows = bench_table(tmp_path, "--versions", "seed", "--walkers", "on", "--compare")
    assert header == ["version", "ops"] + SEARCH + ["plain states", "plain s", "states x", "time x"]
    on = explore(Setup(version="seed", max_ops=1), workers=1)
    plain = explore(Setup(version="seed", max_ops=1, **PLAIN), workers=1)
    assert rows[0][2] == f"{on.states:,}" and rows[0][8] == f"{plain.states:,}"
    assert rows[0][10] == f"{plain.states / on.states:.2f}" and plain.states > on.states


def test_bench_explore_walkers_off_runs_the_search_without_walkers_only(tmp_path):
    header, rows = bench_table(tmp_path, "--versions", "v64", "--walkers", "off")
    assert header == ["version", "ops"] + SEARCH
    off = explore(Setup(version="v64", max_ops=1, walkers=False), workers=1)
    assert rows == [["v64", "1", f"{off.states:,}", f"{off.transitions:,}", *rows[0][4:6], "0", "yes"]]


def test_bench_explore_marks_a_ratio_of_a_cut_search_as_a_bound(tmp_path):
    full = {w: explore(Setup(version="seed", max_ops=1, walkers=w), workers=1).states for w in (True, False)}
    assert full[False] < 100 < full[True]               # 100 states cut the walkers-on search only
    _, rows = bench_table(tmp_path, "--versions", "seed", "--max-states", 100)
    assert (rows[0][7], rows[0][13]) == ("cut", "yes") and rows[0][14].startswith(">=")
    spec = importlib.util.spec_from_file_location("bench_explore", ROOT / "tools" / "bench_explore.py")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert [bench.ratio(3, 2, *cuts) for cuts in ((False, False), (True, False), (False, True), (True, True))] == \
        ["1.50", ">=1.50", "<=1.50", "~1.50"]


@pytest.mark.parametrize("value", ["sideways", "", "ON"])
def test_bench_explore_refuses_a_bad_walkers_value_with_its_usage_and_exit_2(value):
    r = tool("bench_explore", f"--walkers={value}")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("usage: bench_explore")
    assert "--walkers: invalid choice" in r.stderr and "Traceback" not in r.stderr


# -- tools/bench_explore.py --against COMMIT: this tree and COMMIT's, side by side ---------------

def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def against_table(tmp_path, commit, *args):
    """Run ``bench_explore.py --against COMMIT`` at --max-ops 1, --workers 1 with --markdown;
    its Markdown table as ``(header, rows)`` after checking stdout prints the same rows, and
    that the temporary worktree is gone from git's list afterwards."""
    before = git("worktree", "list", "--porcelain")
    md = tmp_path / "b.md"
    r = tool("bench_explore", "--against", commit, "--max-ops", 1, "--workers", 1, *args, "--markdown", md)
    assert r.returncode == 0, r.stderr
    assert git("worktree", "list", "--porcelain") == before
    text = md.read_text()
    assert text.startswith("<!-- bench:explore-against -->\nMeasured ") and "<!-- /bench:explore-against -->" in text
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    header, rows = cells[0], cells[2:]
    out = r.stdout.splitlines()
    assert "loadavg" in out[0] and [line.split() for line in out[1:1 + len(rows)]] == rows
    return header, rows


def test_bench_explore_against_head_finds_the_same_search_and_removes_its_worktree(tmp_path):
    label = git("rev-parse", "HEAD")[:7]
    header, rows = against_table(tmp_path, "HEAD", "--versions", "v64", "--walkers", "off", "--repeat", 2)
    assert header == ["version", "ops", "walkers", "workers", "states", "this s", f"{label} s", "this states/s",
                      f"{label} states/s", "x", "same", "this runs", f"{label} runs"]
    assert [row[:4] for row in rows] == [["v64", "1", "off", "1"]]
    for row in rows:
        off = explore(Setup(version=row[0], max_ops=1, walkers=False), workers=1)
        assert row[4] == f"{off.states:,}" and row[10] == "yes" and float(row[9]) > 0
        assert all("-" in cell for cell in row[11:13])       # two runs each: fastest-slowest


def test_bench_explore_against_the_commit_before_walkers_runs_its_old_api(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "fa4c2bc^{commit}"]).returncode:
        pytest.skip("fa4c2bc is not in this clone's history (a shallow clone)")
    _, rows = against_table(tmp_path, "fa4c2bc", "--versions", "seed", "--walkers", "off", "--repeat", 1)
    off = explore(Setup(version="seed", max_ops=1, walkers=False), workers=1)
    assert rows[0][4] == f"{off.states:,}" and rows[0][10] == "yes"
    r = tool("bench_explore", "--against", "fa4c2bc", "--max-ops", 1, "--workers", 1, "--walkers", "on")
    assert (r.returncode, r.stdout) == (2, "") and r.stderr.count("\n") == 1 and "no walkers" in r.stderr


def test_bench_explore_against_a_commit_git_cannot_resolve_is_one_line_and_exit_2():
    r = tool("bench_explore", "--against", "no-such-commit-x", "--max-ops", 1)
    assert (r.returncode, r.stdout) == (2, "") and r.stderr.count("\n") == 1 and "no-such-commit-x" in r.stderr


@pytest.mark.parametrize("other", [["--engines", "local"], ["--compare"], ["--checkpoint"]])
def test_bench_explore_against_with_another_mode_is_a_usage_error(other):
    r = tool("bench_explore", "--against", "HEAD", *other)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("usage: bench_explore")
    assert "--against: not with" in r.stderr and "Traceback" not in r.stderr
