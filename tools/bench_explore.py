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
    python tools/bench_explore.py --against fa4c2bc --versions seed --max-ops 4 --walkers off --workers 1 --repeat 3

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
walkers setting ("walkers": on, off, or with --walkers both the two rows).  --against COMMIT
prints instead, per version, bound and walkers setting (at --workers workers), the same search
timed in this tree and in COMMIT's (checked out in a temporary worktree, removed at the end),
--repeat N times each (default 3), alternating this/COMMIT in fresh processes so the machine's
noise hits both alike: the median seconds and states/s of each, "x" = COMMIT's median over this
tree's (how many times faster this tree is), "same" = both explored the same states,
transitions and findings (by Finding.key where both trees have it, else by name; if NO,
exit 1), and each side's fastest-slowest run ("runs"); a
COMMIT whose Setup has no walkers runs --walkers off only.  --markdown FILE also rewrites the
"explore" section of FILE with the same table ("explore-engines" and "explore-against" with
those; tools/benchlib.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # the tree this tool lives in
sys.path.insert(0, ROOT)

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
    column as wide as its name (at least 8) plus two spaces; a cell wider than that still
    gets one space before it (a run's "min-max" seconds can be)."""
    return f"{cells[0]!s:<8}" + "".join(" " + f"{c!s:>{max(len(n), 8) + 1}}" for n, c in zip(cols[1:], cells[1:]))


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
    ap.add_argument("--against", default=None, metavar="COMMIT",
                    help="time each search in this tree and in COMMIT's (a temporary git worktree), "
                         "alternating, in fresh processes; print both and their ratio instead")
    ap.add_argument("--repeat", type=positive, default=None, metavar="N",
                    help="with --against: runs of each search per tree (default: 3)")
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
    if args.against is not None:
        clash = [o for o, on in (("--engines", args.engines is not None), ("--compare", args.compare),
                                 ("--checkpoint", args.checkpoint)) if on]
        if clash:
            ap.error(f"--against: not with {', '.join(clash)}")
        return against(versions, bounds, args)
    if args.repeat is not None:
        ap.error("--repeat: only with --against")
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


# The child of --against: one search in the tree on its sys.path (its cwd, PYTHONPATH), one JSON
# line.  It runs in old trees too, so it only uses what they have: ``from pgalloc.explore import
# Setup, explore``; an old Setup has no ``walkers`` (it had no walkers: walkers=off is its search)
# and an old Finding no ``key`` (then names are what both can compare).  "probe" says whether the
# tree's Setup has walkers.  A tree without pgalloc would import an installed one (pip install -e
# of another tree): that is refused before anything runs.
CHILD = r"""
import importlib.util, inspect, json, os, sys
where = os.path.realpath(importlib.util.find_spec("pgalloc").origin or "?")
if not where.startswith(os.path.realpath(os.getcwd()) + os.sep):
    sys.exit(f"pgalloc would be imported from {where}, not from this tree")
from pgalloc.explore import Finding, Setup, explore
has_walkers = "walkers" in inspect.signature(Setup).parameters
if sys.argv[1] == "probe":
    print(json.dumps({"walkers": has_walkers}))
    sys.exit(0)
version, ops, walkers, workers, cpus, max_states, max_seconds = sys.argv[1:]
kw = dict(version=version, max_ops=int(ops), cpus=int(cpus), max_states=int(max_states))
if float(max_seconds):
    kw["max_seconds"] = float(max_seconds)
if has_walkers:
    kw["walkers"] = walkers == "on"
elif walkers == "on":
    sys.exit("this tree's Setup has no walkers")
r = explore(Setup(**kw), workers=int(workers))
print(json.dumps({"states": r.states, "transitions": r.transitions, "seconds": r.seconds,
                  "findings": sorted(f.name for f in r.violations),
                  "keys": sorted(map(repr, (f.key for f in r.violations))) if hasattr(Finding, "key") else None,
                  "complete": r.complete}))
"""


class ChildFailed(Exception):
    """A child of --against that exited non-zero or printed no JSON line: the last line of
    its stderr."""


def git(*args: str) -> subprocess.CompletedProcess:
    """``git -C ROOT ARGS``, its output captured (git's progress lines stay off the table)."""
    return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)


@contextlib.contextmanager
def temporary_tree(sha: str):
    """A detached worktree of ``sha`` in a temporary directory, removed (and pruned from
    git's list of worktrees) however the block ends: normally, by an error, or by Ctrl-C."""
    parent = tempfile.mkdtemp(prefix="bench-against-")
    tree = os.path.join(parent, "tree")
    try:
        added = git("worktree", "add", "--detach", tree, sha)
        if added.returncode:
            raise ChildFailed(f"git worktree add: {(added.stderr.strip().splitlines() or ['failed'])[-1]}")
        yield tree
    finally:
        git("worktree", "remove", "--force", tree)
        git("worktree", "prune")
        shutil.rmtree(parent, ignore_errors=True)


def child(tree: str, *args: object) -> dict:
    """The JSON line of ``CHILD ARGS`` in a fresh Python whose cwd and only PYTHONPATH are
    ``tree`` (so neither tree's modules can leak into the other's run)."""
    env = {**os.environ, "PYTHONPATH": tree}
    p = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], cwd=tree, env=env,
                       capture_output=True, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode or not lines:
        raise ChildFailed((p.stderr.strip().splitlines() or [f"exit {p.returncode}, no output"])[-1])
    return json.loads(lines[-1])


def spread(seconds: list[float]) -> str:
    """A side's runs in one cell: ``min-max`` seconds (one number for one run)."""
    lo, hi = min(seconds), max(seconds)
    return f"{lo:.2f}" if len(seconds) == 1 else f"{lo:.2f}-{hi:.2f}"


def against(versions: list, bounds: list, args: argparse.Namespace) -> int:
    """The --against table: each search run --repeat times in this tree and in COMMIT's,
    alternating, each run in a fresh process; the median seconds of each, their ratio, and
    whether both trees explored the same states, transitions and findings (exit 1 if not)."""
    sha = git("rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}").stdout.strip()
    if not sha:
        print(f"bench_explore: --against: {args.against!r} is not a commit of {ROOT}", file=sys.stderr)
        return 2
    label, repeat = sha[:7], args.repeat or 3
    modes = WALKER_MODES[args.walkers]
    # SIGTERM as an exception, like Ctrl-C, so the temporary worktree is removed then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with temporary_tree(sha) as that:
            trees = {"this": ROOT, label: that}
            if True in modes and not child(that, "probe")["walkers"]:
                print(f"bench_explore: --against {args.against}: its Setup has no walkers; use --walkers off",
                      file=sys.stderr)
                return 2
            return against_table(trees, label, versions, bounds, modes, repeat, args)
    except ChildFailed as e:
        print(f"bench_explore: --against {args.against}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_explore: interrupted (the temporary worktree is removed)", file=sys.stderr)
        return 130


def against_table(trees: dict, label: str, versions: list, bounds: list, modes: tuple, repeat: int,
                  args: argparse.Namespace) -> int:
    """Measure and print the --against rows (``trees``: "this" and ``label`` to their
    directories), write the Markdown section; 1 when a row's trees disagree, else 0."""
    cols = ["version", "ops", "walkers", "workers", "states", "this s", f"{label} s", "this states/s",
            f"{label} states/s", "x", "same", "this runs", f"{label} runs"]
    print(line(cols, cols) + f"  ({label} = {git('rev-parse', label).stdout.strip()}; {repeat} runs each, "
          f"alternating; loadavg {os.getloadavg()[0]:.1f})", flush=True)
    rows, differ = [], False
    for ops, v, walkers in ((ops, v, w) for ops in bounds for v in versions for w in modes):
        runs = {name: [] for name in trees}
        for _ in range(repeat):             # this, that, this, that...: noise hits both alike
            for name, tree in trees.items():
                runs[name].append(child(tree, v, ops, "on" if walkers else "off", args.workers, args.cpus,
                                        args.max_states, args.time_limit))
        # Findings by key (name, function, step, defect) when every tree has Finding.key, else by name.
        by_key = all(r["keys"] is not None for rs in runs.values() for r in rs)
        outcomes = {(r["states"], r["transitions"], tuple(r["keys"] if by_key else r["findings"]))
                    for rs in runs.values() for r in rs}
        medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
        states = runs["this"][0]["states"]
        row = [v, ops, "on" if walkers else "off", args.workers, f"{states:,}",
               f"{medians['this']:.2f}", f"{medians[label]:.2f}",
               f"{states / max(medians['this'], 1e-9):,.0f}",
               f"{runs[label][0]['states'] / max(medians[label], 1e-9):,.0f}",
               f"{medians[label] / max(medians['this'], 1e-9):.2f}", "yes" if len(outcomes) == 1 else "NO",
               spread([r["seconds"] for r in runs["this"]]), spread([r["seconds"] for r in runs[label]])]
        differ |= len(outcomes) > 1
        rows.append(row)
        print(line(cols, row), flush=True)
    if differ:
        # A table whose trees disagree is no measurement of one search: nothing is recorded.
        print("bench_explore: the trees explored different states, transitions or findings (same: NO)"
              + (f"; {args.markdown} not written" if args.markdown else ""), file=sys.stderr)
        return 1
    if args.markdown:
        write_section(args.markdown, "explore-against",
                      f"{provenance()}  {args.cpus} CPUs; each search run {repeat} times in this tree and in "
                      f"{label}'s, alternating, each run in a fresh process; s: the median of the seconds the "
                      f"explorer reports; x: {label}'s median over this tree's (how many times faster this "
                      "tree is); same: both explored the same states, transitions and findings; runs: the "
                      "fastest and slowest run.\n\n" + table(cols, rows))
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
