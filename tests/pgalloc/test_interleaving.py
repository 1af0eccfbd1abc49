"""Random two-CPU interleavings of allocator paths and RCU callbacks, every check on.

A small random scheduler over ``start`` / ``step`` / ``run_rcu_callback`` (the explorer
of issue 4 does this exhaustively): v64, v66 and v67 stay clean; v515's release race and
the seed's stuck H bit show up.
"""
import random

import pytest

from pgalloc import Kernel, Violation, mm as MM
from pgalloc.tlb import tlb_finish_mmu
def run(version, seed):
    rnd = random.Random(seed)
    k = Kernel(version, mem_size=8<<20, checks=True, ncpus=2)
    mm = MM.mm_alloc(k)
    tables = [k.page_table_alloc(mm) for _ in range(4)]
    owned = list(tables); k.cpus[0].result = 0
    busy_tables = set()   # noqa: F841
    for it in range(60):
        choices = []
        for cpu in (0,1):
            if k.busy(cpu):
                if k.runnable(cpu): choices.append(("step", cpu))
            else:
                choices.append(("start", cpu))
            if k.can_softirq(cpu) and k.ready_callbacks() and not k.cpus[cpu].soft: choices.append(("cb", cpu))
        choices.append(("gp", 0))
        if not choices: return ("deadlock", None)
        op, cpu = rnd.choice(choices)
        try:
            if op == "step": k.step(cpu)
            elif op == "gp": k.rcu_grace_period()
            elif op == "cb":
                r = k.ready_callbacks(); k.run_rcu_callback(cpu, rnd.choice(r))
            else:
                free = [t for t in owned if t not in busy_tables]
                what = rnd.choice(["alloc","free","rcu","defer"]) if free else "alloc"
                if what == "alloc":
                    k.start(cpu, k.v.page_table_alloc(mm=mm))
                else:
                    t = rnd.choice(free); owned.remove(t)
                    if what == "free": k.start(cpu, k.v.page_table_free(mm=mm, table=t))
                    elif what == "defer": k.start(cpu, k.v.pte_free_defer(mm=mm, table=t))
                    else:
                        g = k.tlb_gather_mmu(mm, nomem=rnd.random()<0.3)
                        k.start(cpu, k.v.page_table_free_rcu(tlb=g, table=t))
            # collect results of finished allocs
            for c in (0,1):
                if not k.busy(c) and k.cpus[c].result:
                    owned.append(k.cpus[c].result); k.cpus[c].result = 0
            for gid,(m,e,n) in list(k.gathers.items()):
                if not any(getattr(f,'tlb',0)==gid for c in k.cpus for f in c.proc):
                    if not k.busy(1) and not k.busy(0):
                        k.run(tlb_finish_mmu(tlb=gid), 0)
        except Violation as v:
            return (v.name, str(v))
    return None


@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_random_interleavings_of_the_fixed_versions_break_no_invariant(version):
    assert [r for s in range(40) if (r := run(version, s))] == []


def test_random_interleavings_find_the_v515_release_race_and_the_seed_stuck_h_bit():
    v515 = {r[0] for s in range(300) if (r := run("v515", s))}
    seed = {r[0] for s in range(60) if (r := run("seed", s))}
    assert v515 & {"page_free", "use_after_free"}
    assert "rcu_head" in seed
