#!/usr/bin/env python3
"""Which transitions commute, and why the others do not: the dependence census.

    python tools/dependence.py                                  # seed, --max-ops 3, walkers on
    python tools/dependence.py --version v66 --max-ops 4 --walkers off --states 5000
    python tools/dependence.py --cpus 3 --max-ops 2             # three CPUs
    python tools/dependence.py --json                           # the census as one JSON document
    python tools/dependence.py --ceiling --walkers off          # what a lookahead reduction could save

Over the first --states worlds of the breadth-first search (symmetry and subsumption off,
so that every pair is one of CPUs as they are), every pair of enabled transitions of
different CPUs is taken in both orders, and the table gives, per category of its recorded
footprints (pgalloc.explore.dependence), how many pairs fall there and how many of them
commute in fact (the same world both ways, no finding, each still enabled after the other):

  independent   the search's relation (--sleep-sets) calls them independent
  step-words    a doubleword one leaves changed, the other's steps read or write
  check-words   a doubleword one leaves changed, only the other's checks read
  shared-state  both change one part of the kernel state outside the bytes
  coarse-rule   none of these: only the rule that every transition but a step, and every
                step that changes state outside the bytes, depends on all others

"commute" in a dependent row is what a finer relation (semantic commutativity: XORs of
different bits, decrements that stay non-zero; per-part footprints of the state outside
the bytes) could still gain; what does not commute bounds every reduction built on pairwise
independence.  An independent pair that does not commute is a soundness bug of the sleep
sets: it is listed, and the exit status is 1.  Exit 2 for bad arguments, 3 when the setup
itself breaks a check (a version file whose bug fires while the starting world is built:
explore reports it), 130 on Ctrl-C.

--ceiling instead searches every world twice (symmetry and subsumption off; --states caps
each search, default 2,000,000): with every transition, and greedily, expanding at each world
only the first CPU whose every enabled transition commutes in fact with every enabled
transition of the others, none raising.  That is what a persistent or stubborn set of one
CPU needs at that world; a sound one also needs the others' later transitions to commute
with it, so wherever a sound one narrows, the greedy search does too, and its worlds
estimate how far such a reduction could shrink the search at best (an estimate, not a
bound: the two reach different worlds).  The findings of both are listed;
the greedy one can lose some.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # the tree this tool lives in
sys.path.insert(0, ROOT)

from pgalloc.explore import Setup, SetupViolation   # noqa: E402 - after the path
from pgalloc.explore.dependence import CATEGORIES, census, ceiling   # noqa: E402
from pgalloc.errors import VersionError            # noqa: E402
from pgalloc.registry import VERSIONS, load_version  # noqa: E402


def count(text: str) -> int:
    """A count of at least 1 (argparse names the type by this function)."""
    n = int(text)
    if n < 1:
        raise ValueError
    return n


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f} %" if total else "    -  "


def render(c) -> str:
    """The census as a table."""
    s = c.setup
    lines = [f"{s.version}, {s.cpus} CPUs, --max-ops {s.max_ops}, walkers {'on' if s.walkers else 'off'}: "
             f"{'all ' if c.complete else 'the first '}{c.states:,} worlds{'' if c.complete else ' (breadth first)'}, "
             f"{c.pairs:,} pairs of enabled transitions of different CPUs"
             + (f" ({c.with_finding:,} with a finding, not classified)" if c.with_finding else ""),
             "", f"{'category':<14} {'pairs':>9} {'share':>8} {'commute':>9}"]
    classified = sum(c.by_category.values())
    for cat in CATEGORIES:
        n = c.by_category[cat]
        lines.append(f"{cat:<14} {n:>9,} {_share(n, classified)} {c.commuting[cat]:>9,}")
    lines.append(f"{'all':<14} {classified:>9,} {_share(classified, classified)} {sum(c.commuting.values()):>9,}")
    kinds = sorted({kind for _, kind in c.kinds}, key=lambda kind: -sum(n for (_, k), n in c.kinds.items() if k == kind))
    if kinds:
        lines += ["", "pairs by category and by the kinds of the two transitions (start: an operation begins;"
                  " rcu: a callback runs):", f"{'category':<14} " + " ".join(f"{kind:>11}" for kind in kinds)]
        lines += [f"{cat:<14} " + " ".join(f"{c.kinds[cat, kind]:>11,}" for kind in kinds) for cat in CATEGORIES]
    if c.regions:
        lines += ["", "step-words pairs by where a shared doubleword lies (a pair can count in several):"]
        lines += [f"  {r:<32} {n:>8,}" for r, n in c.regions.most_common(12)]
    if c.shared_parts:
        lines += ["", "shared-state pairs by the part both change:"]
        lines += [f"  {p:<32} {n:>8,}" for p, n in c.shared_parts.most_common()]
    if c.unsound:
        lines += ["", f"UNSOUND: {len(c.unsound)} pair(s) the sleep sets call independent do not commute:"]
        lines += [f"  {t} / {u}" for _, t, u in c.unsound[:20]]
    return "\n".join(lines)


def render_ceiling(c) -> str:
    """The ceiling as a few lines."""
    s = c.setup

    def searched(states, complete):
        return f"{states:,} worlds" + ("" if complete else " (cut by --states: not all)")

    lost = sorted(c.full_findings - c.findings)
    lines = [f"{s.version}, {s.cpus} CPUs, --max-ops {s.max_ops}, walkers {'on' if s.walkers else 'off'}"
             " (symmetry and subsumption off):",
             f"  every transition                      {searched(c.full_states, c.full_complete)}, "
             f"{len(c.full_findings)} distinct findings",
             f"  one CPU where it commutes, greedily   {searched(c.states, c.complete)} "
             f"({_share(c.states, c.full_states).strip()}), {len(c.findings)} distinct findings; "
             f"narrowed at {c.narrowed:,} of the {c.branching:,} worlds with two CPUs' transitions"]
    lines += [f"  lost: {f}" for f in lost]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dependence", description=__doc__.strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default="seed",
                    help=f"allocator version: one of {', '.join(VERSIONS)}, or a version file (.py) (default seed)")
    ap.add_argument("--max-ops", type=count, default=3, help="operations started, at most (default 3)")
    ap.add_argument("--cpus", type=count, default=2, help="CPUs (default 2)")
    ap.add_argument("--states", type=count, default=None,
                    help="worlds sampled, breadth first (default 2000; with --ceiling 2,000,000)")
    ap.add_argument("--walkers", choices=("on", "off"), default="on",
                    help="the readers in flight (TLBs, GUP-fast, pte_offset_map), as explore's --no-walkers (default on)")
    ap.add_argument("--json", action="store_true", help="print the census as JSON")
    ap.add_argument("--ceiling", action="store_true",
                    help="estimate what a reduction expanding one CPU at a time could save (see above)")
    args = ap.parse_args(argv)
    try:
        version = load_version(args.version)
    except VersionError as e:
        print(f"dependence: {e}", file=sys.stderr)
        return 2
    setup = Setup(version=version, cpus=args.cpus, max_ops=args.max_ops, walkers=args.walkers == "on")
    try:
        if args.ceiling:
            c = ceiling(setup, states=args.states or 2_000_000)
        else:
            c = census(setup, states=args.states or 2000)
    except SetupViolation as e:
        print(f"dependence: the setup breaks a check before any interleaving: {e} (explore reports it)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("dependence: interrupted; no census printed", file=sys.stderr)
        return 130
    try:
        print(json.dumps(c.as_dict(), indent=2) if args.json else render_ceiling(c) if args.ceiling else render(c))
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    return 0 if args.ceiling else 1 if c.unsound else 0


if __name__ == "__main__":
    sys.exit(main())
