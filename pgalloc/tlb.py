"""mmu_gather table freeing (mm/mmu_gather.c, CONFIG_MMU_GATHER_TABLE_FREE + _RCU_TABLE_FREE).

``tlb_remove_table(tlb, table)`` appends the (tagged) table pointer to the gather's
batch; when the batch is full (``tlb_table_flush``, after ``tlb_table_invalidate``: the
TLB flush), or at ``tlb_finish_mmu`` (after its flush), the batch is handed to
``call_rcu(tlb_remove_table_rcu)`` whose callback (softirq) calls the architecture's
``__tlb_remove_table`` on every entry.  When the batch page cannot be allocated
(``GFP_NOWAIT`` failure, the gather's ``nomem`` flag here) the kernel flushes the TLB,
IPIs every CPU (``tlb_remove_table_sync_one``) and calls ``__tlb_remove_table`` at once:
no grace period.  The batch page is not modelled in memory; its ``rcu_head`` is 0.
"""

from __future__ import annotations

from .steps import DONE, Call, Path, step
from .users import tlb_flush_mm_lazy_


class tlb_remove_table_sync_one(Path):
    """``tlb_remove_table_sync_one()``: ``smp_call_function(tlb_remove_table_smp_sync,
    NULL, 1)``, an IPI to every other CPU, waiting for each to take it.  A CPU with
    interrupts off (GUP-fast) cannot, so the step waits until no other CPU has them off
    (an approximation: the kernel also completes when each CPU took the IPI in a window
    of its own; a walker that started after its window cannot have loaded a pointer to
    the table, which was unhooked before the IPI).  Only the callers with walkers call
    it: without them no CPU ever has interrupts off, and they go straight on, as before."""

    # The kernel's runnable() holds the step back while it is ``blocked``.
    @step("smp_call_function(tlb_remove_table_smp_sync, wait)")
    def ipi(self, k):
        return DONE

    def blocked(self, k) -> bool:
        return any(c.irq and self not in c.proc and self not in c.soft for c in k.cpus)


class tlb_remove_table(Path):
    """``tlb_remove_table(tlb, table)``: batch the tagged pointer, or free it at once."""

    LOCALS = ("tlb", "table")

    # Local: the gather is this operation's own; no other CPU reads it.
    @step("batch = tlb->batch", local=True)
    def batch(self, k):
        mm, entries, nomem = k.gathers[self.tlb]
        if nomem:
            return "tlb_remove_table_sync_one"
        k.gathers[self.tlb] = (mm, entries + (self.table,), nomem)
        if len(entries) + 1 < k.tlb_batch_max:
            return DONE
        if k.walkers:       # a full batch: tlb_table_flush's tlb_table_invalidate first
            return Call(tlb_flush_mm_lazy_(mm=mm), "tlb_table_flush")
        return "tlb_table_flush"

    @step("tlb_remove_table_sync_one", local=True)
    def sync_one(self, k):
        # tlb_table_invalidate + IPI to every CPU: no RCU grace period.
        if k.walkers:
            return Call(tlb_flush_mm_lazy_(mm=k.gathers[self.tlb][0]), "tlb_remove_table_one: IPI")
        return Call(k.v.tlb_remove_table_(table=self.table), "return")

    @step("tlb_remove_table_one: IPI", local=True)
    def ipi(self, k):
        return Call(tlb_remove_table_sync_one(), "__tlb_remove_table(table)")

    @step("__tlb_remove_table(table)", local=True)
    def now(self, k):
        return Call(k.v.tlb_remove_table_(table=self.table), "return")

    # Local: as tlb_finish_mmu's hand-over below (a full batch of this gather's own).
    @step("tlb_table_flush", local=True)
    def flush(self, k):
        mm, entries, nomem = k.gathers[self.tlb]
        k.gathers[self.tlb] = (mm, (), nomem)
        k.call_rcu(0, "tlb_remove_table_rcu", entries)
        return DONE

    @step("return", local=True)
    def ret_(self, k):
        return DONE


class tlb_finish_mmu(Path):
    """``tlb_finish_mmu(tlb)``: flush the TLB, ``call_rcu`` the batch, end the gather."""

    LOCALS = ("tlb",)

    @step("tlb_flush_mmu", local=True)
    def flush(self, k):
        if k.walkers:       # tlb_flush_mmu_tlbonly: tlb_flush() before the batch goes to RCU
            return Call(tlb_flush_mm_lazy_(mm=k.gathers[self.tlb][0]), "tlb_table_flush: call_rcu(tlb_remove_table_rcu)")
        return "tlb_table_flush: call_rcu(tlb_remove_table_rcu)"

    # Local: handing this operation's own gather to call_rcu.  The checks count a table
    # in a gather and in a queued batch alike as pending, and the callback can only run
    # after it.  Another CPU's step can only change when the batch's grace period ends
    # (not while that CPU is in softirq or has bottom halves off), and taken first the
    # batch is ready no later: a world that allows all the other does.
    @step("tlb_table_flush: call_rcu(tlb_remove_table_rcu)", local=True)
    def call(self, k):
        mm, entries, nomem = k.gathers.pop(self.tlb)
        if entries:
            k.call_rcu(0, "tlb_remove_table_rcu", entries)
        return DONE


class tlb_remove_table_rcu(Path):
    """RCU callback: ``__tlb_remove_table`` on every entry of the batch, in order."""

    LOCALS = ("batch", "i")
    EXTERNAL = ("page", "batch", "i")      # the checks' pending tables: batch[i + 1:]

    @step("__tlb_remove_table(batch[i])", local=True)
    def one(self, k):
        return Call(k.v.tlb_remove_table_(table=self.batch[self.i]), "i++")

    @step("i++", local=True)
    def next_(self, k):
        self.i += 1
        return "__tlb_remove_table(batch[i])" if self.i < len(self.batch) else DONE


CALLBACKS = {"tlb_remove_table_rcu": lambda head, args: tlb_remove_table_rcu(batch=tuple(args))}
