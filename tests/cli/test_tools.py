"""tools/fragmap.py and tools/pttree.py keep the CLI's conventions: usage on stderr and
exit 2, a bad file or output path exit 1 with one line, nothing overwritten without
--force and nothing but a regular file ever, a full or closed stdout one line and exit 1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from s390emu import dump
from pgalloc.demo import build_demo

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
