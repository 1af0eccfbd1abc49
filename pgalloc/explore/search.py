"""The breadth-first search of every interleaving (issue 4), over worker processes.

``explore`` runs levels of the BFS: each world of a level is thawed and expanded
(``expand``: every enabled transition taken on a copy, with the reductions; each
successor checked, keyed and frozen), and the successors are merged into the visited
set (exact keys, or a world with more budget left that subsumes it).  The first trace
that reaches each kind of finding is a shortest one; ``replay`` then records its rows.
``run_in_order`` runs one scenario once, in the plainest order.

>>> r = explore(Setup(version="v64", cpus=2, max_ops=1))
>>> r.violations, r.complete
([], True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..kernel import Kernel
from .checkpoint import Level, Writer
from .findings import Finding, deadlock, end_checks, quiescent, violation_finding
from .operations import script_label, transitions
from .reductions import apply, footprint, footprint_state, independent
from .replay import replay, setup_finding
from .setup import Context, Setup, SetupViolation, build
from .workers import WorkerDied, Workers
from .world import Scratch, clone_onto, cpu_key, freeze, subsumes, thaw, world_key


def expand(ctx: Context, blob: bytes, sleep: frozenset) -> tuple[list, bool, tuple, int]:
    """Successors of a frozen world: ``[(t, key, blob, sleep, None)]``, or
    ``(t, None, None, None, finding)`` for a transition that broke a check,
    whether the ops bound cut something off, (scenario mode) the ``(cpu, position)``
    of each scenario operation that starts here (a transition asleep here starts it too:
    the sleep set only says another order takes it), and how many more transitions
    reached worlds this process already handed to the search (without sleep sets such a
    successor changes nothing in the search but its count of transitions, so it is not
    listed: half the successors are such, and each listed one is pickled to the driver).

    ``sleep`` is a set of ``(transition, footprint)``: transitions not to take here
    because an equivalent interleaving takes them elsewhere.  A footprint measured at an
    ancestor stays valid while only independent transitions ran since (they changed
    nothing it read), which is exactly when it stays in the sleep set.
    """
    sc = ctx.scratch
    if sc is None:
        sc = ctx.scratch = Scratch(ctx)
    w = thaw(ctx, blob, sc)
    k = w.k
    if k.walkers:
        k.prime_tlb_walks()             # each successor's TLB fill starts from these walks
    ts = transitions(ctx, w)
    bound_hit = (ctx.setup.script is None and w.gen[0] >= ctx.setup.max_ops
                 and any(not k.cpus[c].proc for c in range(len(k.cpus))))
    started = ()
    if ctx.setup.script is not None:
        started = tuple((t[1], w.gen[3][t[1]]) for t in ts if t[0] == "start")
    out = []
    dups = 0
    use_sleep = ctx.setup.sleep_sets
    asleep = {t for t, _ in sleep}
    done: list[tuple] = []                  # (t, footprint) explored here, in order
    pre_py = footprint_state(k) if use_sleep else None
    # A successor shares the CPUs its transition did not move (``own_cpu``): key them once.
    known = sc.known or {id(c): cpu_key(c, ctx.setup.dead_locals) for c in k.cpus}
    for t in ts:
        if t in asleep:
            continue
        sc.reset_child()
        c = clone_onto(w, sc.C)
        if use_sleep:
            c.k.mem.rec = (set(), set())
        try:
            apply(ctx, c, t)
        except Exception as e:          # noqa: BLE001 - every kernel exception is a finding
            out.append((t, None, None, None, violation_finding(e)))
            continue
        fp = None
        if use_sleep:
            rec, c.k.mem.rec = c.k.mem.rec, None
            fp = footprint(t, rec, pre_py, c.k, k.mem)
        ck = c.k
        diff = ck.mem.keyed_diff()
        key = world_key(c, ctx.setup.symmetric, diff, ctx.setup.dead_locals, known)
        # A world this process already handed to the search passed the checks below,
        # which read only the world (not the step that reached it): skip them then.
        seen = not use_sleep and key in sc.sent
        if not seen:
            fnd = None
            if any(ck.busy(x) and not ck.runnable(x) for x in range(len(ck.cpus))):
                fnd = deadlock(c)
            if fnd is None and quiescent(c):
                fnd = end_checks(ctx, c)
            if fnd is not None:
                out.append((t, None, None, None, fnd))
                continue
        child_sleep = frozenset()
        if use_sleep and not fp[3]:
            child_sleep = frozenset(p for p in list(sleep) + done if independent(p[1], fp))
        if seen:
            dups += 1
        else:
            if not use_sleep:
                sc.sent.add(key)
            out.append((t, key, freeze(c, diff, sc), child_sleep, None))
        if use_sleep:
            done.append((t, fp))
    sc.reset_child()
    return out, bound_hit, started, dups


# -- the search ---------------------------------------------------------------------------------------

# Why a search stopped before it explored every interleaving within its bounds.
CUTS = {"max-steps": "--max-steps", "max-states": "--max-states", "max-seconds": "--max-seconds",
        "first": "--first", "interrupted": "an interrupt (Ctrl-C)",
        "worker-died": "a dead worker process",
        "setup": "a violation while the setup was built (no interleaving explored)"}


@dataclass
class Result:
    """What a search explored and the findings it made, each with a shortest trace."""

    setup: Setup
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    depth: int = 0
    complete: bool = True          # False when a bound cut the search or a scenario operation never started
    ops_bound_reached: bool = False
    violations: list = field(default_factory=list)
    workers: int = 1
    engine: str = "local"          # which search ran: "local" (worker processes) or "ray" (ray_engine)
    cut: str | None = None         # what stopped the search early: one of CUTS
    never_started: list = field(default_factory=list)   # scenario operations no explored world started
    resumed_depth: int | None = None   # the checkpoint's level this run resumed at (--checkpoint)

    @property
    def states_per_second(self) -> float:
        """The search's rate."""
        return self.states / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        """The result as ``explore --json`` prints it."""
        s = self.setup
        return {"version": s.version, "mode": s.describe(), "cpus": s.cpus, "max_ops": s.max_ops if s.script is None else None,
                "pages": s.pages, "states": self.states, "transitions": self.transitions,
                "seconds": round(self.seconds, 3), "states_per_second": round(self.states_per_second, 1),
                "depth": self.depth, "complete": self.complete, "ops_bound_reached": self.ops_bound_reached,
                "workers": self.workers, "violations": [v.as_dict() for v in self.violations],
                "cut": self.cut, "never_started": self.never_started, "walkers": s.walkers,
                "resumed_depth": self.resumed_depth, "engine": self.engine, "pgste": s.pgste}



def _expand_chunk(ctx: Context, chunk: list) -> list:
    """A worker's task: expand each world of ``chunk`` in the worker's own context."""
    return [(sid, expand(ctx, blob, sleep)) for sid, blob, sleep in chunk]


def _expand_level(ctx: Context, frontier: list, workers: Workers | None, n: int):
    """``(sid, expand(...))`` for each world of a BFS level, in order; over the ``n``
    workers in chunks small enough that no worker idles long at the level's end."""
    if workers is None or len(frontier) < 2 * n:
        for sid, blob, sl in frontier:
            yield sid, expand(ctx, blob, sl)
        return
    size = max(1, min(64, len(frontier) // (n * 4)))
    for part in workers.map([frontier[i:i + size] for i in range(0, len(frontier), size)]):
        yield from part


def explore(setup: Setup, *, workers: int = 1, progress: Callable[[int, int, int], None] | None = None,
            first_only: bool = False, checkpoint: str | None = None, resume: Level | None = None) -> Result:
    """Breadth-first search of every interleaving; returns the states explored and one
    shortest trace per distinct violation (``Finding.key``: name, function, step and
    defect), and whether it looked everywhere (``complete``; else ``cut`` or
    ``never_started`` says why not).  Ctrl-C ends it as a cut search.

    With ``checkpoint`` (a directory), the search is written there at each level's end
    (``checkpoint.Writer``); ``resume`` (a ``Level`` loaded from one) goes on from it, to the
    result the search would have had uninterrupted (its time summed over the runs)."""
    t0 = time.perf_counter()
    res = Result(setup, workers=workers)
    built = build_or_cut(res, t0)
    if built is None:
        return res
    ctx, w0 = built
    # Worlds explored, by key without the budget: a world whose budget one of them
    # covers is not explored again (sleep sets keep exact keys: their entries differ).
    subsume = setup.subsumption and not setup.sleep_sets
    if resume is None:
        root_key = world_key(w0, setup.symmetric, live=setup.dead_locals)
        lv = Level(depth=0, frontier=[(0, freeze(w0), frozenset())], visited={root_key: 0}, sleeps={0: frozenset()},
                   parents=[(-1, None)], variants={root_key[:16]: [(root_key, 0)]}, kinds={}, begun=set())
    else:
        lv = resume
        res.resumed_depth = lv.depth
    visited: dict[bytes, int] = lv.visited
    sleeps: dict[int, frozenset] = lv.sleeps
    parents: list[tuple] = lv.parents
    frontier = lv.frontier
    kinds: dict[tuple, Finding] = lv.kinds
    variants: dict[bytes, list] = lv.variants
    depth = res.depth = lv.depth
    begun: set[tuple] = lv.begun        # (cpu, position) of the scenario operations started
    res.transitions, res.ops_bound_reached = lv.transitions, lv.ops_bound_reached
    writer = Writer(checkpoint, setup, lv) if checkpoint is not None else None
    before = lv.seconds                 # the earlier runs' time

    def cut() -> str | None:
        """What cuts the search at a level's end, if anything."""
        return level_cut(setup, frontier, len(parents), kinds, first_only, t0)

    def level_end() -> str | None:
        """Write the checkpoint; what cuts the search here, if anything."""
        if writer is not None:
            lv.frontier, lv.depth, lv.transitions = frontier, depth, res.transitions
            lv.ops_bound_reached = res.ops_bound_reached
            lv.seconds = before + time.perf_counter() - t0
            writer.save(lv)
        return cut()

    if resume is not None:
        res.cut = cut()                 # the cut the uninterrupted search would make at this level's end
    procs = None
    if workers > 1 and frontier and not res.cut:
        procs = Workers(workers, init=lambda: build(setup)[0], task=_expand_chunk)
    try:
        while frontier and not res.cut:
            if setup.max_steps and depth >= setup.max_steps:
                res.cut = "max-steps"
                break
            nxt: dict[int, list] = {}
            order: list[int] = []
            # Merged as each chunk comes back, while the workers expand the next ones.
            for sid, (succ, bound_hit, started, dups) in _expand_level(ctx, frontier, procs, workers):
                if bound_hit:
                    res.ops_bound_reached = True
                begun.update(started)
                res.transitions += dups
                for t, key, blob, sl, fnd in succ:
                    res.transitions += 1
                    if fnd is not None:
                        if fnd.key not in kinds:
                            fnd.transitions = path_to(parents, sid) + [t]
                            kinds[fnd.key] = fnd
                        continue
                    cid = visited.get(key)
                    if cid is None and subsume:
                        for other, ocid in variants.get(key[:16], ()):
                            if subsumes(other, key):
                                cid = visited[key] = ocid
                                break
                    if cid is None:
                        cid = len(parents)
                        visited[key] = cid
                        if subsume:
                            variants.setdefault(key[:16], []).append((key, cid))
                        parents.append((sid, t))
                        sleeps[cid] = sl
                        nxt[cid] = [blob, sl]
                        order.append(cid)
                    elif cid in nxt:
                        # Reached again in this level: explore with the intersection.
                        nxt[cid][1] = nxt[cid][1] & sl
                        sleeps[cid] = nxt[cid][1]
                    else:
                        old = sleeps.get(cid, frozenset())
                        if not old <= sl:
                            # Seen before with a sleep set that pruned more: explore the rest.
                            new = old & sl
                            sleeps[cid] = new
                            nxt[cid] = [blob, new]
                            order.append(cid)
            frontier = [(cid, nxt[cid][0], nxt[cid][1]) for cid in order]
            depth += 1
            res.depth = depth
            if progress:
                progress(depth, len(parents), len(frontier))
            res.cut = level_end()
    except KeyboardInterrupt:
        # The findings so far are reported as for a cut search (the workers ignore SIGINT).
        res.cut = "interrupted"
    except WorkerDied:
        # Reported like an interrupt; the checkpoint, if any, holds the last level's end.
        res.cut = "worker-died"
    finally:
        if procs is not None:
            procs.close()
    return finish(res, ctx, w0, kinds, begun, len(parents), before + time.perf_counter() - t0)


def build_or_cut(res: Result, t0: float):
    """The setup's ``(context, world)``; ``None`` when a check failed while it was built,
    with ``res`` made the search that setup cut (its one finding, no state explored)."""
    try:
        return build(res.setup)
    except SetupViolation as e:
        res.cut, res.complete, res.violations = "setup", False, [setup_finding(e)]
        res.seconds = time.perf_counter() - t0
        return None


def level_cut(setup: Setup, frontier: list, states: int, kinds: dict, first_only: bool, t0: float) -> str | None:
    """What cuts a search (started at ``t0``) at a level's end, if anything: one of ``CUTS``."""
    if not frontier:
        return None
    if states > setup.max_states:
        return "max-states"
    if setup.max_seconds and time.perf_counter() - t0 > setup.max_seconds:
        return "max-seconds"
    if first_only and kinds:
        return "first"
    return None


def finish(res: Result, ctx: Context, w0, kinds: dict, begun: set, states: int, seconds: float) -> Result:
    """Complete ``res`` at a search's end: the scenario operations never started, whether
    it is complete, its counts, and its findings (``kinds``), shortest first, replayed."""
    setup = res.setup
    if setup.script is not None and res.cut is None:
        res.never_started = [f"CPU{c} operation {i + 1} ({script_label(op)})"
                             for c, ops in enumerate(setup.script) for i, op in enumerate(ops) if (c, i) not in begun]
    res.complete = res.cut is None and not res.never_started
    res.states = states
    res.seconds = seconds
    res.violations = sorted(kinds.values(), key=lambda f: (len(f.transitions), f.name))
    for f in res.violations:
        replay(ctx, w0, f)
    return res


def path_to(parents: list, sid: int) -> list:
    """The transitions from the root to world ``sid``."""
    out = []
    while sid > 0:
        p, t = parents[sid]
        out.append(t)
        sid = p
    return out[::-1]



def run_in_order(setup: Setup) -> tuple[Kernel, "Finding | None"]:
    """Run a scenario once, in the plainest order, and return the kernel it leaves.

    CPU 0's operations first, then CPU 1's, ...; each runs to completion before the next
    starts, and RCU callbacks (softirq on the lowest CPU that can take one) run once
    nothing else can move.  This is one of the interleavings ``explore`` searches: the
    one ``s390emu dump save --scenario`` records.  A check that fails stops the run where
    it failed and is returned as the finding, with the state as it was then.

    >>> k, found = run_in_order(Setup(version="v64", script=((("free_tlb", 0),), (("free", 1),))))
    >>> found is None, k.rcu, k.owner
    (True, [], {})
    """
    try:
        ctx, w = build(setup)
    except SetupViolation as e:
        return e.kernel, violation_finding(e.error)
    order = {"step": 0, "start": 1, "rcu": 2, "gp": 3}
    while True:
        ts = transitions(ctx, w)
        if not ts:
            return w.k, deadlock(w)
        t = min(ts, key=lambda t: (order[t[0]], t[1] if len(t) > 1 else 0))
        try:
            apply(ctx, w, t)
        except Exception as e:          # a Violation, or a kernel error the checks name
            return w.k, violation_finding(e)
