"""The interleaving explorer (issue 4): calibration against known kernel history, the
search machinery, scenario files and the CLI."""

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgalloc import explore as X
from pgalloc.explore import reductions, search
from pgalloc.explore import Setup, explore
from pgalloc.explore.scenario import ScenarioError, parse_scenario
from s390emu.cli import main

# CI bound: every version's generated search at --max-ops 2 takes seconds; the
# --max-ops 5 figures are in README (Scale), measured with tools/bench_explore.py;
# the fixed versions and the seed also run at --max-ops 3 (5 to 30 s each).
CI_OPS = 2


@pytest.fixture(scope="module")
def results():
    cache = {}

    def get(version, ops=CI_OPS, **kw):
        key = (version, ops, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = explore(Setup(version=version, max_ops=ops, **kw), workers=2)
        return cache[key]
    return get


def _funcs(f):
    return [(r.get("cpu"), r.get("context"), r.get("func")) for r in f.trace if r.get("func")]


# -- calibration ------------------------------------------------------------------------------------

def test_v515_yields_the_c2c224932fd0_release_race_a_page_freed_under_another_cpus_list_entry(results):
    r = results("v515")
    assert r.complete
    race = [f for f in r.violations if f.name in ("page_free", "use_after_free", "list_corruption")]
    assert race, [v.name for v in r.violations]
    f = race[0]
    # One CPU is inside page_table_free (holding the lock, past its XOR) while the
    # other's __tlb_remove_table turns the byte to 0 and frees the page.
    rows = f.trace
    free_cpu = {r["cpu"] for r in rows if r.get("func") == "page_table_free"}
    remove_cpu = {r["cpu"] for r in rows if r.get("func") == "__tlb_remove_table"}
    assert free_cpu and remove_cpu and free_cpu != remove_cpu
    xor = [r for r in rows if r.get("func") == "page_table_free" and r["label"] == "atomic_xor_bits(A)"]
    assert xor and xor[0]["after"] & 0x03 == 0
    assert rows[-1].get("violation")


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_fixed_versions_are_clean_within_the_ci_bound(results, version):
    r = results(version)
    assert r.violations == [], [f"{v.name}: {v.message} at {v.where}" for v in r.violations]
    assert r.complete and r.ops_bound_reached
    assert r.states > 300


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_the_fixed_versions_are_clean_at_max_ops_3(results, version):
    r = results(version, 3)
    assert r.violations == [] and r.complete and r.states > 1_000


def test_the_generated_search_finds_what_the_seed_gets_wrong(results):
    r = results("seed")
    names = {v.name for v in r.violations}
    # Hugh's admitted flaw: __tlb_remove_table locks page->pt_mm after the mm was freed.
    assert "mm_use_after_free" in names
    # pte_free_half tests an unshifted mask: the second deferred half keeps its H bit.
    stuck = [v for v in r.violations if v.name == "rcu_head"]
    assert stuck and any("pte_free_defer" in " ".join(o for o in v.state["operations"]) or "defer" in
                         " ".join(v.state["operations"]) for v in stuck)
    # The lock is now taken in softirq, but __tlb_flush_mm_lazy takes it with plain spin_lock.
    assert "deadlock" in names


def test_one_more_operation_keeps_every_seed_finding_and_adds_the_speculative_put(results):
    """At --max-ops 3, with every reduction on, the seed's three causes are all still
    found, and a speculative reference's put_page strands an H bit too."""
    two = {(v.name, v.where.split(": ", 1)[-1]) for v in results("seed").violations}
    three = {(v.name, v.where.split(": ", 1)[-1]) for v in results("seed", 3).violations}
    assert two <= three
    assert ("rcu_head", "put_page(page)") in three - two


def test_each_trace_is_a_shortest_one_and_ends_at_the_violation(results):
    r = results("seed")
    for f in r.violations:
        assert f.trace[-1].get("violation")
        assert f.trace[0]["kind"] == "start"
        steps = [row for row in f.trace if row["kind"] == "step" and row.get("func")]
        assert all(row["context"] in ("process", "softirq") for row in steps)
    # BFS: the findings come out ordered by trace length.
    lens = [len(f.transitions) for f in r.violations]
    assert lens == sorted(lens)


# -- the machinery ---------------------------------------------------------------------------------------

def test_the_write_tracking_difference_equals_a_full_comparison_of_storage(monkeypatch):
    orig = X.ExploreMemory.diff
    seen = []

    def checked(self):
        a = orig(self)
        b = self.full_diff()
        seen.append(a == b)
        return a
    monkeypatch.setattr(X.ExploreMemory, "diff", checked)
    explore(Setup(version="seed", max_ops=2, max_states=1500))
    assert seen and all(seen)


def test_keys_from_the_parents_cpu_states_equal_keys_computed_afresh(monkeypatch):
    # The search keys a successor with the states of the CPUs it shares with its parent;
    # a step that changed a shared CPU in place would make the two differ.
    orig = X.world_key
    seen = []

    def checked(w, symmetric=False, diff=None, live=True, known=None):
        key = orig(w, symmetric, diff, live, known)
        seen.append(key == orig(w, symmetric, diff, live))
        return key
    monkeypatch.setattr(search, "world_key", checked)
    explore(Setup(version="seed", max_ops=2))
    assert len(seen) > 1000 and all(seen)


def test_frozen_worlds_thaw_to_the_same_key():
    ctx, w0 = X.build(Setup(version="v66", max_ops=2))
    ts = X.transitions(ctx, w0)
    w = X.copy_world(w0)
    X.apply(ctx, w, ts[0])
    w2 = X.thaw(ctx, X.freeze(w))
    assert X.world_key(w2) == X.world_key(w)
    assert w2.k.position(0) == w.k.position(0)


def test_freezing_keeps_every_kernel_attribute_a_transition_changes():
    # A frozen world carries only ``Kernel.snapshot()``, and ``Kernel.restore`` rebuilds
    # the rest from the setup's kernel: an attribute either of them missed, or a constant
    # that a transition changed, would be lost on the way to a worker.
    ctx, worlds = _worlds(Setup(version="seed", max_ops=2), 400)
    for w in worlds:
        w2 = X.thaw(ctx, X.freeze(w))
        assert set(vars(w2.k)) == set(vars(w.k)) == set(vars(ctx.template))
        assert (w.k.version, w.k.v, w.k.checks, w.k.tlb_batch_max) == (
            ctx.template.version, ctx.template.v, ctx.template.checks, ctx.template.tlb_batch_max)
        assert X.world_key(w2) == X.world_key(w) and w2.k.zero_page == w.k.zero_page
        assert w2.k.key() == w.k.key() and w2.k.next_gid == w.k.next_gid


def test_a_kernel_restored_from_its_snapshot_is_the_same_kernel():
    """``snapshot()``/``restore()`` round trip on a kernel in the middle of a step
    sequence: every attribute of a built kernel, the same key, and it runs on."""
    from pgalloc import mm as MM
    from pgalloc.kernel import Kernel, KernelKey
    k = Kernel("v66", mem_size=8 << 20, checks=True)
    m = MM.mm_alloc(k)
    k.page_table_alloc(m)
    k.start(0, k.v.page_table_alloc(mm=m))
    k.step(0)
    r = Kernel.restore(k, k.copy().snapshot(), k.copy().machine)
    assert set(vars(r)) == set(vars(k))
    assert isinstance(k.key(), KernelKey) and r.key() == k.key() and r.key().cpus == k.key().cpus
    while k.busy(0):
        k.step(0)
        r.step(0)
        assert r.key() == k.key()


def test_worlds_that_differ_by_which_cpu_holds_a_lock_get_one_symmetric_key():
    """The lock word in memory holds ~cpu: keyed with CPU symmetry, that block is hashed
    as if the CPUs were renumbered, so the mirror worlds meet (and without, they differ)."""
    ctx, w0 = X.build(Setup(version="v66", max_ops=2))
    worlds = []
    for cpu in (0, 1):
        w = X.copy_world(w0)
        X.apply(ctx, w, ("start", cpu, ("flush_lazy",)))
        assert list(w.k.locks.values())[0][0] == cpu
        worlds.append(w)
    a, b = worlds
    assert a.k.mem.digest() != b.k.mem.digest()
    assert X.world_key(a, symmetric=True) == X.world_key(b, symmetric=True)
    assert X.world_key(a) != X.world_key(b)
    thawed = X.thaw(ctx, X.freeze(b))
    assert X.world_key(thawed, symmetric=True) == X.world_key(a, symmetric=True)


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


def _worlds(setup, limit):
    """Up to ``limit`` distinct worlds of ``setup``'s search, breadth first (no checks
    of findings: a transition that raises is simply not followed)."""
    ctx, w0 = X.build(setup)
    seen, todo, out = {X.world_key(w0)}, [w0], []
    while todo and len(out) < limit:
        w = todo.pop(0)
        out.append(w)
        for t in X.transitions(ctx, w):
            c = X.copy_world(w)
            try:
                X.apply(ctx, c, t)
            except Exception:       # noqa: BLE001, S112 - a finding: nothing to follow
                continue
            key = X.world_key(c)
            if key not in seen:
                seen.add(key)
                todo.append(c)
    return ctx, out


def _run(ctx, w, ts):
    """A copy of ``w`` after transitions ``ts``, or why they could not all be taken."""
    c = X.copy_world(w)
    for t in ts:
        if t not in X.transitions(ctx, c):
            return ("disabled", t)
        try:
            X.apply(ctx, c, t)
        except Exception as e:      # noqa: BLE001
            return ("raised", type(e).__name__, str(e))
    return c


def _key_and_ready(ctx, w, ts):
    """The key after ``ts`` with every RCU callback counted as ready, and the ready ones."""
    c = _run(ctx, w, ts)
    if isinstance(c, tuple):
        return c, None
    ready = sorted(e[:3] for e in c.k.rcu if e[3])
    c.k.rcu = [e[:3] + (True,) for e in c.k.rcu]
    return X.world_key(c), ready


# Where the search goes for three versions, and the seed's two pte_free_defer calls (the
# branch of pte_free_half that LOCAL_WHEN makes local lies deeper than 1,500 worlds).
_LOCAL_SETUPS = {"v64": Setup(version="v64", max_ops=2), "seed": Setup(version="seed", max_ops=2),
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
    ctx, worlds = _worlds(setup, 1500)
    checked = 0
    labels = set()
    for w in worlds:
        ts = X.transitions(ctx, w)
        for a in ts:
            if a[0] != "step" or not X.is_local(w.k.active(a[1])[1][-1]):
                continue
            labels.add(w.k.position(a[1])[2])
            for b in ts:
                if len(b) > 1 and b[1] == a[1]:
                    continue        # the same CPU: program order, not an interleaving
                if b[0] == "start" and b[2][0] == "alloc" and w.k.position(a[1])[2] == "return":
                    continue        # an op's return frees its slot, which a later alloc takes
                                    # instead of the spare one: the same op on an equal slot
                key_ab, ready_ab = _key_and_ready(ctx, w, [a, b])
                key_ba, ready_ba = _key_and_ready(ctx, w, [b, a])
                assert key_ab == key_ba, (w.k.position(a[1]), b)
                assert ready_ab is None or set(ready_ab) >= set(ready_ba), (w.k.position(a[1]), b)
                checked += 1
    assert checked > 100
    if setup.script:
        assert labels >= set(X.LOCAL_WHEN)


def _key_up_to_gather_names(ctx, w, ts):
    """The key after ``ts``, with the open mmu_gathers renamed in the order of the CPUs
    that hold them (a gather's number only says how many were opened before it)."""
    c = _run(ctx, w, ts)
    if isinstance(c, tuple):
        return c
    k = c.k
    held = [fr.tlb for cpu in k.cpus for fr in cpu.proc if getattr(fr, "tlb", 0) in k.gathers]
    new = {g: 1000 + n for n, g in enumerate(dict.fromkeys(held))}
    k.gathers = {new.get(g, g): v for g, v in k.gathers.items()}
    for cpu in k.cpus:
        for fr in cpu.proc + cpu.soft:
            if getattr(fr, "tlb", 0) in new:
                fr.tlb = new[fr.tlb]
    return X.world_key(c)


def _followers(ctx, worlds, picks):
    """``(w, ts, a, b)``: at each world ``w`` (whose transitions are ``ts``), each start
    ``a`` that ``picks(w, a)`` chooses, and each transition ``b`` of another CPU that can
    follow it (a start that is a finding at once has none)."""
    for w in worlds:
        ts = X.transitions(ctx, w)
        for a in ts:
            if not picks(w, a):
                continue
            after_a = X.copy_world(w)
            try:
                X.apply(ctx, after_a, a)
            except Exception:       # noqa: BLE001, S112 - a finding at once: nothing follows
                continue
            for b in X.transitions(ctx, after_a):
                if len(b) < 2 or b[1] != a[1]:
                    yield w, ts, a, b


@pytest.mark.parametrize("version", ["v64", "seed", "v66"])
def test_starting_a_page_table_operation_is_a_right_mover(version):
    """What fusing an operation's start with its first visible step rests on: with the
    movers off, wherever another CPU's transition can follow the start (and the
    operation's first, invisible step), it can also come first, the start is still
    possible after it, and both orders give the same world (up to the gathers' names)."""
    ctx, worlds = _worlds(Setup(version=version, max_ops=2, movers=False, symmetry=False), 1000)
    checked = 0
    # (With a softirq running there, starting takes the softirq's step.)
    for w, ts, a, b in _followers(ctx, worlds, lambda w, a: a[0] == "start" and a[2][0] in X.TABLE_OPS + ("alloc",)
                                  and not w.k.cpus[a[1]].soft):
        first_b = _key_up_to_gather_names(ctx, w, [b, a])
        if "alloc" in (a[2][0], b[0] == "start" and b[2][0]) and (b not in ts or first_b == ("disabled", a)):
            continue        # the other one claimed or freed a slot, so the alloc takes
                            # another empty slot (the same operation on an equal slot)
        assert b in ts, (a, b)
        assert _key_up_to_gather_names(ctx, w, [a, b]) == first_b, (a, b)
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("version", ["v515", "seed", "v66", "v67"])
def test_starting_an_rcu_callback_is_a_right_mover(version):
    """What fusing a callback's start (and its local steps) with its first visible step
    rests on: with the movers off, wherever another CPU's transition can follow the
    start, it can also come first, and both orders give the same world, except that
    with it first a callback it queued may already be ready (no softirq held the grace
    period back): a world that allows all the other one does."""
    ctx, worlds = _worlds(Setup(version=version, max_ops=2, movers=False, symmetry=False), 1000)
    checked = 0
    for w, ts, a, b in _followers(ctx, worlds, lambda w, a: a[0] == "rcu"
                                  and X.is_local(w.k.callback_path(*a[2]))):
        assert b in ts, (a, b)
        key_ab, ready_ab = _key_and_ready(ctx, w, [a, b])
        key_ba, ready_ba = _key_and_ready(ctx, w, [b, a])
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


def test_one_worker_and_two_workers_explore_the_same_states(results):
    a = explore(Setup(version="v64", max_ops=CI_OPS), workers=1)
    assert a.states == results("v64").states
    assert a.transitions == results("v64").transitions


def test_an_rcu_callback_interrupting_its_own_cpus_lock_holder_is_a_deadlock():
    s = parse_scenario('''
        version = "seed"
        [[cpu]]
        ops = ["free_tlb T0", "flush_lazy"]
    ''')
    r = explore(s)
    assert "deadlock" in {v.name for v in r.violations}


def test_a_scenario_runs_each_cpus_operations_in_order():
    s = parse_scenario('''
        version = "v64"
        [[cpu]]
        ops = ["free_tlb T0"]
        [[cpu]]
        ops = ["free T1", "alloc"]
    ''')
    r = explore(s)
    assert r.violations == [] and r.complete and r.states > 50


# -- scenario files ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ('version = "v64"\n', "at least one [[cpu]]"),
    ('[[cpu]]\nops = ["frobnicate T0"]\n', "unknown operation"),
    ('[[cpu]]\nops = ["free T9"]\n', "T0..T1"),
    ('[[cpu]]\nops = ["free"]\n', "takes a table"),
    ('colour = 1\n[[cpu]]\nops = []\n', "unknown key"),
    ('[setup]\npages = 9\n[[cpu]]\nops = []\n', "pages"),
    ('[[cpu]]\nops = ["mmdrop"]\n', "lazy_refs"),
    ('[[cpu]\n', "not valid TOML"),
])
def test_bad_scenarios_are_refused_with_a_message_naming_the_problem(text, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text)
    assert words in str(e.value)


# -- the CLI ---------------------------------------------------------------------------------------------------

def test_cli_exits_4_with_the_trace_for_v515_and_0_for_v66():
    runner = CliRunner()
    r = runner.invoke(main, ["explore", "--version", "v515", "--max-ops", "2", "--no-progress"])
    assert r.exit_code == 4, r.output
    assert "page_free" in r.output and "states/s" in r.output and "--max-ops 2 reached" in r.output
    r = runner.invoke(main, ["explore", "--version", "v66", "--max-ops", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "no violation found" in r.output


def test_cli_max_seconds_stops_at_a_level_end_and_says_the_search_is_incomplete():
    r = CliRunner().invoke(main, ["explore", "--version", "v64", "--max-ops", "3", "--max-seconds", "0.001",
                                  "--workers", "1", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["complete"] is False and 1 < d["states"] < 1000 and d["depth"] == 1


PATCH = str(Path(__file__).resolve().parents[2] / "examples" / "patches" / "v66-relist-deferred.py")


def test_a_patch_as_a_version_file_is_explored_and_its_bug_found():
    # v6.6 without the PageActive test: the deferred half goes back on pgtable_list.
    r = CliRunner().invoke(main, ["explore", "--version", PATCH, "--max-ops", "2", "--workers", "2",
                                  "--no-progress", "--json"])
    assert r.exit_code == 4, r.output
    d = json.loads(r.output)
    assert d["version"] == "v66-relist-deferred"
    assert {v["invariant"] for v in d["violations"]} == {"list_membership"}
    assert "listed with byte 0x02 [A1] and PG_active" in d["violations"][0]["message"]


def test_a_patch_that_rewrites_a_local_step_gets_it_interleaved(tmp_path):
    # The local lists name steps by label, but only the built-in code was read: a patch
    # that rewrites pte_free_half's requeue under the same label is interleaved, and the
    # steps it inherits unchanged stay local.
    from pgalloc import seed
    from pgalloc.versions import load_version, VERSIONS
    f = tmp_path / "seed-requeue.py"
    f.write_text("from pgalloc.seed import *\nfrom pgalloc import seed\nfrom pgalloc.steps import DONE, step\n"
                 "NAME = 'seed-requeue'\n"
                 "class pte_free_half(seed.pte_free_half):\n"
                 "    @step('if (mask & 0x0CU) call_rcu(other half)')\n"
                 "    def requeue(self, k):\n"
                 "        k.call_rcu(self.page + 16, 'pte_free_now1')\n"
                 "        return DONE\n")
    patched = VERSIONS[load_version(str(f))].pte_free_half
    for label in ("if (mask & 0x0CU) call_rcu(other half)", "__tlb_remove_table(table | 1 << bit)"):
        ours, theirs = seed.pte_free_half(page=0, bit=0), patched(page=0, bit=0)
        ours.pc = theirs.pc = label
        assert X.is_local(ours)
        assert X.is_local(theirs) == (label != "if (mask & 0x0CU) call_rcu(other half)")


@pytest.mark.parametrize("text, code, words", [
    (None, 1, "no such version file"),
    ("def broken(:\n", 1, "cannot load it: SyntaxError"),
    ("NAME = 'x'\n", 1, "must define FRAGMENTS"),
    ("from pgalloc.v66 import *\n", 1, "NAME = 'v66' is already a version"),
])
def test_bad_version_files_exit_1_with_the_reason(tmp_path, text, code, words):
    f = tmp_path / "patch.py"
    if text is not None:
        f.write_text(text)
    r = CliRunner().invoke(main, ["explore", "--version", str(f), "--max-ops", "1", "--no-progress"])
    assert r.exit_code == code and words in r.output, r.output
    assert "Traceback" not in r.output


def test_an_unknown_version_name_is_a_usage_error():
    r = CliRunner().invoke(main, ["explore", "--version", "v99", "--max-ops", "1", "--no-progress"])
    assert r.exit_code == 2 and "unknown version 'v99'" in r.output


def test_cli_json_and_html(tmp_path):
    runner = CliRunner()
    html = tmp_path / "t.html"
    r = runner.invoke(main, ["explore", "--version", "v515", "--max-ops", "2", "--json", "--html", str(html)])
    assert r.exit_code == 4
    doc = json.loads(r.output)
    assert doc["version"] == "v515" and doc["states"] > 0 and doc["states_per_second"] > 0
    v = doc["violations"][0]
    assert v["invariant"] and v["trace"] and {"cpu", "context", "func", "label"} <= set(v["trace"][-1])
    text = html.read_text()
    assert "<table" in text and "CPU0" in text and "CPU1" in text and "half" in text


def test_cli_usage_errors_exit_2_and_a_bad_scenario_file_exits_1(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["explore", "--max-ops", "1"]).exit_code == 2
    assert runner.invoke(main, ["explore", "--version", "v99", "--max-ops", "1"]).exit_code == 2
    assert runner.invoke(main, ["explore", "--version", "v64"]).exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cpu]]\nops = ['nope']\n")
    r = runner.invoke(main, ["explore", "--scenario", str(bad), "--version", "v64"])
    assert r.exit_code == 1 and "unknown operation" in r.output
    r = runner.invoke(main, ["explore", "--scenario", str(tmp_path / "missing.toml")])
    assert r.exit_code == 1


def test_cli_runs_the_example_scenarios():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2] / "examples" / "scenarios"
    files = sorted(root.glob("*.toml"))
    assert files
    runner = CliRunner()
    for f in files:
        r = runner.invoke(main, ["explore", "--scenario", str(f), "--no-progress"])
        assert r.exit_code in (0, 4), (f, r.output)
