"""Answers that must say what is true: a corrupt VMCOREINFO gets one verdict from check and
pages, random bytes are called what they are, tables outside storage are warned about."""

import json
import os

import pytest
from click.testing import CliRunner

from pgalloc.demo import build_demo
from s390emu import dump
from s390emu.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _with_vmcoreinfo(path, key, value):
    """The v66 demo saved with one VMCOREINFO line of its note changed."""
    m = build_demo("v66").machine
    notes = []
    for n in dump._machine_notes(m):
        if n.name == "VMCOREINFO":
            lines = [f"{key}={value}" if line.startswith(key + "=") else line for line in n.desc.decode().splitlines()]
            n = n._replace(desc=("\n".join(lines) + "\n").encode())
        notes.append(n)
    dump.save(path, m, notes=notes)
    return path


@pytest.mark.parametrize("key,value", [("SYMBOL(mem_map)", "zzzz"), ("OFFSET(page._refcount)", "99")])
def test_a_corrupt_vmcoreinfo_cannot_be_checked_by_check_nor_pages(tmp_path, key, value):
    path = _with_vmcoreinfo(tmp_path / "bad.vmcore", key, value)
    for command in ("check", "pages"):
        r = run(command, "--dump", path)
        assert r.exit_code == 1, (command, r.output)
        assert r.stdout == "" and r.stderr.count("\n") == 1 and "clean" not in r.stderr, r.stderr
    assert f"VMCOREINFO {key}={value} is not the s390emu kernel's" in run("check", "--dump", path).stderr


def test_random_bytes_are_called_a_raw_image_without_cpu_state(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(16 * 4096))
    r = run("translate", "--dump", path, "0x1000")
    assert r.exit_code == 2
    assert (f"{path}: not an ELF core (no ELF magic), taken as a raw image holding no VMCOREINFO, "
            "no CPU state, so --asce is required") in r.stderr
    r = run("dump", "info", path)
    assert r.exit_code == 0 and "s390x" not in r.stdout
    assert "System arch........: unknown: not an ELF core (no ELF magic) and no VMCOREINFO" in r.stdout
    r = run("translate", "--image", path, "0x1000")
    assert r.exit_code == 2 and f"{path}: a raw image (--image), no CPU state, so --asce is required" in r.stderr


def test_an_s390emu_dump_is_still_s390x(tmp_path):
    assert run("dump", "save", tmp_path / "d").exit_code == 0
    assert "System arch........: s390x (64 bit)" in run("dump", "info", tmp_path / "d").stdout


def test_ptdump_warns_of_a_table_outside_storage(tmp_path):
    r = run("ptdump", "--demo", "--asce", "0x7fff0000b")
    assert r.exit_code == 0 and "8P PGD I" in r.stdout
    assert r.stderr == ("s390emu: warning: the R2T at 0x7fff00000 (for 0x0-0x1fffffffffffff) lies outside storage "
                        "(0x4000000 bytes): listed as invalid; DAT raises an addressing exception (0x05) there\n")
    t = run("translate", "--asce", "0x7fff0000b", "0x0")
    assert t.exit_code == 3 and "(0x05)" in t.stdout
    assert run("ptdump", "--demo").stderr == ""


def test_pages_all_adds_the_crst_frames_of_every_live_mm():
    d = build_demo("v66")
    plain = json.loads(run("pages", "--json").stdout)["frames"]
    every = json.loads(run("pages", "--all", "--json").stdout)["frames"]
    added = [f for f in every if f not in plain]
    assert [f for f in every if f in plain] == plain and added
    assert {int(f["crst_mm"], 16) for f in added} == {d.mm3, d.mm5}
    assert {d.asce3 & ~0xFFF, d.asce5 & ~0xFFF} <= {int(f["frame"], 16) for f in added}
    r = run("pages", "--all")
    assert r.exit_code == 0 and r.stdout.count(" crst       crst ") == len(added)
