"""Findings are keyed by their defect: two defects that break one invariant at one step
are two reports (issue 15), one defect met on another CPU or half is still one."""

from pgalloc.explore import Setup, explore
from pgalloc.explore.findings import Finding, defect
from pgalloc.versions import load_version

KEEPS_LOCK = '''"""The seed whose page_table_free returns with mm->context.lock still held."""
from pgalloc.seed import *  # noqa: F401,F403
from pgalloc import seed
from pgalloc.steps import DONE, step

NAME = "seed-free-keeps-lock"


class page_table_free(seed.page_table_free):
    @step("spin_unlock_bh(&mm->context.lock)", unlock="bh")
    def unlock(self, k):
        return DONE
'''


def test_a_patchs_deadlock_does_not_hide_the_seeds_own_at_the_same_step(tmp_path):
    patch = tmp_path / "keeps_lock.py"
    patch.write_text(KEEPS_LOCK)
    def at_remove(walkers: bool) -> list:
        r = explore(Setup(version=load_version(str(patch)), max_ops=2, walkers=walkers), workers=1)
        return [f.message for f in r.violations
                if f.kind == ("deadlock", "spin_lock_bh(&mm->context.lock)", "__tlb_remove_table")]
    # Without walkers the patch's leaked lock is met first (3 transitions); the seed's
    # self-deadlock of the softirq on its own CPU's plain spin_lock (4 transitions) used
    # to be dropped.
    plain = at_remove(False)
    assert len(plain) == 2, plain
    assert "which returned without unlocking it" in plain[0]
    assert plain[1].endswith("that its own process context holds (spin_lock): self-deadlock")
    # With walkers tlb_finish_mmu's own plain spin_lock meets the self-deadlock first (8
    # transitions, the leaked lock 9): still both, as two reports.
    walked = at_remove(True)
    assert len(walked) == 2, walked
    assert walked[0].endswith("that its own process context holds (spin_lock): self-deadlock")
    assert "which returned without unlocking it" in walked[1]


def test_one_defect_on_another_cpu_half_or_check_is_one_key():
    a = Finding("rcu_head", 0x3700, "H bit set (0x28 [H1 P1]) but no pte_free_now callback is queued", "CPU0 x f: s")
    b = Finding("rcu_head", 0x3800, "H bit set (0x14 [H0 P0]) but no pte_free_now callback is queued", "CPU1 x f: s")
    assert a.key == b.key
    c = Finding("deadlock", 0, "CPUs [0, 1] wait for each other's locks", "CPU0 process f: s")
    d = Finding("deadlock", 0, "CPU0 process spins on lock 0x12010 that its own process context holds (spin_lock_bh): "
                               "self-deadlock", "CPU0 process f: s")
    assert c.kind == d.kind and c.key != d.key
    assert defect("spin_lock of 0x12010 in mm 0x12000, which has been freed (mm_count 0x0)") == \
        defect("spin_lock of 0x12010 in mm 0x12000, which has been freed (mm_count 0x6b6b6b6b) (it spins forever)")
