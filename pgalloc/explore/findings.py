"""The explorer's findings: a broken invariant, a kernel exception, a deadlock or a leak,
with the transitions that lead to it (and, once replayed, its trace rows).

``deadlock`` and ``end_checks`` are the checks of a whole world that no single step can
make: a CPU spinning forever, and the invariants of a quiescent state (leaks,
reachability).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..checks import Violation, check_quiescent, live_mms, lock_of_freed_mm, unheld_frames

if TYPE_CHECKING:
    from .setup import Context
    from .world import World


@dataclass
class Finding:
    """One broken invariant (or a kernel exception, deadlock, leak) with its trace."""

    name: str
    page: int
    message: str
    where: str
    transitions: list = field(default_factory=list)
    trace: list = field(default_factory=list)        # filled by replay(): list of dicts
    state: dict = field(default_factory=dict)

    @property
    def kind(self) -> tuple:
        """``(invariant, step, function)``: where it broke, as the reports name it."""
        return (self.name, self.where.split(": ", 1)[-1] if self.where else "", _fn(self.where))

    @property
    def key(self) -> tuple:
        """What makes two findings one defect: ``kind`` plus the message with its
        addresses and CPU numbers normalised.  Two defects can break one invariant at one
        step (a self-deadlock and a lock cycle, both at one ``spin_lock``), and the message
        tells them apart; the details it names only say where this run met it."""
        return self.kind + (defect(self.message),)

    def as_dict(self) -> dict:
        return {"invariant": self.name, "page": f"{self.page:#x}", "message": self.message, "where": self.where,
                "steps": len(self.trace), "trace": self.trace, "final": self.state}


_CPU = re.compile(r"CPUs? ?(?:\[[\d, ]*\]|\d+)")
_DETAIL = re.compile(r"\s*(?:\([^()]*\)|\[[^][]*\])")
_HEX = re.compile(r"0x[0-9a-fA-F]+")


def defect(message: str) -> str:
    """A finding's message as a defect: CPU numbers, addresses and the details in
    parentheses or brackets (a byte's bits, a count, how a check saw it) left out, so
    one defect met on either half of a page, on any CPU or by either check is one.

    >>> defect("CPU0 softirq spins on lock 0x12010 that its own process context holds (spin_lock): self-deadlock")
    'CPU_ softirq spins on lock 0x_ that its own process context holds: self-deadlock'
    """
    return _HEX.sub("0x_", _DETAIL.sub("", _CPU.sub("CPU_", message)))


def _fn(where: str) -> str:
    parts = where.split(" ", 2)
    return parts[2].split(":")[0] if len(parts) == 3 else ""


def violation_finding(e: BaseException) -> Finding:
    """The finding a failed check (``Violation``) or another kernel exception is."""
    if isinstance(e, Violation):
        return Finding(e.name, e.page, e.message, e.step)
    return Finding(f"exception:{type(e).__name__}", 0, str(e), "")


def deadlock(w: World) -> Finding | None:
    """Some CPU spins on a lock that no runnable CPU will ever release."""
    k = w.k
    blocked = {c for c in range(len(k.cpus)) if k.busy(c) and not k.runnable(c)}
    if not blocked:
        return None
    for c in blocked:
        fr = k.active(c)[1][-1]
        if fr.blocked(k):       # waiting for an IPI (tlb_remove_table_sync_one)
            off = [x for x in range(len(k.cpus)) if x != c and k.cpus[x].irq]
            if any(k.runnable(x) for x in off):
                continue
            return Finding("deadlock", getattr(fr, "page", 0),
                           f"CPU{c} waits in {fr.FUNC} for the IPI of CPUs {off}, which have interrupts off "
                           "and cannot progress", f"CPU{c} {k.active(c)[0]} {fr.FUNC}: {fr.pc}")
        seen = {c}
        holder = k.locks.get(fr.lock_addr())
        cur = c
        while True:
            if holder is None:
                try:
                    lock_of_freed_mm(k, fr.lock_addr())
                except Violation as v:          # spinning on a freed mm's (poisoned) lock
                    return Finding(v.name, getattr(fr, "page", 0), v.message + " (it spins forever on the poisoned word)",
                                   f"CPU{c} {k.active(c)[0]} {fr.FUNC}: {fr.pc}")
                return Finding("deadlock", getattr(fr, "page", 0),
                               f"CPU{c} spins on lock {fr.lock_addr():#x} whose word is "
                               f"{k.mem.read_u32(fr.lock_addr()):#x} but no CPU holds it", f"CPU{c} {k.active(c)[0]} {fr.FUNC}: {fr.pc}")
            h = holder[0]
            if not k.busy(h):
                return Finding("deadlock", getattr(fr, "page", 0),
                               f"CPU{c} spins on lock {fr.lock_addr():#x} held by CPU{h} {holder[1]}, "
                               f"which returned without unlocking it", f"CPU{c} {k.active(c)[0]} {fr.FUNC}: {fr.pc}")
            if h not in blocked:
                break
            if h in seen:
                return Finding("deadlock", getattr(fr, "page", 0),
                               f"CPUs {sorted(seen)} wait for each other's locks", f"CPU{c} {k.active(c)[0]} {fr.FUNC}: {fr.pc}")
            seen.add(h)
            cur = h
            f2 = k.active(cur)[1][-1]
            holder = k.locks.get(f2.lock_addr())
    return None


def quiescent(w: World) -> bool:
    """Whether nothing runs or waits: no CPU busy, the RCU queue empty, no gather open."""
    k = w.k
    return not k.rcu and not k.gathers and not any(k.busy(c) for c in range(len(k.cpus)))


def end_checks(ctx: Context, w: World) -> Finding | None:
    """At a quiescent world (no CPU runs, RCU drained, no gather open): leaks and the
    whole-state invariants including reachability."""
    if not ctx.setup.quiescent_checks:
        return None
    for v in check_quiescent(w.k):
        return Finding(v.name, v.page, v.message, v.step or "quiescent state (RCU drained, no CPU running)")
    k = w.k
    leaked = sorted(unheld_frames(k, list({ctx.mm, *live_mms(k)})) - ctx.unheld)
    if leaked:
        shown = ", ".join(f"{f:#x}" for f in leaked[:8]) + (", ..." if len(leaked) > 8 else "")
        return Finding("leak", k.mem_map.virt_to_page(leaked[0]),
                       f"{len(leaked)} frame(s) in use that no page table, mm or region/segment table holds: {shown}",
                       "quiescent state (RCU drained, no CPU running)")
    return None
