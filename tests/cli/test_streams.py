"""stdout full (``> /dev/full``) or closed: one line on stderr and exit 1, for every
command (the CLI's entry point handles it once), never a traceback or a silent loss."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

COMMANDS = [["demo"], ["translate", "0x10000000"], ["pages"], ["check"], ["ptdump"], ["dump", "info", "{vm}"],
            ["--help"]]


def cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "s390emu.cli", *args], env=ENV, capture_output=False,
                          stderr=subprocess.PIPE, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "demo.vmcore"
    subprocess.run([sys.executable, "-m", "s390emu.cli", "dump", "save", str(path)], env=ENV, check=True,
                   capture_output=True)
    return path


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_full_stdout_is_one_line_and_exit_1(args, vmcore):
    with open("/dev/full", "w") as full:
        r = cli([a.format(vm=vmcore) for a in args], stdout=full)
    assert r.returncode == 1
    assert r.stderr == "s390emu: cannot write to stdout: No space left on device\n"


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda a: a[0])
def test_a_closed_stdout_is_one_line_and_exit_1(args):
    r = subprocess.run(f"{sys.executable} -m s390emu.cli {' '.join(args)} >&-", shell=True, env=ENV,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (1, "s390emu: stdout is closed: the output would be lost\n")
