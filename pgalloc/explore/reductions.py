"""The explorer's reductions: which steps are taken at once, and taking a transition.

* Local steps (``LOCAL_LABELS``, ``LOCAL_WHEN``, ``is_local``): steps that touch nothing
  another CPU or a check can see are taken as soon as they are next (an ample set of one).
* Lipton's movers (``take``, ``settle``): a spinlock taken with bottom halves off is fused
  with the step after it, its release with the step before it; starting a page-table
  operation or an RCU callback runs on to its first visible step (``apply``).
* Eager grace periods (``settle``).
* The sleep sets' independence relation (``footprint_state``, ``independent``).

``apply`` takes one transition with all of them.  A ``Recorder`` passed to it notes what
a trace needs (the last step taken, the grace periods let elapse); the search passes none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import callers, mm, tlb, users, versions      # noqa: F401 - every built-in function, before _LOCAL_STEPS
from ..callers import CALLERS
from ..kernel import PROCESS, Kernel
from ..steps import BLOCKED, PATHS, Path
from .operations import make_path
from .world import World, own_cpu

if TYPE_CHECKING:
    from .setup import Context


# Steps that touch no shared state (control flow, nested calls, returns): taken as soon as
# they are next, merged into the transition before them.  They commute with every other
# transition and no check can see them, so no interleaving is lost (an ample set of one).
LOCAL_LABELS = frozenset({
    "return", "i++", "tlb_flush_mmu", "if (!mm_alloc_pgste(mm))",
    "pte_alloc_one: page_table_alloc(mm)", "page_table_free(mm, table)",
    "pte_free_tlb: page_table_free_rcu(tlb, table)", "tlb_finish_mmu(&tlb)", "pte_free_defer(mm, pgtable)",
    "tlb_remove_table(tlb, table | 1 << bit)", "__tlb_remove_table(batch[i])", "tlb_remove_table_sync_one",
    "__tlb_remove_table(table | 0x03)", "pte_free_tlb(pts[i])", "pXd_free_tlb(crsts[i])", "tlb_finish_mmu",
    # Reads of what no other CPU changes while the operation runs (the mm's PGSTE flag,
    # this operation's own gather), and the one store no one reads (flush_mm).
    "mm = tlb->mm; if (mm_alloc_pgste(mm))", "batch = tlb->batch", "WARN_ON_ONCE(mm_has_pgste(mm))",
    "__tlb_flush_mm(mm); mm->context.flush_mm = 0",
    # __tlb_remove_table's decoding of its own pointer (tag, struct page, compound order:
    # stable while the table waits to be freed; tag_check's reads with them), the
    # seed's call of it from pte_free_half, and mmput's unlink from mmlist (no other
    # path touches mm->mmlist).
    "switch (table & 0x03)", "switch (half = table & 0x03)", "if (compound_order(page) == CRST_ALLOC_ORDER)",
    "__tlb_remove_table(table | 1 << bit)", "list_del(&mm->mmlist)",
    # The seed's WARN_ON_ONCE(page->pt_mm != mm) of a table the caller still owns: pt_mm
    # is only written when a page is made a page table again, after a free that the
    # checks report at the free itself.
    "WARN_ON_ONCE(page->pt_mm != mm); if (!mm_alloc_pgste(mm))",
    "WARN_ON_ONCE(page->pt_mm != mm); if (mm_alloc_pgste(mm))",
    "mm = tlb->mm; WARN_ON_ONCE(page->pt_mm != mm); if (mm_alloc_pgste(mm))",
    # page_table_alloc's first half of a page it has just taken from the buddy allocator:
    # not on any list or in any segment table yet, so no other path can reach it.
    "atomic_xor_bits(A0); init 2x2K",
    # __pte_alloc's store of the new table into its own claimed (so far empty) segment
    # slot: no other operation works on a claimed slot, exit does not start while an
    # mm operation runs, and the checks read the slots only once every CPU is idle.
    "pmd_populate(mm, pmd, new)",
    # The hand-over of this operation's own gather to call_rcu: the checks count a
    # table in a gather and in a queued batch alike as pending, and the callback can
    # only run after it.  The one thing another CPU's step can change is when the
    # batch's grace period ends (it cannot while that CPU is in softirq or has bottom
    # halves off), and taken first the batch is ready no later: a world that allows
    # all the other one does (a callback *may* run once ready: see ``settle``).
    "tlb_table_flush: call_rcu(tlb_remove_table_rcu)", "tlb_table_flush",
    # The seed's __tlb_remove_table reading page->pt_mm of a half it has not yet
    # XORed back: while that P bit is set the page cannot be freed (the free itself is
    # reported: "page freed with _refcount byte ...") nor be made a page table
    # again, the only writer of pt_mm.  Whether the mm it names was freed meanwhile is
    # decided by the spin_lock that follows, which stays where it is.
    "mm = page->pt_mm",
})

# Steps that are local on one branch, decided by the function's own locals: taken at once
# when ``LOCAL_WHEN[label](frame)`` holds.  The seed's pte_free_half tests the mask its own
# XOR returned and, when no H bit shows in it, returns without touching anything (as
# posted the test reads the low refcount bits, so that is nearly always).
LOCAL_WHEN = {
    "if (mask & 0x0CU) call_rcu(other half)": lambda fr: not fr.mask & 0x0C,
}

# The lists name steps by label, but what was read is the code: a step is local only in
# the built-in functions that carry it, so a patch (a version file) that rewrites a step
# under the same label gets it interleaved like any other, while the steps it inherits
# unchanged stay local.
_LOCAL_STEPS = {fn: (lambda fr: True) if label in LOCAL_LABELS else LOCAL_WHEN[label]
                for cls in PATHS.values() if cls.__module__.startswith("pgalloc.")
                for label, fn in cls.STEPS.items() if label in LOCAL_LABELS or label in LOCAL_WHEN}


def is_local(fr: Path) -> bool:
    """Whether frame ``fr``'s next step touches nothing another CPU or a check can see
    (``LOCAL_LABELS``, ``LOCAL_WHEN``, in the built-in functions)."""
    when = _LOCAL_STEPS.get(fr.STEPS[fr.pc])
    return when is not None and when(fr)


class Recorder:
    """What a trace needs to know of the steps one transition took: ``last_step``, the
    ``(cpu, (context, function, label))`` of the step being taken (so a check that
    fails is placed at it), and ``grace_periods``, how many ``settle`` let elapse."""

    __slots__ = ("last_step", "grace_periods")

    def __init__(self):
        self.last_step = None
        self.grace_periods = 0


def _step(w: World, cpu: int, rec: Recorder | None):
    """One step of ``cpu`` (which must be runnable)."""
    own_cpu(w, cpu)
    k = w.k
    if rec is not None:
        rec.last_step = (cpu, k.position(cpu))
    res = k.step(cpu)
    if res is BLOCKED:
        raise RuntimeError(f"CPU{cpu} was runnable but its step blocked")
    return res


def _bh_off(k: Kernel, cpu: int) -> bool:
    """Whether no softirq can interrupt ``cpu``'s running context (it is one, or it
    disabled bottom halves)."""
    c = k.cpus[cpu]
    return bool(c.soft) or c.bh_proc > 0


def take(w: World, cpu: int, movers: bool = True, rec: Recorder | None = None) -> None:
    """One step of ``cpu``; a lock acquisition is fused with the step after it.

    Lipton's reduction: with bottom halves off, taking a spinlock is a *right mover*:
    it commutes with every step another CPU (or context) can take while the lock is
    held, since none of them touches the lock word (another CPU's acquisition of it is
    disabled) and no softirq can start on this CPU.  So no interleaving is lost by
    taking the next step at once, and a CPU can never block between the two (its next
    step is its own).  With a plain ``spin_lock`` and bottom halves on, a softirq on the
    same CPU may still come in between, so nothing is fused (``__tlb_flush_mm_lazy``).
    """
    k = w.k
    while True:
        fr = k.active(cpu)[1][-1]
        acquire = fr.is_lock_step()
        _step(w, cpu, rec)
        if not (movers and acquire and k.busy(cpu) and _bh_off(k, cpu) and k.runnable(cpu)):
            return


def settle(w: World, eager_gp: bool = True, movers: bool = True, local: bool = True, rec: Recorder | None = None) -> None:
    """Take every local step that is next on some CPU (see ``is_local``) and, with
    ``movers``, every lock release with bottom halves off (a *left mover*, see ``take``:
    no other CPU's step between it and the step before it can touch the lock word, and
    no softirq can start there); then, with ``eager_gp``, let a grace period elapse if
    one can.

    Eager grace periods lose no behaviour: a callback only *may* run once ready, so
    readiness as early as the rules allow (the first instant after its ``call_rcu`` at
    which no CPU is in an RCU read-side section) allows every run order and placement a
    later grace period would, and nothing else reads readiness.
    """
    k = w.k
    ncpu = len(k.cpus)
    moved = True
    while moved:
        moved = False
        for cpu in range(ncpu):
            c = k.cpus[cpu]
            st = c.soft or c.proc
            if st and (local and is_local(st[-1]) or (movers and st[-1].is_unlock_step() and _bh_off(k, cpu))):
                _step(w, cpu, rec)
                moved = True
    if eager_gp and k.rcu and not all(e[3] for e in k.rcu) and not k.in_rcu_reader():
        k.rcu_grace_period()
        if rec is not None:
            rec.grace_periods += 1


def _to_first_visible(ctx: Context, w: World, cpu: int, stack: list, rec: Recorder | None) -> None:
    """After a start that is a right mover: take the local steps, then, if the started
    function (on ``stack``) still runs, its first step another CPU can see."""
    settle(w, ctx.setup.eager_gp, ctx.setup.movers, ctx.setup.local_steps, rec)
    if stack and w.k.runnable(cpu):
        take(w, cpu, ctx.setup.movers, rec)


def apply(ctx: Context, w: World, t: tuple, rec: Recorder | None = None) -> None:
    """Take transition ``t`` in place (may raise ``Violation`` or a kernel exception).

    Starting an operation or a softirq is merged with its first step (starting is
    invisible to every other CPU), and local steps that follow are taken at once.
    """
    k = w.k
    kind = t[0]
    if kind == "step":
        take(w, t[1], ctx.setup.movers, rec)
    elif kind == "start":
        cpu, op = t[1], t[2]
        nops, exited, lazy_left, script = w.gen
        if op[0] == "exit":
            exited = 1
        if op[0] == "mmdrop":
            lazy_left -= 1
        if ctx.setup.script is not None:
            script = tuple(p + (c == cpu) for c, p in enumerate(script))
        w.gen = (nops + 1, exited, lazy_left, script)
        own_cpu(w, cpu)
        path = make_path(ctx, k, op)
        k.start(cpu, path, PROCESS)
        if k.runnable(cpu):
            take(w, cpu, ctx.setup.movers, rec)
            if ctx.setup.movers and isinstance(path, CALLERS) and not k.cpus[cpu].soft:
                # A right mover: starting a page-table operation and its first step
                # (pmd_clear and zapping its own table, an empty gather, or nothing
                # at all for __pte_alloc) touch only what the operation has claimed,
                # so they are fused with the operation's first step that another CPU
                # can see.  Another CPU's transition after them is enabled before them
                # too (the claims, the budget and the exit rule only ever take options
                # away) and does the same there.
                _to_first_visible(ctx, w, cpu, k.cpus[cpu].proc, rec)
    elif kind == "gp":
        if not k.rcu_grace_period():
            raise RuntimeError("grace period refused")
    elif kind == "rcu":
        cpu, cb = t[1], t[2]
        for i, (head, func, args, ready) in enumerate(k.rcu):
            if ready and (head, func, args) == cb:
                own_cpu(w, cpu)
                k.run_rcu_callback(cpu, i)
                break
        else:
            raise RuntimeError(f"callback {cb} not ready")
        soft = k.cpus[cpu].soft
        if ctx.setup.movers and is_local(soft[0]):
            # A right mover too: taking a ready callback off the queue and its local
            # steps (tlb_remove_table_rcu's call and __tlb_remove_table's decoding of
            # its pointer) touch nothing another CPU reads, so they are fused with the
            # callback's first visible step.  The one thing another CPU's step can tell
            # is that this CPU is now in softirq, an RCU reader: a call_rcu of its own
            # then gets its grace period only later, a world the earlier grace period
            # covers (a callback *may* run once ready: see ``settle``).
            _to_first_visible(ctx, w, cpu, soft, rec)
        elif k.runnable(cpu):
            take(w, cpu, ctx.setup.movers, rec)
    else:
        raise ValueError(t)
    settle(w, ctx.setup.eager_gp, ctx.setup.movers, ctx.setup.local_steps, rec)


def footprint_state(k: Kernel) -> tuple:
    """The shared kernel state outside memory, for the footprint comparison: a step
    that changes any of it is dependent on every other transition."""
    return (tuple(k.rcu), tuple(sorted(k.locks.items())), tuple(sorted(k.owner.items())),
            tuple((c.bh_proc, c.bh_soft, len(c.soft), len(c.proc)) for c in k.cpus), k.next_gid, k.rcu_readers,
            tuple(sorted(k.lock_usage.items())), tuple(sorted(k.gathers)),
            frozenset(getattr(fr, "page", 0) for c in k.cpus for st in (c.proc, c.soft) for fr in st))


def independent(a, b) -> bool:
    """Footprints ``(cpu, reads, writes, global)`` of two transitions commute."""
    ca, ra, wa, ga = a
    cb, rb, wb, gb = b
    if ca == cb or ga or gb:
        return False
    return not (wa & (rb | wb)) and not (wb & ra)
