"""A CPU switching away from an mm and back (``arch/s390/include/asm/mmu_context.h``,
reference ``walkers-and-tlb.md`` §5), as steps, so that other CPUs' flushes run while it
is detached.

``switch_mm_irqs_off(prev, next)`` sets this CPU in ``next``'s ``cpu_attach_mask``,
loads control register 7 with ``s390_invalid_asce`` and, when ``prev != next``, clears
the CPU from ``prev``'s ``cpu_attach_mask``; it does *not* clear ``mm_cpumask(prev)``:
the TLB may still hold the mm's entries, and only ``__tlb_flush_mm`` (which purges them
on every CPU) narrows ``mm_cpumask`` to ``cpu_attach_mask``.  Coming back,
``finish_arch_post_lock_switch`` waits while ``flush_count`` is not 0 (never here: every
flush is one atomic step), sets the CPU in ``mm_cpumask(mm)``, runs
``__tlb_flush_mm_lazy(mm)`` and only then loads control register 7 with the mm's ASCE,
so a CPU can form entries of an mm only while it is in its ``mm_cpumask``.

The other mm is not modelled (its tables are no concern of the search): switched away,
the CPU runs it with control register 7 holding ``s390_invalid_asce``.
"""

from __future__ import annotations

from . import tlbflush as F
from .steps import DONE, Call, Path, step
from .users import tlb_flush_mm_lazy_


class context_switch(Path):
    """``context_switch`` to a task of another mm and, later, back to one of ``mm``."""

    FUNC = "context_switch"
    LOCALS = ("mm",)

    @step("switch_mm_irqs_off(mm, next)")
    def away(self, k):
        F.detach(k, k.cur[0], self.mm)
        return "switch_mm_irqs_off(next, mm)"

    @step("switch_mm_irqs_off(next, mm)")
    def back(self, k):
        F.set_mask(k, self.mm, "context.cpu_attach_mask", k.cur[0], True)
        return "finish_arch_post_lock_switch: cpumask_set_cpu(mm_cpumask(mm))"

    @step("finish_arch_post_lock_switch: cpumask_set_cpu(mm_cpumask(mm))")
    def cpumask(self, k):
        F.set_mask(k, self.mm, "cpu_bitmap", k.cur[0], True)
        return Call(tlb_flush_mm_lazy_(mm=self.mm), "__ctl_load(user_asce, 7, 7)")

    @step("__ctl_load(user_asce, 7, 7)")
    def load(self, k):
        k.machine.set_control_register(k.cur[0], F.CR_SECONDARY, F.asce_of(k, self.mm))
        k.reload_asces()
        return DONE
