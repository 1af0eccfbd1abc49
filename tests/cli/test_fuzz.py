"""A fuzz of the whole CLI: generated bad arguments and bad files for every command and
every option, read from the commands themselves (a new option is fuzzed without a line
here).  Whatever comes in, the CLI answers with a documented exit code (0, 1, 2, 3, 4,
and 5 for explore), never a traceback; an exit 1 is one line on stderr; and nothing the
user gave is changed (the good dump, a fifo, /dev/null, an existing file without --force).

Bounded for CI: a fixed number of examples per command, ``derandomize`` (the same
examples every run, no example database), through click's CliRunner, and a few real
subprocesses for what only a process has (its exit status, a real stdout).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from s390emu import dump
from s390emu.cli import main
from s390emu.commands.common import U64

ROOT = Path(__file__).resolve().parents[2]
EXITS = {0, 1, 2, 3, 4}
EXITS_EXPLORE = EXITS | {5}
# ptdump exits 5 when the ASCE designates data (a walk stopped in a garbage tree)
EXITS_INCOMPLETE = {"explore": EXITS_EXPLORE, "ptdump": EXITS | {5}}
# explore runs a search: keep each run tiny, whatever else is generated.
EXPLORE_BOUND = ["--max-ops", "1", "--max-states", "40", "--workers", "1", "--no-progress"]
# --engine ray would start a Ray (seconds) per example: its bad input is tests/explore/test_ray_engine.py's
# (--ray-address stays: without --engine ray it is bad usage).
EXPLORE_SEARCH_OPTIONS = {"max_ops", "max_steps", "max_states", "max_seconds", "workers", "no_progress", "first",
                          "engine"}
FUZZ = settings(max_examples=int(os.environ.get("S390EMU_FUZZ_EXAMPLES", "80")), derandomize=True, database=None,
                deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad inputs, and outputs that must survive: name -> path."""
    d = tmp_path_factory.mktemp("fuzz")
    good = d / "good.vmcore"
    CliRunner().invoke(main, ["dump", "save", str(good)])
    data = good.read_bytes()
    out = {"good": good}

    def put(name, content):
        (d / name).write_bytes(content)
        out[name] = d / name

    put("truncated", data[:len(data) // 3])
    put("truncated-header", data[:100])
    garbled = bytearray(data)
    for i in range(64, 4096, 97):
        garbled[i] ^= 0x5A
    put("garbled", bytes(garbled))
    noise = random.Random(14)                 # fixed: a test that can fail must fail every time
    put("random", noise.randbytes(8 * 4096))
    put("random-odd", noise.randbytes(5000))
    put("empty", b"")
    put("not-utf8.toml", b"\xff\xfe[setup]\n\x80")
    put("scenario.toml", b"[setup]\nversion = 'v66'\n[cpu0]\nops = ['free T0', 'free T0']\n")
    put("raising.py", b"from pgalloc.v66 import *\nNAME = 'fuzz-raising'\nraise RuntimeError('at import')\n")
    put("existing", b"keep me")
    os.mkfifo(d / "fifo")
    out.update(dir=d / "subdir", missing=d / "missing", fifo=d / "fifo", devnull=Path("/dev/null"),
               fresh=d / "fresh.out", nodir=d / "no" / "such" / "dir.out")
    (d / "subdir").mkdir()
    return out


TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
HEXES = st.one_of(
    st.integers(0, (1 << 64) - 1).map(hex),
    st.sampled_from(["0x10000000", "zz", "0x", "-1", "0x1_0000_0000_0000_0000", "1" * 40, "0xfffffffffffffff8",
                     "0x7fff0000b", "0x20", "0x10007", " 12 ", "_"]),
    TEXT)
INTS = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(["99999999999999999999", "-0", "x", "1e3", ""]))
FLOATS = st.one_of(st.floats(-1, 3, allow_nan=True).map(str), st.sampled_from(["inf", "nan", "x"]))
VERSIONS = st.sampled_from(["v515", "v64", "seed", "v66", "v67", "v99", "", "raising.py", "missing.py", "dir"])


def _paths(files):
    return st.sampled_from(sorted(files)).map(lambda name: str(files[name]))


def _explore_files(files):
    """explore's inputs but the fifo: the scenario reader is the explorer's (it would wait)."""
    return {k: v for k, v in files.items() if k != "fifo"}


def _value(param: click.Parameter, files):
    """A strategy for one value of ``param``, good and bad alike, from its click type."""
    t = param.type
    if isinstance(t, click.Path):
        return _paths(files)
    if isinstance(t, U64):
        return HEXES
    if isinstance(t, click.Choice):
        return st.one_of(st.sampled_from(list(t.choices)), TEXT)
    if isinstance(t, (click.types.IntParamType,)):
        return INTS
    if isinstance(t, click.types.FloatParamType):
        return FLOATS
    if param.name in ("version", "demo_version", "demo"):
        return st.one_of(VERSIONS, VERSIONS.map(lambda v: str(files.get(v, v))))
    return st.one_of(TEXT, _paths(files))


def _args(command: click.Command, files, skip=frozenset()):
    """Generated argument lists for ``command``: some of its options in any order, each with
    a generated value (flags bare), its arguments, now and then an unknown option."""
    options = [p for p in command.params if isinstance(p, click.Option) and p.name not in skip
               and not p.name == "help"]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]

    def one(p):
        name = st.sampled_from(p.opts)
        if p.is_flag:
            return name.map(lambda n: [n])
        return st.tuples(name, _value(p, files)).map(list)

    opts = st.lists(st.one_of([one(p) for p in options]), max_size=4) if options else st.just([])
    args = st.tuples(*[st.lists(_value(a, files), min_size=0 if a.nargs == -1 else 1,
                                max_size=3 if a.nargs == -1 else 1) for a in arguments]) if arguments else st.just(())
    extra = st.sampled_from([[], [], [], ["--no-such-option"], ["--"], ["-x", "1"]])
    return st.tuples(opts, args, extra).map(lambda t: sum(t[0], []) + sum(t[1], []) + t[2])


def _commands():
    out = []
    for name, cmd in main.commands.items():
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", [name, sub], c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, [name], cmd))
    return out


COMMANDS = _commands()


# paths the fixture leaves absent, which an output option may create
OUTPUTS = ("fresh", "missing")


def _state(files):
    """What must not change whatever the CLI is given."""
    return (_inputs(files), os.stat(files["fifo"]).st_mode, os.stat("/dev/null").st_mode, files["dir"].is_dir())


def _inputs(files):
    """The bytes of every input file the fixture wrote (the dumps, the random images, ...)."""
    return {n: p.read_bytes() for n, p in files.items() if n not in OUTPUTS and p.is_file()}


def _check(result, prefix, exits):
    text = f"{' '.join(prefix)}: exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (text, result.exception)
    assert "Traceback" not in result.output, text
    assert result.exit_code in exits, text
    if result.exit_code == 1:
        lines = [line for line in result.stderr.splitlines() if not line.startswith("s390emu: warning:")]
        assert len(lines) == 1, text


@pytest.mark.parametrize("label,prefix,command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_answers_generated_bad_input_with_a_documented_exit(label, prefix, command, files,
                                                                          tmp_path_factory):
    explore = label == "explore"
    before = _state(files)
    runner = CliRunner()

    @FUZZ
    @given(_args(command, _explore_files(files) if explore else files,
                 skip=EXPLORE_SEARCH_OPTIONS if explore else frozenset()))
    def run(args):
        cwd = os.getcwd()
        os.chdir(tmp_path_factory.mktemp("cwd"))        # relative outputs land in a fresh directory
        try:
            r = runner.invoke(main, prefix + args + (EXPLORE_BOUND if explore else []))
        finally:
            os.chdir(cwd)
        _check(r, prefix + args, EXITS_INCOMPLETE.get(label, EXITS))
        after = _state(files)
        if "--force" in args:             # asked for: a regular file may be replaced, then restored
            for name, content in before[0].items():
                files[name].write_bytes(content)
            after = (before[0], *after[1:])
        assert after == before, args
        for name in OUTPUTS:              # an output may create these; the next example needs them absent
            files[name].unlink(missing_ok=True)

    run()


@pytest.mark.parametrize("args", [
    ["translate", "--dump", "{random}", "0x1"], ["dump", "info", "{truncated-header}"], ["check", "--dump", "{truncated}"],
    ["pages", "--dump", "{dir}"], ["ptdump", "--dump", "{empty}"], ["dump", "save", "--force", "{fifo}"],
    ["translate", "0x1_0000_0000_0000_0000"], ["demo", "--version", "{raising.py}"],
])
def test_a_real_process_exits_with_one_line_and_no_traceback(args, files):
    argv = [str(files[a[1:-1]]) if a.startswith("{") else a for a in args]
    r = subprocess.run([sys.executable, "-m", "s390emu.cli", *argv], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (1, 2), (argv, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    if r.returncode == 1:
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("s390emu: "), r.stderr
    assert dump.read_info(files["good"]).format == "elf"
