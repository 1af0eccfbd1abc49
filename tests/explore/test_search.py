"""The search: worker processes, scenarios run in order, and replays that share nothing."""

from pgalloc.explore import Setup, explore
from pgalloc.explore.scenario import parse_scenario

from .conftest import CI_OPS


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


def test_transitions_taken_in_turn_on_two_worlds_record_each_into_its_own_recorder():
    # Replay learns where a failed check stopped, and which grace periods settle let
    # elapse, from the Recorder handed to apply: two searches or replays in one process
    # keep theirs apart (module-level lists were shared by all).
    from pgalloc.explore import Recorder, apply, build, copy_world

    ctx, w0 = build(Setup(version="v515", max_ops=2))
    a, b = copy_world(w0), copy_world(w0)
    ra, rb = Recorder(), Recorder()
    apply(ctx, a, ("start", 0, ("free_tlb", ctx.tables[0])), ra)
    apply(ctx, b, ("start", 1, ("free", ctx.tables[1])), rb)
    assert ra.last_step[0] == 0 and ra.last_step[1][1] in ("free_pgtables", "page_table_free_rcu")
    assert rb.last_step[0] == 1 and rb.last_step[1][1] in ("pte_free", "page_table_free")
    while a.k.busy(0):
        apply(ctx, a, ("step", 0), ra)
    assert ra.grace_periods and not rb.grace_periods


def test_a_finding_replays_to_the_same_rows_after_another_search():
    first = explore(Setup(version="v515", max_ops=CI_OPS))
    explore(Setup(version="seed", max_ops=CI_OPS))
    again = explore(Setup(version="v515", max_ops=CI_OPS))
    assert [f.trace for f in again.violations] == [f.trace for f in first.violations]
