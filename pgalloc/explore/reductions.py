"""The explorer's reductions: which steps are taken at once, and taking a transition.

* Local steps (``pgalloc.steps.is_local``: marked ``local`` on the step itself, each with
  its reason beside it): steps that touch nothing another CPU or a check can see are
  taken as soon as they are next (an ample set of one).  The mark is on the function, so
  a patch that rewrites a step under the same label gets it interleaved, while the steps
  it inherits unchanged stay local.
* Lipton's movers (``take``, ``settle``): a spinlock taken with bottom halves off is fused
  with the step after it, its release with the step before it; starting a page-table
  operation or an RCU callback runs on to its first visible step (``apply``).
* Eager grace periods (``settle``).
* The sleep sets' independence relation (``footprint_state``, ``independent``).

``apply`` takes one transition with all of them.  A ``Recorder`` passed to it notes what
a trace needs (the last step taken, the grace periods let elapse); the search passes none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..callers import CALLERS
from ..kernel import PROCESS, Kernel
from ..steps import BLOCKED, is_local
from .operations import make_path
from .world import World, own_cpu

if TYPE_CHECKING:
    from .setup import Context




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
            if st and (local and is_local(st[-1], k.walkers) or (movers and st[-1].is_unlock_step() and _bh_off(k, cpu))):
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
        # With walkers, the first step of a table free is visible (a walker reads the
        # entry it clears, a TLB is purged): then only the start, which touches nothing,
        # is fused with it, and the next visible step is a transition of its own.
        first_invisible = not k.walkers or is_local(path, True)
        if k.runnable(cpu):
            take(w, cpu, ctx.setup.movers, rec)
            if ctx.setup.movers and first_invisible and isinstance(path, CALLERS) and not k.cpus[cpu].soft:
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
        if ctx.setup.movers and is_local(soft[0], k.walkers):
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


class Shared(NamedTuple):
    """The kernel state outside the bytes that more than one CPU can see, by part
    (``footprint_state``): the RCU queue, held locks and their holders, which mm owns
    each page-table page, each CPU's context (bottom halves off in process and softirq
    context, its softirq and process call depths), the next gather id, the RCU readers,
    lockdep's usage bits, the open gathers, the pages the running functions work on, and
    each CPU's TLB (a fill or a purge: the same stores in another order can leave other
    entries behind)."""

    rcu: tuple
    locks: tuple
    owner: tuple
    contexts: tuple
    next_gid: int
    rcu_readers: int
    lock_usage: tuple
    gathers: tuple
    pages: frozenset
    tlbs: tuple


def footprint_state(k: Kernel) -> Shared:
    """The shared kernel state outside memory, for the footprint comparison: a step
    that changes any of it is dependent on every other transition."""
    return Shared(tuple(k.rcu), tuple(sorted(k.locks.items())), tuple(sorted(k.owner.items())),
                  tuple((c.bh_proc, c.bh_soft, len(c.soft), len(c.proc)) for c in k.cpus), k.next_gid, k.rcu_readers,
                  tuple(sorted(k.lock_usage.items())), tuple(sorted(k.gathers)),
                  frozenset(getattr(fr, "page", 0) for c in k.cpus for st in (c.proc, c.soft) for fr in st),
                  tuple(k.tlbs))


def footprint(t: tuple, rec: tuple, pre: Shared, k: Kernel, before=None) -> tuple:
    """The footprint ``(cpu, reads, writes, global)`` of transition ``t`` that ``apply``
    just took (``cpu`` -1 for a grace period), from the doublewords it recorded (``rec``:
    reads, writes, checks' reads included) and the shared state before it (``pre``):
    global when ``t`` is not a step or changed any of that state.

    With ``before`` (the storage as it was before ``t``), ``writes`` holds only the
    doublewords ``t`` left changed: a transition is atomic to every other, so a word it
    stores into and then restores (a lock taken and released within it) is one it only
    read, as far as any other transition can tell."""
    r, wr = rec
    glob = t[0] != "step" or footprint_state(k) != pre
    if before is not None:
        now, then = k.mem.u64, before.u64
        wr = [dw for dw in wr if now[dw] != then[dw]]
    return (t[1] if len(t) > 1 else -1, frozenset(r), frozenset(wr), glob)


def independent(a, b) -> bool:
    """Footprints ``(cpu, reads, writes, global)`` of two transitions commute."""
    ca, ra, wa, ga = a
    cb, rb, wb, gb = b
    if ca == cb or ga or gb:
        return False
    return not (wa & (rb | wb)) and not (wb & ra)
