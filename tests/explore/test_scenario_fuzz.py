"""Generated scenario files and command lines, good and bad: ``explore`` answers each with
a report (exit 0, 4 or 5) or one line (exit 1 or 2), never a traceback (issue 15)."""

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgalloc.explore.operations import OP_KINDS
from s390emu.cli import main

ANY = st.one_of(st.integers(-3, 10), st.just(100_000_000_000), st.booleans(),
                st.text(st.characters(blacklist_categories=("Cs",)), max_size=4),
                st.lists(st.integers(-1, 9), max_size=3), st.floats(allow_nan=False, allow_infinity=False))
# Each key mostly gets a value of its kind (so that searches run), else anything.
GOOD = {"name": st.text("ab-", max_size=4), "description": st.text("ab ", max_size=4), "cpus": st.integers(1, 3),
        "pages": st.integers(1, 2), "free": st.lists(st.integers(0, 1), max_size=1), "lazy_refs": st.integers(0, 2),
        "pgste": st.booleans(), "max_steps": st.integers(0, 30), "max_states": st.integers(1, 100),
        "sleep_sets": st.booleans(), "quiescent": st.booleans()}
OPS = st.lists(st.one_of(
    st.sampled_from(["free T0", "free T1", "free_tlb T0", "free_tlb_nomem T1", "defer T1", "alloc", "alloc S0",
                     "exit", "mmdrop", "flush_lazy", "spec_ref T1"]),
    st.builds(lambda k, c, n: f"{k} {c}{n}", st.sampled_from(list(OP_KINDS)), st.sampled_from(["T", "S", "X"]),
              st.integers(-1, 5)),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)), max_size=3)


def _toml(v) -> str:
    """``v`` as a TOML value (a JSON string is a TOML basic string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def _value(draw, key: str):
    return draw(ANY) if draw(st.integers(0, 15)) == 0 else draw(GOOD[key])


@st.composite
def scenarios(draw) -> str:
    """A scenario file's text: every key of the format, each value mostly plausible."""
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "version", "cpus", "description"]), unique=True)):
        value = draw(st.sampled_from(["v64", "seed", "v99"])) if key == "version" else _value(draw, key)
        lines.append(f"{key} = {_toml(value)}")
    for table, keys in (("setup", ["pages", "free", "lazy_refs", "pgste"]),
                        ("bounds", ["max_steps", "max_states"]), ("checks", ["sleep_sets", "quiescent"])):
        chosen = draw(st.lists(st.sampled_from(keys), unique=True))
        if chosen:
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml(_value(draw, k))}" for k in chosen]
    for ops in draw(st.lists(OPS, min_size=1, max_size=3)):
        lines += ["[[cpu]]", f"ops = {_toml(ops)}"]
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=scenarios(), raw=st.booleans())
def test_a_generated_scenario_gets_a_report_or_one_line_never_a_traceback(tmp_path, text, raw):
    f = tmp_path / "fuzz.toml"
    data = text.encode() if not raw else text.encode()[:len(text) // 2] + b"\xff" + text.encode()[len(text) // 2:]
    f.write_bytes(data)
    r = CliRunner().invoke(main, ["explore", "--scenario", str(f), "--max-states", "40", "--workers", "1",
                                  "--no-progress"])
    assert r.exception is None or isinstance(r.exception, SystemExit), (text, r.output)
    assert r.exit_code in (0, 1, 2, 4, 5), (text, r.output)
    said = r.output.strip().splitlines()
    if r.exit_code == 1:
        assert len(said) == 1 and said[0].startswith("s390emu: "), (text, r.output)
    if r.exit_code == 2:                # click's usage lines, then one line naming the error
        assert said[-1].startswith("Error: ") and sum(x.startswith("Error") for x in said) == 1, (text, r.output)
    if r.exit_code == 0:
        tomllib.loads(text)             # only a valid file explores cleanly


OPTION_VALUES = {
    "--version": st.sampled_from(["v64", "seed", "v99", "", "x.py", "/nonexistent/p.py"]),
    "--max-ops": st.sampled_from(["0", "1", "2", "-1", "21", "x", "1.5", ""]),
    "--cpus": st.sampled_from(["1", "2", "3", "0", "9", "two"]),
    "--pages": st.sampled_from(["1", "2", "0", "5", "nan"]),
    "--ops": st.sampled_from(["free", "alloc,exit", ",", "frob", "free, spec_ref", ""]),
    "--max-steps": st.sampled_from(["0", "3", "-5", "lots"]),
    "--max-states": st.sampled_from(["1", "30", "0", "lots", "-1"]),
    "--max-seconds": st.sampled_from(["0", "0.5", "-1", "nan", "inf", "x"]),
    "--workers": st.sampled_from(["1", "0", "65", "many"]),
    "--scenario": st.sampled_from(["examples/scenarios/lazy-flush.toml", "nonexistent.toml", ".", ""]),
    "--html": st.sampled_from(["t.html", "no/such/dir/t.html", ".", ""]),
}
FLAGS = ["--sleep-sets", "--no-movers", "--no-subsumption", "--no-local-steps", "--no-dead-locals", "--no-walkers", "--first",
         "--json", "--force", "--no-progress"]


@st.composite
def explore_args(draw) -> list[str]:
    """An ``explore`` command line: some options with good or bad values, some flags."""
    args = []
    for option in draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=5)):
        args += [option, draw(OPTION_VALUES[option])]
    args += draw(st.lists(st.sampled_from(FLAGS), max_size=3, unique=True))
    return args


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=explore_args())
def test_generated_explore_options_get_a_report_or_one_line_never_a_traceback(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir(exist_ok=True)
    if not (tmp_path / "examples" / "scenarios").exists():
        (tmp_path / "examples" / "scenarios").symlink_to(Path(__file__).resolve().parents[2] / "examples" / "scenarios")
    # Bounds last (the last of a repeated option wins): every search here stays small.
    r = CliRunner().invoke(main, ["explore"] + args + ["--max-states", "30", "--max-seconds", "5", "--workers", "1"])
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
    assert r.exit_code in (0, 1, 2, 4, 5), (args, r.output)
    said = r.output.strip().splitlines()
    if r.exit_code == 1:
        assert len(said) == 1 and said[0].startswith("s390emu: "), (args, r.output)
    if r.exit_code == 2:
        assert said[-1].startswith("Error: ") and sum(x.startswith("Error") for x in said) == 1, (args, r.output)
