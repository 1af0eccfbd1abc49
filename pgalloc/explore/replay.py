"""Replaying a finding's transitions with full detail: one trace row per atomic step
(CPU, context, function, label, the fragment byte before and after), per start of an
operation or softirq callback and per grace period, and the state at the end.

With the readers in flight modelled (``Setup.walkers``), a step's row also says what
they saw or did, each key present only when there is something to say:

* ``purges``: the TLB purges the step made, in words (``TraceEvent.purges``);
* ``tlb``: per CPU whose TLB the step changed, the entries it added (``+``, formed by the
  fill after the step) and removed (``-``, purged), as ``dat.tlb.describe`` names them:
  ``{"CPU1": {"+": [], "-": ["STE 0x18000->0x1c000", "PTEs of 0x1c000"]}}``;
* ``walker``: for a step of a lockless walker (``pgalloc.walkers``), the entries it
  holds after the step: ``pmdp`` (the segment entry's address), ``pmd`` (GUP-fast) or
  ``pmdval`` (``pte_offset_map_lock``), the segment entry it read, ``pt``, the page
  table whose pointer it holds (0: none), and ``pte``, the PTE it read.

The steps are seen through the kernel's ``trace_hook``, and what only the reductions
know (the step being taken when a check fails, the grace periods ``settle`` let elapse)
through a ``Recorder`` handed to ``apply``: no state outside the call, so two replays,
or a replay and a search, in one process cannot interfere.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dat.tlb import describe
from s390emu import structs as S

from ..checks import fmt, listed_pages
from ..kernel import PROCESS, SOFTIRQ, Kernel, TraceEvent
from ..walkers import WALKERS
from .findings import Finding, violation_finding
from .operations import op_label
from .reductions import Recorder, apply
from .world import World, copy_world

if TYPE_CHECKING:
    from .setup import Context, SetupViolation


def _rcu_desc(k: Kernel) -> list[str]:
    """The RCU queue, as trace rows show it."""
    out = []
    for head, func, args, ready in k.rcu:
        what = func
        if func == "tlb_remove_table_rcu":
            what += "[" + ", ".join(f"{a:#x}" for a in args) + "]"
        elif head:
            what += f"(page {head - S.page.fields['rcu_head']:#x})"
        out.append(what + (" ready" if ready else " waiting"))
    return out


def _page_info(k: Kernel, page: int) -> dict:
    """What a trace shows of ``page``: its fragment byte, refcount, list and free state."""
    if not page:
        return {}
    try:
        listed = page in listed_pages(k)
    except Exception:       # noqa: BLE001 - a corrupt list is itself the finding
        listed = None
    word = k.mem_map.refcount(page)
    return {"page": f"{page:#x}", "frame": f"{k.mem_map.page_address(page):#x}", "byte": word >> 24,
            "bits": fmt(word >> 24), "refcount": word & 0xFFFFFF, "listed": listed,
            "free": k.mem_map.has_type(page, S.PG_buddy),
            "active": k.mem_map.test_flag(page, S.PG_active)}


# What a trace row shows of a walker frame: its segment-entry pointer and value, the page
# table it holds and the PTE it read (``pgalloc.walkers``' locals of those names).
_WALKER_LOCALS = ("pmdp", "pmd", "pmdval", "pt", "pte")


def walker_seen(k: Kernel, ev: TraceEvent) -> dict | None:
    """Called from the trace hook (the frame that took step ``ev`` is still on top of its
    stack there): what a walker frame holds after its step, or None for another function."""
    c = k.cpus[ev.cpu]
    st = c.soft if ev.context == SOFTIRQ else c.proc
    fr = st[-1] if st else None
    if not isinstance(fr, WALKERS):
        return None
    return {n: f"{getattr(fr, n):#x}" for n in _WALKER_LOCALS if n in fr.LOCALS}


def _step_row(item: tuple) -> dict:
    """The trace row of one step the kernel's ``trace_hook`` saw: ``(TraceEvent, touched)``
    or ``(TraceEvent, touched, walker_seen)``."""
    ev, touched = item[:2]
    r = {"kind": "step", "cpu": ev.cpu, "context": ev.context, "func": ev.func, "label": ev.label}
    if ev.page:
        r.update(page=f"{ev.page:#x}", before=ev.before if touched else ev.after, after=ev.after)
    if ev.purges:
        r["purges"] = list(ev.purges)
    if ev.tlb:
        r["tlb"] = {f"CPU{cpu}": {"+": [describe(e) for e in added], "-": [describe(e) for e in removed]}
                    for cpu, added, removed in ev.tlb}
    if len(item) > 2 and item[2] is not None:
        r["walker"] = item[2]
    return r


_WHERE = re.compile(r"CPU(\d+) (\w+) ([^:]+): (.*)")


def setup_finding(e: SetupViolation) -> Finding:
    """The finding a check that failed while the setup was built is, with the setup's
    steps as its trace rows (no transition of the search led to it)."""
    f = violation_finding(e.error)
    k = e.kernel
    rows = [_step_row(ev) for ev in e.events]
    r = {"kind": "step", "violation": str(e.error)}
    m = _WHERE.fullmatch(f.where)
    if m:
        r.update(cpu=int(m[1]), context=m[2], func=m[3], label=m[4])
    if f.page:
        b = k.byte(f.page)
        r.update(page=f"{f.page:#x}", before=b, after=b)
    r["rcu"] = _rcu_desc(k)
    rows.append(r)
    for i, row in enumerate(rows):
        row["n"] = i + 1
    f.trace = rows
    f.state = {"focus_page": _page_info(k, f.page) if f.page else {}, "rcu": _rcu_desc(k), "tables": {},
               "operations": ["the setup, before any CPU starts an operation"]}
    return f


def describe_transition(ctx: Context, t: tuple) -> str:
    """Transition ``t`` in words (\"CPU1 starts free_tlb T0(0x...)\")."""
    if t[0] == "start":
        return f"CPU{t[1]} starts {op_label(ctx, t[2])}"
    if t[0] == "gp":
        return "RCU grace period elapses"
    if t[0] == "rcu":
        head, func, args = t[2]
        return f"CPU{t[1]} softirq runs RCU callback {func}"
    return f"CPU{t[1]} step"


def replay(ctx: Context, w0: World, f: Finding) -> None:
    """Re-run ``f.transitions`` from the setup, recording every atomic step in detail:
    one row per step (CPU, context, function, label, fragment byte before and after,
    list membership, RCU queue, locks), plus a row for each start of an operation, a
    grace period and the start of each softirq callback."""
    w = copy_world(w0)
    k = w.k
    events: list[tuple] = []
    # A step that did not XOR reports the byte of its function's page unchanged.
    k.trace_hook = lambda ev: events.append((ev, k._touch is not None, walker_seen(k, ev)))
    rows: list[dict] = []
    focus = f.page

    for t in f.transitions:
        events.clear()
        err = None
        rec = Recorder()
        head = None
        if t[0] != "step":
            head = {"kind": t[0], "what": describe_transition(ctx, t)}
            if t[0] != "gp":
                head["cpu"] = t[1]
                head["context"] = PROCESS if t[0] == "start" else SOFTIRQ
        try:
            apply(ctx, w, t, rec)
        except Exception as e:      # noqa: BLE001
            err = e
        new = ([head] if head else []) + [_step_row(ev) for ev in events]
        if rec.grace_periods:
            new.append({"kind": "gp", "what": "RCU grace period elapses (no CPU in a read-side section)"})
        last_step = rec.last_step
        if err is not None and new and last_step is not None and last_step[1] and new[-1].get("cpu") == last_step[0] \
                and (new[-1].get("func"), new[-1].get("label")) == last_step[1][1:] and new[-1]["kind"] == "step":
            new[-1]["violation"] = str(err)     # the step ran, then a check after it failed
        elif err is not None:
            r = {"kind": "step", "violation": str(err)}
            if last_step is not None:
                cpu, pos = last_step
                if pos:
                    r.update(cpu=cpu, context=pos[0], func=pos[1], label=pos[2])
            page = getattr(err, "page", 0) or focus
            if page:
                b = k.byte(page)
                r.update(page=f"{page:#x}", before=b, after=b)
            new.append(r)
        for r in new:
            if r.get("page"):
                focus = focus or int(r["page"], 16)
        # The state after the transition, on its last row.
        last = new[-1]
        if focus:
            info = _page_info(k, focus)
            last["focus_byte"] = info["byte"]
            last["listed"] = info["listed"]
        last["rcu"] = _rcu_desc(k)
        last["locks"] = {f"{a:#x}": f"CPU{h[0]} {h[1]} {h[2]}" for a, h in k.locks.items()}
        rows.extend(new)
        if err is not None:
            break
    if err is None:
        # Found on the state reached (deadlock, leak, spinning on a freed mm): say so.
        r = {"kind": "state", "what": "in the state reached", "violation": f"[{f.name}] {f.message}"}
        if f.where.startswith("CPU"):
            cpu = int(f.where[3:].split(" ", 1)[0])
            pos = k.position(cpu)
            if pos:
                r.update(cpu=cpu, context=pos[0], func=pos[1], label=pos[2])
        page = f.page or focus
        if page:
            b = k.byte(page)
            r.update(page=f"{page:#x}", before=b, after=b, listed=_page_info(k, page)["listed"])
        r["rcu"] = _rcu_desc(k)
        rows.append(r)
    for i, r in enumerate(rows):
        r["n"] = i + 1
    f.trace = rows
    if not f.page and focus:
        f.page = focus
    f.state = {"focus_page": _page_info(k, f.page) if f.page else {}, "rcu": _rcu_desc(k),
               "tables": {ctx.table_name(t): f"{m:#x}" for t, m in k.owner.items()},
               "operations": [describe_transition(ctx, t) for t in f.transitions if t[0] == "start"]}
    k.trace_hook = None
