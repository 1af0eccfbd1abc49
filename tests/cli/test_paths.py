"""Paths the user gives: an output that is no regular file is refused by name and never
replaced (``--force`` or not), a directory where a file is expected is exit 1 with one
line, and every output path is checked before the work is done."""

import os
import socket

import pytest
from click.testing import CliRunner

from s390emu.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "demo.vmcore"
    assert run("dump", "save", path).exit_code == 0
    return path


def _specials(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    (tmp_path / "dir").mkdir()
    return {"a fifo": fifo, "a socket": sock, "a directory": tmp_path / "dir", "a character device": "/dev/null"}


OUTPUTS = {
    "dump save": lambda out, vm: ["dump", "save", "--force", out],
    "dump save --from": lambda out, vm: ["dump", "save", "--force", "--from", vm, out],
    "pages --svg": lambda out, vm: ["pages", "--dump", vm, "--force", "--svg", out],
    "ptdump --dot": lambda out, vm: ["ptdump", "--dump", vm, "--force", "--dot", out],
}


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_an_output_that_is_no_regular_file_is_refused_and_kept(tmp_path, vmcore, command):
    for kind, path in _specials(tmp_path).items():
        before = os.stat(path)
        r = run(*OUTPUTS[command](path, vmcore))
        assert r.exit_code == 1, (kind, r.output)
        assert r.stderr.count("\n") == 1 and f"{path}: is {kind} (only a regular file" in r.stderr, r.stderr
        after = os.stat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []     # no temporary left


def test_the_dump_writer_never_renames_over_a_fifo(tmp_path):
    from s390emu import dump
    from s390emu.memory import PhysicalMemory

    os.mkfifo(tmp_path / "f")
    with pytest.raises(dump.DumpError, match="is a fifo"):
        dump.save(tmp_path / "f", PhysicalMemory(1 << 20), force=True)
    assert os.path.exists(tmp_path / "f") and not (tmp_path / "f").is_file()


def test_an_output_path_is_checked_before_the_work(tmp_path, vmcore):
    (tmp_path / "kept.svg").write_text("mine")
    r = run("pages", "--dump", tmp_path / "missing", "--svg", tmp_path / "kept.svg")
    assert r.exit_code == 1 and "kept.svg: exists (use --force to overwrite --svg)" in r.stderr
    r = run("ptdump", "--dump", vmcore, "--dot", tmp_path / "no" / "t.dot")
    assert (r.exit_code, r.stdout) == (1, "") and "No such file or directory" in r.stderr
    assert (tmp_path / "kept.svg").read_text() == "mine"


INPUTS = [
    ["dump", "info", "{d}"], ["check", "--dump", "{d}"], ["pages", "--dump", "{d}"],
    ["translate", "--dump", "{d}", "0x1"], ["translate", "--image", "{d}", "--asce", "0x7", "0x1"],
    ["ptdump", "--dump", "{d}"], ["dump", "save", "--from", "{d}", "{o}"],
    ["dump", "save", "--scenario", "{d}", "{o}"],
]


@pytest.mark.parametrize("args", INPUTS, ids=lambda a: " ".join(a[:2]))
def test_a_directory_given_as_a_file_is_exit_1_with_one_line(tmp_path, args):
    r = run(*[a.format(d=tmp_path, o=tmp_path / "out.vmcore") for a in args])
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and str(tmp_path) in r.stderr, r.stderr
