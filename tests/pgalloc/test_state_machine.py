"""Random alloc / free / free_rcu / defer / grace period / tlb_finish_mmu / upgrade / exit
sequences with every check on (issue 3 item 6), on v64, v66 and v67.

Profiles: ``ci`` (default, small) and ``thorough``; pick with HYPOTHESIS_PROFILE=thorough.
"""

import os

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pgalloc import Kernel, check_all, check_quiescent, mm as MM

# Applied to these machines only (not loaded globally, so other tests keep their settings).
PROFILES = {
    "ci": settings(max_examples=25, stateful_step_count=25, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow]),
    "thorough": settings(max_examples=400, stateful_step_count=60, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow]),
}
SETTINGS = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")]

MiB = 1 << 20


class PgallocMachine(RuleBasedStateMachine):
    VERSION = "v64"

    @initialize()
    def boot(self):
        self.k = Kernel(self.VERSION, mem_size=12 << 20, checks=True)
        self.baseline = self.k.frames.nr_free()
        self.mms = []          # live mms
        self.tables = {}       # mm -> [tables allocated directly, not in the tree]
        self.mapped = {}       # mm -> set of mapped 1 MiB segments
        self.gathers = {}      # mm -> open gather

    # -- mms --------------------------------------------------------------------------

    @precondition(lambda self: len(self.mms) < 3)
    @rule(pgste=st.booleans())
    def new_mm(self, pgste):
        mm = MM.mm_alloc(self.k, pgste=pgste and self.VERSION != "v67")
        self.mms.append(mm)
        self.tables[mm], self.mapped[mm] = [], set()

    @precondition(lambda self: self.mms)
    @rule(i=st.integers(0, 2), nomem=st.booleans())
    def exit_mm(self, i, nomem):
        mm = self.mms[i % len(self.mms)]
        self._finish(mm)
        for t in self.tables.pop(mm):
            self.k.page_table_free(mm, t)
        MM.run_mmput(self.k, mm, nomem=nomem)
        self.mms.remove(mm)
        del self.mapped[mm]

    @precondition(lambda self: self.mms)
    @rule(i=st.integers(0, 2), level=st.sampled_from([4, 5]))
    def upgrade(self, i, level):
        mm = self.mms[i % len(self.mms)]
        MM.upgrade(self.k, mm, (1 << 42) + 1 if level == 4 else (1 << 53) + 1)

    # -- direct page-table alloc / free -------------------------------------------------------

    @precondition(lambda self: self.mms)
    @rule(i=st.integers(0, 2))
    def alloc(self, i):
        mm = self.mms[i % len(self.mms)]
        t = self.k.page_table_alloc(mm)
        assert t
        self.tables[mm].append(t)

    @precondition(lambda self: any(self.tables.values()))
    @rule(j=st.integers(0, 50), how=st.sampled_from(["free", "free_rcu", "defer"]))
    def free(self, j, how):
        mm = next(m for m in self.mms[j % len(self.mms):] + self.mms if self.tables[m])
        t = self.tables[mm].pop(j % len(self.tables[mm]))
        if how == "free":
            self.k.page_table_free(mm, t)
        elif how == "free_rcu":
            self.k.page_table_free_rcu(self._gather(mm), t, 0)
        elif MM.mm_alloc_pgste_flag(self.k, mm):
            self.k.page_table_free(mm, t)       # no THP for PGSTE mms
        else:
            self.k.pte_free_defer(mm, t)

    # -- mapped ranges through the tree ---------------------------------------------------------

    @precondition(lambda self: self.mms)
    @rule(i=st.integers(0, 2), seg=st.integers(0, 5), high=st.booleans())
    def map(self, i, seg, high):
        mm = self.mms[i % len(self.mms)]
        base = (seg * MiB) + ((3 << 42) if high else 0)
        MM.map_range(self.k, mm, base, base + MiB)
        self.mapped[mm].add(base)

    @precondition(lambda self: any(self.mapped.values()))
    @rule(j=st.integers(0, 50), how=st.sampled_from(["free_pgtables", "retract"]))
    def unmap(self, j, how):
        mm = next(m for m in self.mms[j % len(self.mms):] + self.mms if self.mapped[m])
        base = sorted(self.mapped[mm])[j % len(self.mapped[mm])]
        self.mapped[mm].discard(base)
        if how == "retract" and not MM.mm_alloc_pgste_flag(self.k, mm):
            MM.retract_page_tables(self.k, mm, base, base + MiB)
        else:
            MM.unmap_range(self.k, mm, base, base + MiB)
            MM.free_pgtables(self.k, mm, self._gather(mm), base, base + MiB)

    # -- RCU and gathers --------------------------------------------------------------------

    def _gather(self, mm):
        if mm not in self.gathers:
            self.gathers[mm] = self.k.tlb_gather_mmu(mm)
        return self.gathers[mm]

    def _finish(self, mm):
        if mm in self.gathers:
            self.k.tlb_finish_mmu(self.gathers.pop(mm))

    @precondition(lambda self: self.gathers)
    @rule()
    def tlb_finish_mmu(self):
        self._finish(next(iter(self.gathers)))

    @rule()
    def grace_period(self):
        assert self.k.rcu_grace_period()

    @precondition(lambda self: self.k.ready_callbacks())
    @rule(i=st.integers(0, 20), cpu=st.integers(0, 1))
    def run_callback(self, i, cpu):
        ready = self.k.ready_callbacks()
        self.k.run_rcu_callback(cpu, ready[i % len(ready)])
        while self.k.busy(cpu):
            self.k.step(cpu)

    @invariant()
    def checks_hold(self):
        assert check_all(self.k) == []

    def teardown(self):
        k = getattr(self, "k", None)
        if k is None:
            return
        for mm in list(self.mms):
            self.exit_mm(0, False)
        k.rcu_barrier()
        assert check_quiescent(k) == []
        assert k.frames.nr_free() == self.baseline - (1 if k.zero_page else 0)


def _machine(version):
    cls = type(f"PgallocMachine_{version}", (PgallocMachine,), {"VERSION": version})
    cls.TestCase.settings = SETTINGS
    return cls.TestCase


TestV64 = _machine("v64")
TestV66 = _machine("v66")
TestV67 = _machine("v67")
