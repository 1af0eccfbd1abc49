"""The explorer's reductions, each checked where the search goes: symmetry and sleep
sets, local steps, movers, dead locals."""

import dataclasses

import pytest

from pgalloc import explore as X
from pgalloc.explore import Setup, explore, reductions
from pgalloc.steps import PATHS, UNLESS_WALKERS

from .worlds import bfs_worlds, followers, key_and_ready, key_up_to_gather_names


@pytest.mark.parametrize("version", ["v515"])
def test_symmetry_and_sleep_sets_find_what_the_plain_search_finds(version):
    plain = explore(Setup(version=version, max_ops=2, symmetry=False, subsumption=False))
    sym = explore(Setup(version=version, max_ops=2))
    sleep = explore(Setup(version=version, max_ops=2, sleep_sets=True))
    kinds = {v.kind for v in plain.violations}
    assert kinds and kinds == {v.kind for v in sym.violations} == {v.kind for v in sleep.violations}
    assert sym.states < plain.states
    assert sleep.transitions <= plain.transitions
    # Shortest traces stay shortest.
    assert sorted(len(v.transitions) for v in plain.violations) == sorted(len(v.transitions) for v in sym.violations)


@pytest.mark.parametrize("version", ["v515", "seed"])
@pytest.mark.parametrize("reduction", ["movers", "subsumption", "local_steps", "dead_locals"])
def test_each_reduction_finds_what_the_search_without_it_finds(results, version, reduction):
    reduced = results(version)
    plain = explore(Setup(version=version, max_ops=2, **{reduction: False}), workers=2)
    names = {v.name for v in plain.violations}
    assert names and names == {v.name for v in reduced.violations}
    assert reduced.states < plain.states


# Where the search goes for three versions, and the seed's two pte_free_defer calls (the
# branch of pte_free_half that its predicate mark makes local lies deeper than 1,500 worlds).
_LOCAL_SETUPS = {"v64": Setup(version="v64", max_ops=2), "seed": Setup(version="seed", max_ops=2),
                 "v64, no walkers": Setup(version="v64", max_ops=2, walkers=False),
                 "v67": Setup(version="v67", max_ops=2),
                 "seed, defer both halves": Setup(version="seed", script=((("defer", 0),), (("defer", 1),)))}


@pytest.mark.parametrize("name", list(_LOCAL_SETUPS))
def test_each_local_step_commutes_with_every_other_transition(name):
    """What taking local steps at once (``is_local``) rests on, checked where the search goes:
    with the reduction off, wherever a CPU's next step is a local one, taking it before
    or after any other enabled transition gives the same world, and neither disables
    the other (CPU symmetry off: it lists only the first idle CPU's transitions).  The
    one difference allowed: with the local step first, a callback may be ready that is
    not with it second (the hand-over of a gather to call_rcu gets its grace period
    before another CPU's softirq holds it back): a world that allows all the other does."""
    setup = dataclasses.replace(_LOCAL_SETUPS[name], local_steps=False, symmetry=False)
    ctx, worlds = bfs_worlds(setup, 1500)
    checked = 0
    labels = set()
    for w in worlds:
        ts = X.transitions(ctx, w)
        for a in ts:
            if a[0] != "step" or not X.is_local(w.k.active(a[1])[1][-1], w.k.walkers):
                continue
            labels.add(w.k.position(a[1])[2])
            for b in ts:
                if len(b) > 1 and b[1] == a[1]:
                    continue        # the same CPU: program order, not an interleaving
                if b[0] == "start" and b[2][0] == "alloc" and w.k.position(a[1])[2] == "return":
                    continue        # an op's return frees its slot, which a later alloc takes
                                    # instead of the spare one: the same op on an equal slot
                key_ab, ready_ab = key_and_ready(ctx, w, [a, b])
                key_ba, ready_ba = key_and_ready(ctx, w, [b, a])
                assert key_ab == key_ba, (w.k.position(a[1]), b)
                assert ready_ab is None or set(ready_ab) >= set(ready_ba), (w.k.position(a[1]), b)
                checked += 1
    assert checked > 100
    if setup.script:
        # The steps that are local on one branch only (a predicate mark) are reached.
        conditional = {label for cls in PATHS.values() if cls.__module__.startswith("pgalloc.")
                       for label, when in cls._LOCAL.items() if when is not True and when is not UNLESS_WALKERS}
        assert conditional and labels >= conditional


@pytest.mark.parametrize("version", ["v64", "seed", "v66"])
def test_starting_a_page_table_operation_is_a_right_mover(version):
    """What fusing an operation's start with its first visible step rests on: with the
    movers off, wherever another CPU's transition can follow the start (and the
    operation's first, invisible step), it can also come first, the start is still
    possible after it, and both orders give the same world (up to the gathers' names)."""
    # Without walkers: with them an operation's first step may be visible (pte_free's
    # IDTE, a walker reading the entry it clears), and then only the start itself, which
    # touches nothing, moves; the whole-search comparisons below check that with walkers.
    ctx, worlds = bfs_worlds(Setup(version=version, max_ops=2, movers=False, symmetry=False, walkers=False), 1000)
    checked = 0
    # (With a softirq running there, starting takes the softirq's step.)
    for w, ts, a, b in followers(ctx, worlds, lambda w, a: a[0] == "start" and a[2][0] in X.TABLE_OPS + ("alloc",)
                                  and not w.k.cpus[a[1]].soft):
        first_b = key_up_to_gather_names(ctx, w, [b, a])
        if "alloc" in (a[2][0], b[0] == "start" and b[2][0]) and (b not in ts or first_b == ("disabled", a)):
            continue        # the other one claimed or freed a slot, so the alloc takes
                            # another empty slot (the same operation on an equal slot)
        assert b in ts, (a, b)
        assert key_up_to_gather_names(ctx, w, [a, b]) == first_b, (a, b)
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("version", ["v515", "seed", "v66", "v67"])
def test_starting_an_rcu_callback_is_a_right_mover(version):
    """What fusing a callback's start (and its local steps) with its first visible step
    rests on: with the movers off, wherever another CPU's transition can follow the
    start, it can also come first, and both orders give the same world, except that
    with it first a callback it queued may already be ready (no softirq held the grace
    period back): a world that allows all the other one does."""
    # Without walkers, so that the first 1,000 worlds reach callbacks (the walkers' own
    # starts crowd the first levels); with walkers, the whole-search comparisons below.
    ctx, worlds = bfs_worlds(Setup(version=version, max_ops=2, movers=False, symmetry=False, walkers=False), 1000)
    checked = 0
    for w, ts, a, b in followers(ctx, worlds, lambda w, a: a[0] == "rcu"
                                  and X.is_local(w.k.callback_path(*a[2]))):
        assert b in ts, (a, b)
        key_ab, ready_ab = key_and_ready(ctx, w, [a, b])
        key_ba, ready_ba = key_and_ready(ctx, w, [b, a])
        assert key_ab == key_ba, (a, b)
        assert set(ready_ab) <= set(ready_ba), (a, b)
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("version", ["v515", "seed", "v66"])
def test_dead_locals_are_never_read(version, monkeypatch):
    """The liveness analysis, checked by sabotage: after every transition, each running
    function's dead locals are overwritten with garbage; the search must see the same
    worlds, transitions and findings as without."""
    from pgalloc.liveness import live_locals
    orig = reductions.settle

    def settle_and_garble(w, *a, **kw):
        orig(w, *a, **kw)
        for c in w.k.cpus:
            for fr in c.proc + c.soft:
                live = live_locals(type(fr)).get(fr.pc, type(fr)._ALL)
                for name in type(fr)._ALL:
                    if name not in live:
                        setattr(fr, name, 0x5A5A5A5A5A)
    plain = explore(Setup(version=version, max_ops=2))
    monkeypatch.setattr(reductions, "settle", settle_and_garble)
    garbled = explore(Setup(version=version, max_ops=2))
    assert (garbled.states, garbled.transitions) == (plain.states, plain.transitions)
    assert [v.kind for v in garbled.violations] == [v.kind for v in plain.violations]


def test_a_footprint_counts_the_tlb_fills_walks_and_the_tlbs():
    # With walkers every step's TLB fill walks the tables through raw views, reusing the
    # walks of the world it came from: what it read is still read (the in-flight checks
    # read what it found), and a TLB is shared state (a fill or purge in another order
    # leaves other entries).
    ctx, w0 = X.build(Setup(version="v64", max_ops=1, walkers=True))
    w0.k.prime_tlb_walks()
    t = next(t for t in X.transitions(ctx, w0) if t[0] == "start")
    c = X.copy_world(w0)
    pre = reductions.footprint_state(c.k)
    c.k.mem.rec = (set(), set())
    X.apply(ctx, c, t)
    rec, c.k.mem.rec = c.k.mem.rec, None
    table = ctx.tables[0]
    assert set(range(table >> 3, (table >> 3) + 256)) <= rec[0]
    assert "tlbs" in reductions.Shared._fields
    purged = pre._replace(tlbs=tuple(frozenset() for _ in pre.tlbs))
    assert pre.tlbs != purged.tlbs and reductions.footprint(("step", 0), rec, purged, c.k)[3]


def test_a_word_stored_into_and_restored_counts_as_read_only():
    # A transition is atomic to every other: a lock word taken and released within it
    # changes nothing another transition can see, so only the words it leaves changed are
    # its writes (against the storage before it).
    ctx, w = X.build(Setup(version="v64", max_ops=1, walkers=False))
    c = X.copy_world(w)
    pre = reductions.footprint_state(c.k)
    mem = c.k.mem
    mem.rec = (set(), set())
    restored, changed = 0x30000, 0x30008
    old = mem.read_u64(restored)
    mem.write_u64(restored, old ^ 1)
    mem.write_u64(restored, old)
    mem.write_u64(changed, mem.read_u64(changed) ^ 1)
    rec, mem.rec = mem.rec, None
    cpu, reads, writes, glob = reductions.footprint(("step", 0), rec, pre, c.k, w.k.mem)
    assert restored >> 3 in reads and writes == {changed >> 3} and not glob
    assert reductions.footprint(("step", 0), rec, pre, c.k)[2] == {restored >> 3, changed >> 3}
