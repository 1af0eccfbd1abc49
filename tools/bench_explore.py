#!/usr/bin/env python3
"""Benchmark of the interleaving explorer: states/s and time per version.

    python tools/bench_explore.py                     # --max-ops 2 and 3, every version
    python tools/bench_explore.py --max-ops 4 --versions v64,seed --workers 2
    python tools/bench_explore.py --time-limit 120    # stop a search at 2 minutes
    python tools/bench_explore.py --compare           # also without the reductions
    python tools/bench_explore.py --compare --markdown docs/benchmarks.md

For each version and bound it prints the states explored, transitions, seconds,
states per second, the number of distinct violations, and whether the search was
complete (a search stopped by --time-limit or --max-states is marked "cut").  With
--compare each search runs a second time, side by side, without the reductions that
can be turned off (movers, subsumption by budget, local steps, dead locals:
``PLAIN``), and the last columns give how many times fewer states and seconds the
reductions take (">=" when the search without them was cut).  --markdown FILE also
rewrites the "explore" section of FILE with the same table (tools/benchlib.py).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pgalloc.explore import Setup, explore  # noqa: E402
from pgalloc.versions import VERSIONS  # noqa: E402
from benchlib import add_markdown_option, check_markdown, positive, provenance, table, write_section  # noqa: E402


# The search without its reductions (CPU symmetry and eager grace periods stay).
PLAIN = {"movers": False, "subsumption": False, "local_steps": False, "dead_locals": False}


def run(setup: Setup, workers: int, time_limit: float) -> tuple:
    """``(states, transitions, seconds, violations, complete)`` of one search."""
    setup.max_seconds = time_limit
    r = explore(setup, workers=workers)
    return r.states, r.transitions, r.seconds, len(r.violations), "yes" if r.complete else "cut"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ops", type=positive, action="append", help="bound(s) to run (default: 2 and 3)")
    ap.add_argument("--versions", default=",".join(VERSIONS), help="comma-separated (default: every version)")
    ap.add_argument("--workers", type=positive, default=os.cpu_count() or 1)
    ap.add_argument("--cpus", type=positive, default=2)
    ap.add_argument("--max-states", type=positive, default=5_000_000)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds per search (0: none); a search cut by it is marked \"cut\"")
    ap.add_argument("--compare", action="store_true", help="also run without the reductions; print ratios")
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
    header = ["version", "ops", "states", "transitions", "seconds", "states/s", "violations", "complete"]
    if args.compare:
        header += ["plain states", "plain s", "states x", "time x"]
    extra = f"{'plain states':>14}{'plain s':>9}{'states x':>9}{'time x':>8}" if args.compare else ""
    print(f"{'version':<8}{'ops':>4}{'states':>12}{'transitions':>13}{'seconds':>10}{'states/s':>10}"
          f"{'violations':>11}  {'complete':<9}{extra}  workers={args.workers}")
    rows = []
    for ops in bounds:
        for v in versions:
            setup = Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states)
            states, trans, secs, nviol, done = run(setup, args.workers, args.time_limit)
            rate = states / secs if secs else 0
            row = [v, ops, f"{states:,}", f"{trans:,}", f"{secs:.1f}", f"{rate:,.0f}", nviol, done]
            line = f"{v:<8}{ops:>4}{states:>12,}{trans:>13,}{secs:>10.1f}{rate:>10,.0f}{nviol:>11}  {done:<9}"
            if args.compare:
                plain = Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states, **PLAIN)
                p_states, _, p_secs, _, p_done = run(plain, args.workers, args.time_limit)
                at_least = ">=" if p_done == "cut" else ""
                states_x = f"{at_least}{p_states / max(states, 1):.2f}"
                time_x = f"{at_least}{p_secs / max(secs, 1e-9):.2f}"
                row += [f"{p_states:,}", f"{p_secs:.1f}", states_x, time_x]
                line += f"{p_states:>14,}{p_secs:>9.1f}{states_x:>9}{time_x:>8}"
            rows.append(row)
            print(line, flush=True)
    if args.markdown:
        plain_note = ("  The plain columns are the same search without movers, subsumption, local steps "
                      "and dead locals, run right after it; x is how many times more the plain search "
                      "takes (>=: the plain search was cut)." if args.compare else "")
        write_section(args.markdown, "explore",
                      f"{provenance()}  {args.workers} worker process(es), {args.cpus} CPUs.{plain_note}\n\n"
                      + table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
