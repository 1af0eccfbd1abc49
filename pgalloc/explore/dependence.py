"""Which transitions commute: the dependence census behind the partial-order reductions.

A partial-order reduction can only skip an order of two transitions that *commute*: taken
in either order from a world, they reach the same world, neither breaks a check, and
neither disables the other.  ``census`` measures, over a breadth-first sample of a
search's worlds, every pair of enabled transitions of different CPUs:

* whether they commute in fact (both orders taken: ``commute``);
* whether the search's own independence relation (``reductions.independent``, the sleep
  sets') calls them independent: such a pair that does not commute is a soundness bug of
  that relation, and ``Census.unsound`` lists it;
* otherwise why their footprints make them dependent, the first that holds of: a
  doubleword one leaves changed and the other's steps read or write (named by where it
  lies: ``region``), a doubleword one leaves changed that only the other's checks read
  (a word stored into and restored within a transition counts as read), a part of
  the kernel state outside the bytes that both change (``reductions.Shared``, a CPU's
  context and the running pages taken per CPU and per page; ``budget``: both start an
  operation), or nothing but the search's coarse rule (a transition that is not a step,
  or that changes any state outside the bytes, is dependent on every other).

Pairs that commute although their footprints conflict are what semantic commutativity
(two XORs of different bits, a decrement that stays non-zero) could gain; pairs that do
not commute bound what any reduction built on pairwise independence can save.
``tools/dependence.py`` prints the census.

``ceiling`` estimates what a lookahead reduction (persistent or stubborn sets, DPOR)
could save at all: the search again, expanding at each world only one CPU whose
transitions commute in fact with every other CPU's enabled ones (``tools/dependence.py
--ceiling``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from s390emu import machine as M
from s390emu import structs as S

from dat import reachable_tables

from ..checks import live_mms
from .operations import transitions
from .reductions import Shared, apply, footprint, footprint_state, independent
from .setup import Setup, build
from .world import World, copy_world, freeze, thaw, world_key

# The categories of a pair, in the order they are tried.
CATEGORIES = ("independent", "step-words", "check-words", "shared-state", "coarse-rule")


@dataclass
class Taken:
    """One transition taken from a world, with what it touched."""

    t: tuple
    world: World | None         # the successor (None: the transition raised)
    error: str | None           # the exception it raised (a finding), else None
    reads: frozenset            # doublewords its steps read
    check_reads: frozenset      # doublewords only the checks read
    changed: frozenset          # parts of the state outside the bytes it changed (``_changed``)
    fp: tuple                   # its footprint as the search records it (``reductions.footprint``)

    @property
    def writes(self) -> frozenset:
        """The doublewords it left changed (the footprint's)."""
        return self.fp[2]


@dataclass
class Census:
    """The pairs of one census, by category, and whether they commute."""

    setup: Setup
    states: int = 0
    complete: bool = False                      # every world of the search sampled (not cut at ``states``)
    pairs: int = 0
    with_finding: int = 0                       # pairs where one transition raised (not classified)
    by_category: Counter = field(default_factory=Counter)
    commuting: Counter = field(default_factory=Counter)       # category -> pairs that commute in fact
    shared_parts: Counter = field(default_factory=Counter)    # part -> shared-state pairs sharing it
    regions: Counter = field(default_factory=Counter)         # region -> step-words pairs conflicting there
    kinds: Counter = field(default_factory=Counter)           # (category, "step/start") -> pairs (``pair_kind``)
    unsound: list = field(default_factory=list)               # (world key, t, u): independent, not commuting

    def as_dict(self) -> dict:
        """The census as ``tools/dependence.py --json`` prints it."""
        s = self.setup
        return {"version": s.version, "cpus": s.cpus, "max_ops": s.max_ops, "walkers": s.walkers, "states": self.states,
                "complete": self.complete,
                "pairs": self.pairs, "with_finding": self.with_finding,
                "categories": {c: {"pairs": self.by_category[c], "commute": self.commuting[c]} for c in CATEGORIES},
                "shared_parts": dict(self.shared_parts.most_common()), "regions": dict(self.regions.most_common()),
                "kinds": {c: {kind: n for (cat, kind), n in self.kinds.most_common() if cat == c} for c in CATEGORIES},
                "unsound": [[repr(t), repr(u)] for _, t, u in self.unsound]}


def _changed(pre: Shared, post: Shared, gen0: tuple, gen1: tuple) -> frozenset:
    """The parts of the state outside the bytes that differ: a CPU's context as
    ``contexts[i]``, the running pages as ``pages:ADDR`` per page that came or went,
    the generator's counters as ``budget``."""
    out = set()
    for name in Shared._fields:
        a, b = getattr(pre, name), getattr(post, name)
        if a == b:
            continue
        if name == "contexts":
            out.update(f"contexts[{i}]" for i, (x, y) in enumerate(zip(a, b)) if x != y)
        elif name == "pages":
            out.update(f"pages:{p:#x}" for p in a ^ b)
        else:
            out.add(name)
    if gen0 != gen1:
        out.add("budget")
    return frozenset(out)


def _take(ctx, w: World, t: tuple) -> Taken:
    """Take ``t`` on a copy of ``w`` twice: with the checks (what the search does) and
    without (the steps' own reads)."""
    pre = footprint_state(w.k)
    c = copy_world(w)
    c.k.mem.rec = (set(), set())
    error = None
    try:
        apply(ctx, c, t)
    except Exception as e:      # noqa: BLE001 - every kernel exception is a finding
        error = f"{type(e).__name__}: {e}"
    rec, c.k.mem.rec = c.k.mem.rec, None
    fp = footprint(t, rec, pre, c.k, w.k.mem)
    bare = copy_world(w)
    bare.k.checks = False
    bare.k.mem.rec = (set(), set())
    try:
        apply(ctx, bare, t)
    except Exception:           # noqa: BLE001 - raised without the checks too: a finding either way
        pass
    step_reads = frozenset(bare.k.mem.rec[0])
    bare.k.mem.rec = None
    if error is not None:
        return Taken(t, None, error, step_reads, fp[1] - step_reads, frozenset(), fp)
    return Taken(t, c, None, step_reads, fp[1] - step_reads, _changed(pre, footprint_state(c.k), w.gen, c.gen), fp)


def commute(ctx, a: Taken, b: Taken) -> bool:
    """Whether ``a`` and ``b`` (taken from one world, neither raising) commute: each is
    still enabled after the other, neither raises there, and both orders reach worlds
    with one key."""
    keys = []
    for first, second in ((a, b), (b, a)):
        if second.t not in transitions(ctx, first.world):
            return False
        w = copy_world(first.world)
        try:
            apply(ctx, w, second.t)
        except Exception:       # noqa: BLE001 - a finding in one order only: they do not commute
            return False
        keys.append(world_key(w, live=ctx.setup.dead_locals))
    return keys[0] == keys[1]


def region(k, addr: int, crst: frozenset = frozenset(), mms: list | None = None) -> str:
    """Where doubleword address ``addr`` lies, for the census: a ``struct page`` field, the
    zone's free lists, an ``mm_struct`` field (of ``mms``, default the live ones), a page
    table, a region or segment table (one of ``crst``, their origins: ``crst_tables``), or
    else the 4 KiB frame."""
    mm_map = k.mem_map
    if M.MEM_MAP <= addr < M.MEM_MAP + mm_map.nr_pages * S.page.size:
        return "struct page." + _field(S.page, (addr - M.MEM_MAP) % S.page.size)
    if M.ZONE <= addr < M.NR_CPUS:
        return "zone free lists"
    for mm in live_mms(k) if mms is None else mms:
        if mm <= addr < mm + S.mm_struct.size:
            return "mm_struct." + _field(S.mm_struct, addr - mm)
    if addr & ~0x3FFF in crst:
        return "region/segment table"
    page = mm_map.virt_to_page(addr)
    if mm_map.is_page(page) and mm_map.page_type(page) & (S.PG_table | S.PG_buddy) == S.PG_buddy:
        return "page table"             # type bits are stored inverted: PageTable's clear
    return f"frame {addr & ~0xFFF:#x}"


def crst_tables(k, mms: list) -> frozenset:
    """The origins of the region and segment tables the ASCEs of ``mms`` reach."""
    out = set()
    for mm in mms:
        reach = reachable_tables(k.mem, k.mem.read_u64(mm + S.mm_struct.fields["context.asce"]))
        for origins in reach.crst.values():
            out.update(int(o) for o in origins)
    return frozenset(out)


def _field(struct, off: int) -> str:
    """The innermost field(s) of ``struct`` that begin at or before byte ``off`` (a union
    gives several, joined by ``/``)."""
    best = max(o for o in struct.fields.values() if o <= off)
    names = [n for n, o in struct.fields.items() if o == best]
    depth = max(n.count(".") for n in names)
    return "/".join(sorted(n for n in names if n.count(".") == depth))


def pair_kind(t: tuple, u: tuple) -> str:
    """The kinds of two transitions, sorted: ``start/step``, ``rcu/step``, ``step/step``..."""
    return "/".join(sorted((t[0], u[0])))


def _classify(a: Taken, b: Taken, census: Census, k, crst: frozenset, mms: list) -> str:
    """The first category that holds of the pair (``CATEGORIES``), counting where
    (``crst``, ``mms``: the world's tables and mms, for ``region``)."""
    if independent(a.fp, b.fp):
        return "independent"
    words = (a.writes & (b.reads | b.writes)) | (b.writes & a.reads)
    if words:
        for r in {region(k, dw << 3, crst, mms) for dw in words}:
            census.regions[r] += 1
        return "step-words"
    if (a.writes & b.check_reads) | (b.writes & a.check_reads):
        return "check-words"
    shared = a.changed & b.changed
    if shared:
        for part in {p.partition(":")[0] for p in shared}:
            census.shared_parts[part] += 1
        return "shared-state"
    return "coarse-rule"


def _plain(setup: Setup) -> Setup:
    """``setup`` without the symmetry and subsumption reductions and the sleep sets, so
    that each transition is one of CPUs as they are and every world is kept."""
    return Setup(**{**setup.__dict__, "symmetry": False, "subsumption": False, "sleep_sets": False})


def _breadth_first(setup: Setup, states: int, expand) -> tuple[int, bool]:
    """Visit at most ``states`` worlds of ``setup`` breadth first: ``expand(ctx, w)``
    takes the transitions of world ``w`` it chooses and returns them (``Taken``); their
    successors not seen before are visited next.  Returns the worlds visited and whether
    that was all of them."""
    ctx, w0 = build(setup)
    frontier = [freeze(w0)]
    seen = {world_key(w0, live=setup.dead_locals)}
    visited = 0
    while frontier:
        nxt = []
        for blob in frontier:
            if visited >= states:
                return visited, False
            visited += 1
            for x in expand(ctx, thaw(ctx, blob)):
                if x.world is None:
                    continue
                key = world_key(x.world, live=setup.dead_locals)
                if key not in seen:
                    seen.add(key)
                    nxt.append(freeze(x.world))
        frontier = nxt
    return visited, True


def census(setup: Setup, states: int = 2000) -> Census:
    """The census of the first ``states`` worlds of a breadth-first search of ``setup``
    (without the symmetry and subsumption reductions, so that each pair is one of CPUs
    as they are)."""
    setup = _plain(setup)
    out = Census(setup)

    def expand(ctx, w):
        here = world_key(w, live=setup.dead_locals)
        taken = [_take(ctx, w, t) for t in transitions(ctx, w)]
        mms = live_mms(w.k)
        crst = crst_tables(w.k, mms)
        for i, a in enumerate(taken):
            for b in taken[:i]:
                if a.fp[0] == b.fp[0]:
                    continue            # one CPU's transitions are alternatives: after one, the others are not enabled
                out.pairs += 1
                if a.error or b.error:
                    out.with_finding += 1
                    continue
                cat = _classify(a, b, out, w.k, crst, mms)
                out.by_category[cat] += 1
                out.kinds[cat, pair_kind(a.t, b.t)] += 1
                if commute(ctx, a, b):
                    out.commuting[cat] += 1
                elif cat == "independent":
                    out.unsound.append((here, a.t, b.t))
        return taken

    out.states, out.complete = _breadth_first(setup, states, expand)
    return out


@dataclass
class Ceiling:
    """What a reduction that expands one CPU at a time could at best leave of a search
    (``ceiling``): the worlds and the findings (kernel exceptions, by their text) of
    the search that takes every transition and of the greedy one."""

    setup: Setup
    full_states: int = 0
    full_complete: bool = False
    full_findings: frozenset = frozenset()
    states: int = 0
    complete: bool = False
    findings: frozenset = frozenset()
    branching: int = 0          # worlds of the greedy search with enabled transitions of two CPUs or more
    narrowed: int = 0           # of those, the worlds it expanded one CPU of

    def as_dict(self) -> dict:
        """The ceiling as ``tools/dependence.py --ceiling --json`` prints it."""
        s = self.setup
        return {"version": s.version, "cpus": s.cpus, "max_ops": s.max_ops, "walkers": s.walkers,
                "every_transition": {"states": self.full_states, "complete": self.full_complete,
                                     "findings": sorted(self.full_findings)},
                "one_cpu_where_it_commutes": {"states": self.states, "complete": self.complete,
                                              "findings": sorted(self.findings),
                                              "branching": self.branching, "narrowed": self.narrowed}}


def ceiling(setup: Setup, states: int = 2_000_000) -> Ceiling:
    """Estimate what any reduction that expands one CPU's transitions at a time
    (a persistent or stubborn set, DPOR) could save on ``setup``: search it twice, with
    every transition, and greedily, expanding at each world only the first CPU whose
    every enabled transition commutes in fact (``commute``) with every enabled
    transition of every other CPU, none of them raising.

    That is the condition such a set needs *now*; a sound one also needs the other CPUs'
    later transitions to commute with it, which the greedy search does not ask, so
    wherever a sound one narrows, this one does too, and it may lose findings (which
    ``findings`` shows).  It is an estimate, not a bound: the two reach different
    worlds.  Symmetry and subsumption are off in both searches."""
    setup = _plain(setup)
    out = Ceiling(setup)
    full_findings, findings = set(), set()

    def every(ctx, w):
        taken = [_take(ctx, w, t) for t in transitions(ctx, w)]
        full_findings.update(x.error for x in taken if x.error)
        return taken

    def greedy(ctx, w):
        taken = [_take(ctx, w, t) for t in transitions(ctx, w)]
        findings.update(x.error for x in taken if x.error)
        cpus = sorted({x.fp[0] for x in taken})
        if len(cpus) < 2:
            return taken
        out.branching += 1
        if any(x.error for x in taken):
            return taken
        for cpu in cpus:
            mine = [x for x in taken if x.fp[0] == cpu]
            if all(commute(ctx, a, b) for a in mine for b in taken if b.fp[0] != cpu):
                out.narrowed += 1
                return mine
        return taken

    out.full_states, out.full_complete = _breadth_first(setup, states, every)
    out.states, out.complete = _breadth_first(setup, states, greedy)
    out.full_findings, out.findings = frozenset(full_findings), frozenset(findings)
    return out
