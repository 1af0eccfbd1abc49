#!/usr/bin/env python3
"""Benchmark of the interleaving explorer: states/s and time per version.

    python tools/bench_explore.py                     # --max-ops 2 and 3, every version
    python tools/bench_explore.py --max-ops 4 --versions v64,seed --workers 2
    python tools/bench_explore.py --time-limit 120    # stop a search at 2 minutes
    python tools/bench_explore.py --compare           # also without the reductions

For each version and bound it prints the states explored, transitions, seconds,
states per second, the number of distinct violations, and whether the search was
complete (a search stopped by --time-limit or --max-states is marked "cut").  With
--compare each search runs a second time, side by side, without the reductions that
can be turned off (movers, subsumption by budget, local steps, dead locals:
``PLAIN``), and the last columns give how many times fewer states and seconds the
reductions take.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pgalloc.explore import Setup, explore  # noqa: E402
from pgalloc.versions import VERSIONS  # noqa: E402


# The search without its reductions (CPU symmetry and eager grace periods stay).
PLAIN = {"movers": False, "subsumption": False, "local_steps": False, "dead_locals": False}


def run(setup: Setup, workers: int, time_limit: float) -> tuple:
    """``(states, transitions, seconds, violations, complete)`` of one search."""
    setup.max_seconds = time_limit
    r = explore(setup, workers=workers)
    return r.states, r.transitions, r.seconds, len(r.violations), "yes" if r.complete else "cut"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ops", type=int, action="append", help="bound(s) to run (default: 2 and 3)")
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--max-states", type=int, default=5_000_000)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds per search (0: none); a search cut by it is marked \"cut\"")
    ap.add_argument("--compare", action="store_true", help="also run without the reductions; print ratios")
    args = ap.parse_args()
    bounds = args.max_ops or [2, 3]
    extra = f"{'plain states':>14}{'plain s':>9}{'states x':>9}{'time x':>8}" if args.compare else ""
    print(f"{'version':<8}{'ops':>4}{'states':>12}{'transitions':>13}{'seconds':>10}{'states/s':>10}"
          f"{'violations':>11}  {'complete':<9}{extra}  workers={args.workers}")
    for ops in bounds:
        for v in args.versions.split(","):
            setup = Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states)
            states, trans, secs, nviol, done = run(setup, args.workers, args.time_limit)
            rate = states / secs if secs else 0
            line = f"{v:<8}{ops:>4}{states:>12,}{trans:>13,}{secs:>10.1f}{rate:>10,.0f}{nviol:>11}  {done:<9}"
            if args.compare:
                plain = Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states, **PLAIN)
                p_states, _, p_secs, _, _ = run(plain, args.workers, args.time_limit)
                line += f"{p_states:>14,}{p_secs:>9.1f}{p_states / max(states, 1):>9.2f}{p_secs / max(secs, 1e-9):>8.2f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
