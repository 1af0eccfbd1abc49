#!/usr/bin/env python3
"""Benchmark of the interleaving explorer: states/s and time per version.

    python tools/bench_explore.py                     # --max-ops 2 and 3, every version
    python tools/bench_explore.py --max-ops 4 --versions v64,seed --workers 2
    python tools/bench_explore.py --time-limit 120    # stop a search at 2 minutes

For each version and bound it prints the states explored, transitions, seconds,
states per second, the number of distinct violations, and whether the search was
complete (a search stopped by --time-limit or --max-states is marked "cut").
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pgalloc.explore import Setup, explore  # noqa: E402
from pgalloc.versions import VERSIONS  # noqa: E402


class _Stop(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ops", type=int, action="append", help="bound(s) to run (default: 2 and 3)")
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--max-states", type=int, default=5_000_000)
    ap.add_argument("--time-limit", type=float, default=0.0, help="seconds per search (0: none)")
    args = ap.parse_args()
    bounds = args.max_ops or [2, 3]
    print(f"{'version':<8}{'ops':>4}{'states':>12}{'transitions':>13}{'seconds':>10}{'states/s':>10}"
          f"{'violations':>11}  {'complete':<9} workers={args.workers}")
    for ops in bounds:
        for v in args.versions.split(","):
            t0 = time.perf_counter()
            last = {"states": 0}

            def progress(depth, states, frontier, t0=t0, last=last):
                last["states"] = states
                if args.time_limit and time.perf_counter() - t0 > args.time_limit:
                    raise _Stop()
            try:
                r = explore(Setup(version=v, max_ops=ops, cpus=args.cpus, max_states=args.max_states),
                            workers=args.workers, progress=progress)
                states, trans, secs = r.states, r.transitions, r.seconds
                nviol, done = len(r.violations), "yes" if r.complete else "cut"
            except _Stop:
                secs = time.perf_counter() - t0
                states, trans, nviol, done = last["states"], 0, -1, "cut(time)"
            rate = states / secs if secs else 0
            print(f"{v:<8}{ops:>4}{states:>12,}{trans:>13,}{secs:>10.1f}{rate:>10,.0f}{nviol:>11}  {done:<9}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
