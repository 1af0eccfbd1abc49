#!/usr/bin/env python3
"""Benchmark of the interleaving explorer: states/s and time per version, walkers on and off.

    python tools/bench_explore.py                     # --max-ops 2 and 3, every version
    python tools/bench_explore.py --max-ops 4 --versions v64,seed --workers 2
    python tools/bench_explore.py --time-limit 120    # stop a search at 2 minutes
    python tools/bench_explore.py --walkers on        # only the default search (Setup.walkers)
    python tools/bench_explore.py --compare           # also without the reductions
    python tools/bench_explore.py --compare --markdown docs/benchmarks.md
    python tools/bench_explore.py --checkpoint        # also with --checkpoint: what writing costs
    python tools/bench_explore.py --engines local,ray --versions seed --max-ops 3 --workers 2
    python tools/bench_explore.py --engines local,ray --walkers both   # walkers on and off, a row each

For each version and bound it prints the states explored, transitions, seconds,
states per second, the number of distinct violations, and whether the search was
complete (a search stopped by --time-limit or --max-states is marked "cut").
--walkers both (the default) runs each search twice, side by side: with the readers in
flight (Setup.walkers=True: TLBs, GUP-fast, pte_offset_map; columns "on ...") and without
them (walkers=False; columns "off ..."), and the last two columns give the ratio on/off of
the states and of the seconds (">=" when only the search with walkers was cut, "<=" when
only the one without, "~" when both were).  --walkers on or off runs one of the two.  With
--compare each search also runs without the reductions that can be turned off (movers,
subsumption by budget, local steps, dead locals: ``PLAIN``), and its "plain" columns give
how many times fewer states and seconds the reductions take (">=" when the search without
them was cut).  With --checkpoint each search also runs writing a checkpoint at every
level's end (to a temporary directory), and its "ckpt" columns give its seconds and how
many times the search's they are.  --engines LIST (local, ray) prints instead, per version and
bound, each engine's states/s with 1 to --workers workers side by side (Ray's actors on one
local Ray started before the first search, so its start is not counted; making the actors is),
each engine's rate at the most workers over its rate at 1 ("x"), and whether every run
explored the same states, transitions and findings ("same"); one row per version, bound and
walkers setting ("walkers": on, off, or with --walkers both the two rows).  --markdown FILE also rewrites the "explore" section of FILE with the same
table (tools/benchlib.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pgalloc.explore import Setup, explore, ray_engine  # noqa: E402
from pgalloc.versions import VERSIONS  # noqa: E402
from benchlib import add_markdown_option, check_markdown, positive, provenance, table, write_section  # noqa: E402


# The search without its reductions (CPU symmetry and eager grace periods stay).
PLAIN = {"movers": False, "subsumption": False, "local_steps": False, "dead_locals": False}

# --walkers: the Setup.walkers value of each search run, in column order.
WALKER_MODES = {"both": (True, False), "on": (True,), "off": (False,)}

# The measured columns of one search, and those --compare adds after them.
SEARCH_COLUMNS = ["states", "transitions", "seconds", "states/s", "violations", "complete"]
PLAIN_COLUMNS = ["plain states", "plain s", "states x", "time x"]
RATIO_COLUMNS = ["states on/off", "time on/off"]
CKPT_COLUMNS = ["ckpt s", "ckpt x"]


def run(setup: Setup, workers: int, time_limit: float, checkpoint: str | None = None) -> tuple:
    """``(states, transitions, seconds, violations, complete)`` of one search (writing its
    checkpoints to directory ``checkpoint`` if given)."""
    setup.max_seconds = time_limit
    r = explore(setup, workers=workers, checkpoint=checkpoint)
    return r.states, r.transitions, r.seconds, len(r.violations), "yes" if r.complete else "cut"


def ratio(num: float, den: float, num_cut: bool, den_cut: bool) -> str:
    """``num / den`` to two decimals, marked by what a cut search makes of it: a cut search's
    states and seconds are lower bounds, so a cut numerator makes the ratio a lower bound
    (">="), a cut denominator an upper bound ("<="), and both cut leave no bound ("~")."""
    mark = {(True, False): ">=", (False, True): "<=", (True, True): "~"}.get((num_cut, den_cut), "")
    return f"{mark}{num / max(den, 1e-9):.2f}"


def header(modes: tuple, compare: bool, checkpoint: bool = False) -> list[str]:
    """The table's column names: per search run its columns (prefixed "on "/"off " when both
    run), its plain columns with --compare, its ckpt columns with --checkpoint, and the
    on/off ratios when both run."""
    both = len(modes) > 1
    cols = ["version", "ops"]
    extra = (PLAIN_COLUMNS if compare else []) + (CKPT_COLUMNS if checkpoint else [])
    for walkers in modes:
        prefix = ("on " if walkers else "off ") if both else ""
        cols += [prefix + c for c in SEARCH_COLUMNS + extra]
    return cols + (RATIO_COLUMNS if both else [])


def measure(version: str, ops: int, walkers: bool, args: argparse.Namespace) -> tuple[list[str], tuple]:
    """One search's cells (and its plain twin's with --compare) and its raw ``run`` result."""
    setup = Setup(version=version, max_ops=ops, cpus=args.cpus, max_states=args.max_states, walkers=walkers)
    states, trans, secs, nviol, done = result = run(setup, args.workers, args.time_limit)
    rate = states / secs if secs else 0
    cells = [f"{states:,}", f"{trans:,}", f"{secs:.1f}", f"{rate:,.0f}", str(nviol), done]
    if args.compare:
        plain = Setup(version=version, max_ops=ops, cpus=args.cpus, max_states=args.max_states,
                      walkers=walkers, **PLAIN)
        p_states, _, p_secs, _, p_done = run(plain, args.workers, args.time_limit)
        at_least = ">=" if p_done == "cut" else ""
        cells += [f"{p_states:,}", f"{p_secs:.1f}", f"{at_least}{p_states / max(states, 1):.2f}",
                  f"{at_least}{p_secs / max(secs, 1e-9):.2f}"]
    if args.checkpoint:
        with tempfile.TemporaryDirectory() as d:
            c_secs = run(Setup(version=version, max_ops=ops, cpus=args.cpus, max_states=args.max_states,
                               walkers=walkers), args.workers, args.time_limit, d)[2]
        cells += [f"{c_secs:.1f}", f"{c_secs / max(secs, 1e-9):.2f}"]
    return cells, result


def line(cols: list[str], cells: list[object]) -> str:
    """One printed line: the version left-aligned, every other cell right-aligned in a
    column as wide as its name (at least 8) plus two spaces."""
    return f"{cells[0]!s:<8}" + "".join(f"{c!s:>{max(len(n), 8) + 2}}" for n, c in zip(cols[1:], cells[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ops", type=positive, action="append", help="bound(s) to run (default: 2 and 3)")
    ap.add_argument("--versions", default=",".join(VERSIONS), help="comma-separated (default: every version)")
    ap.add_argument("--workers", type=positive, default=os.cpu_count() or 1)
    ap.add_argument("--cpus", type=positive, default=2)
    ap.add_argument("--max-states", type=positive, default=5_000_000)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds per search (0: none); a search cut by it is marked \"cut\"")
    ap.add_argument("--walkers", choices=list(WALKER_MODES), default="both",
                    help="the searches with the readers in flight (on), without (off), or both side by "
                         "side with their ratios (default: both)")
    ap.add_argument("--compare", action="store_true", help="also run without the reductions; print ratios")
    ap.add_argument("--checkpoint", action="store_true",
                    help="also run writing a checkpoint at each level's end; print its time and ratio")
    ap.add_argument("--engines", default=None, metavar="LIST",
                    help="comma-separated engines (local, ray): print their scaling from 1 to --workers instead")
    add_markdown_option(ap)
    args = ap.parse_args()
    versions = args.versions.split(",")
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        ap.error(f"--versions: unknown {', '.join(unknown)} (one of {', '.join(VERSIONS)})")
    if args.time_limit < 0:
        ap.error("--time-limit: seconds must be 0 or more")
    check_markdown(ap, args.markdown)
    bounds = args.max_ops or [2, 3]
    if args.engines is not None:
        engines = args.engines.split(",")
        if not engines or set(engines) - set(ENGINES):
            ap.error(f"--engines: a comma-separated list of {', '.join(ENGINES)}")
        return scaling(versions, bounds, engines, args)
    modes = WALKER_MODES[args.walkers]
    cols = header(modes, args.compare, args.checkpoint)
    print(line(cols, cols) + f"  workers={args.workers} walkers={args.walkers}")
    rows = []
    for ops in bounds:
        for v in versions:
            row: list[object] = [v, ops]
            results = []
            for walkers in modes:
                cells, result = measure(v, ops, walkers, args)
                row += cells
                results.append(result)
            if len(modes) > 1:
                (on_states, _, on_secs, _, on_done), (off_states, _, off_secs, _, off_done) = results
                cuts = (on_done == "cut", off_done == "cut")
                row += [ratio(on_states, off_states, *cuts), ratio(on_secs, off_secs, *cuts)]
            rows.append(row)
            print(line(cols, row), flush=True)
    if args.markdown:
        write_section(args.markdown, "explore",
                      f"{provenance()}  {args.workers} worker process(es), {args.cpus} CPUs.{notes(args)}\n\n"
                      + table(cols, rows))
    return 0


ENGINES = ("local", "ray")


def scaling(versions: list, bounds: list, engines: list, args: argparse.Namespace) -> int:
    """The --engines table: states/s per engine and worker count, side by side, one row
    per version, bound and walkers setting (--walkers both: on, then off)."""
    counts = range(1, args.workers + 1)
    modes = WALKER_MODES[args.walkers]
    cols = ["version", "ops", "walkers", "states"] + [f"{e} w={n}" for e in engines for n in counts] + \
        [f"{e} x" for e in engines] + ["same"]
    if "ray" in engines:
        if ray_engine.ray is None:
            print(ray_engine.MISSING, file=sys.stderr)
            return 2
        ray_engine.start(args.workers)
    print(line(cols, cols) + f"  (states/s; loadavg {os.getloadavg()[0]:.1f})")
    rows = []
    for ops, v, walkers in ((ops, v, w) for ops in bounds for v in versions for w in modes):
        outcomes, rates = set(), {}
        for e in engines:
            for n in counts:
                setup = Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states,
                              max_seconds=args.time_limit, walkers=walkers)
                r = (explore if e == "local" else ray_engine.explore)(setup, workers=n)
                outcomes.add((r.states, r.transitions, r.complete, tuple((f.key, tuple(map(tuple, f.transitions)))
                                                                      for f in r.violations)))
                rates[e, n] = r.states_per_second
        states = next(iter(outcomes))[0]
        row = [v, ops, "on" if walkers else "off", f"{states:,}"] + \
            [f"{rates[e, n]:,.0f}" for e in engines for n in counts] + \
            [f"{rates[e, counts[-1]] / max(rates[e, 1], 1e-9):.2f}" for e in engines] + \
            ["yes" if len(outcomes) == 1 else "NO"]
        rows.append(row)
        print(line(cols, row), flush=True)
    if "ray" in engines:
        ray_engine.ray.shutdown()
    if args.markdown:
        write_section(args.markdown, "explore-engines",
                      f"{provenance()}  {args.cpus} CPUs; states/s of each engine with w workers, run one "
                      "after the other on the same machine; walkers: Setup.walkers on or off; x: the rate at the "
                      "most workers over the rate at 1; "
                      "same: every run explored the same states, transitions and findings.\n\n" + table(cols, rows))
    return 0


def notes(args: argparse.Namespace) -> str:
    """What the table's columns are, for the Markdown section."""
    text = {"both": "  The on columns are the search with the readers in flight (Setup.walkers: TLBs, "
                    "GUP-fast, pte_offset_map), the off columns the same search without them, run right "
                    "after it; on/off is the ratio of their states and seconds (>=: only the on search "
                    "was cut, <=: only the off one, ~: both).",
            "on": "  Walkers on (Setup.walkers: TLBs, GUP-fast, pte_offset_map).",
            "off": "  Walkers off (Setup.walkers=False)."}[args.walkers]
    if args.compare:
        text += ("  The plain columns are the same search without movers, subsumption, local steps "
                 "and dead locals, run right after it; x is how many times more the plain search "
                 "takes (>=: the plain search was cut).")
    if args.checkpoint:
        text += ("  The ckpt columns are the same search writing a checkpoint at each level's end "
                 "(explore --checkpoint), run right after it: its seconds and x, its seconds over "
                 "the search's.")
    return text


if __name__ == "__main__":
    sys.exit(main())
