"""The explorer's operations: what a CPU may start, and every transition of a world.

The generated vocabulary (``OP_KINDS``) names the kernel's callers of the allocator
(``pgalloc.callers``) and the other users of a page-table page and of the mm
(``pgalloc.mm``, ``pgalloc.users``).  ``possible_ops`` says which a CPU may start now,
within the budget (generated mode) or in the scenario's order (scenario mode);
``make_path`` builds the running function for one; ``transitions`` lists every
transition enabled at a world (starts, steps, grace periods, RCU callbacks).  Taking one
is ``reductions.apply``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import mm as MM
from ..callers import CALLERS, collapse_op, free_pgtables_op, lockless_pte_map, pte_alloc_op, pte_free_op
from s390emu import structs as S

from ..pgtable_bits import _SEGMENT_ENTRY_EMPTY
from ..kernel import Kernel
from ..mmu_context import context_switch
from ..steps import Path
from ..users import speculative_ref, tlb_flush_mm_lazy_
from ..walkers import WALKERS, gup_fast, pte_offset_map_lock

if TYPE_CHECKING:
    from .setup import Context
    from .world import World


# Operation kinds and what they model (the generated vocabulary).
OP_KINDS = {
    "alloc": "__pte_alloc: page_table_alloc + pmd_populate",
    "free": "pte_free: pmd_clear + page_table_free",
    "free_tlb": "free_pgtables: tlb_gather_mmu, pmd_clear, pte_free_tlb (page_table_free_rcu), tlb_finish_mmu",
    "free_tlb_nomem": "the same when the batch page cannot be allocated: __tlb_remove_table at once",
    "defer": "khugepaged retract_page_tables: pmdp_collapse_flush + pte_free_defer",
    "exit": "the process exits: mmput -> exit_mmap -> mmdrop",
    "mmdrop": "a lazy-TLB user drops its mm_count reference: mmdrop",
    "flush_lazy": "__tlb_flush_mm_lazy: plain spin_lock(&mm->context.lock) in process context",
    "spec_ref": "a speculative reference from another CPU: get_page_unless_zero ... put_page",
    "gup_fast": "GUP-fast of one address (walkers): interrupts off with the region and segment entries read, "
                "the PTE read, the pmd and PTE rechecked with interrupts on",
    "pte_map": "pte_offset_map_lock of one address (walkers, v6.6+): rcu_read_lock, the segment entry, the "
               "PTE lock, the pmd_same recheck (retry when it fails), ptep_get, pte_unmap_unlock",
    "switch_mm": "a CPU switches to another mm and back (walkers): switch_mm_irqs_off detaches it, "
                 "finish_arch_post_lock_switch sets mm_cpumask, flushes lazily and loads the ASCE again",
}
# Operations that exist only with the readers in flight (Setup.walkers).
INFLIGHT_OPS = ("gup_fast", "pte_map", "switch_mm")
WALKER_OPS = ("gup_fast", "pte_map")
TABLE_OPS = ("free", "free_tlb", "free_tlb_nomem", "defer")
_ASCE = S.mm_struct.fields["context.asce"]
MM_OPS = ("alloc",) + TABLE_OPS + ("exit", "flush_lazy")
# switch_mm is left out by default: it is what lets I3 (and a direct flush that reads
# the wrong mask) break, but it roughly doubles the states at --max-ops 3, which would
# take the default search past its time aims; name it in --ops (or a scenario) to add it.
DEFAULT_VOCABULARY = tuple(k for k in OP_KINDS if k != "switch_mm")


def op_label(ctx: Context, op: tuple) -> str:
    """How a trace names operation ``op``."""
    kind = op[0]
    if kind in TABLE_OPS:
        return f"{kind} {ctx.table_name(op[1])}"
    if kind == "spec_ref":
        return f"spec_ref frame {op[1]:#x}"
    if kind in WALKER_OPS:
        return f"{kind} S{op[1]} (address {op[1] << 20:#x})"
    return kind


def script_label(op: tuple) -> str:
    """How a scenario file writes operation ``op`` (``("free", 0)`` -> ``"free T0"``)."""
    kind = op[0]
    if len(op) == 1:
        return kind
    return f"{kind} {'S' if kind in ('alloc',) + WALKER_OPS else 'T'}{op[1]}"


def _mm_op_running(k: Kernel, cpu: int) -> bool:
    """Whether ``cpu`` runs an operation on the mm (which ``exit`` must not overlap)."""
    for fr in k.cpus[cpu].proc[:1]:
        if isinstance(fr, CALLERS) or isinstance(fr, (MM.mmput, tlb_flush_mm_lazy_, context_switch) + WALKERS):
            return True
    return False


def _pte_map_excluded(k: Kernel, side: str) -> bool:
    """Whether a ``pte_offset_map`` walker and a table free of the mm exclude each other
    now: ``pte_free`` (≤6.5 khugepaged) and ``free_pgtables`` (and so exit) hold the mmap
    write lock or the rmap write locks that such a walker's caller holds for reading
    (free_pgtables unlinks the VMA first: "outsiders ... should avoid pte_offset_map()
    once the vma is detached").  v6.6's ``retract_page_tables`` holds neither, which is
    why it takes the PTE lock.  ``side``: the kind of operation that wants to start."""
    other = (pte_offset_map_lock,) if side != "pte_map" else (pte_free_op, free_pgtables_op, MM.mmput)
    return any(isinstance(fr, other) for c in k.cpus for fr in c.proc[:1])


def _claimed(k: Kernel) -> set[int]:
    """Tables and segment-entry slots that a running operation works on."""
    out = set()
    for c in k.cpus:
        for fr in c.proc[:1]:
            if isinstance(fr, CALLERS):
                out.add(fr.ste)
                out.add(getattr(fr, "table", 0))
    return out


def possible_ops(ctx: Context, w: World, cpu: int) -> list[tuple]:
    """Operations ``cpu`` may start now (it must be idle in process context)."""
    k, (nops, exited, lazy_left, script) = w.k, w.gen
    setup = ctx.setup
    if k.cpus[cpu].proc:
        return []
    if setup.script is not None:
        ops = setup.script[cpu]
        pos = script[cpu]
        if pos >= len(ops):
            return []
        op = _resolve(ctx, w, ops[pos])
        return [op] if op is not None and _enabled(ctx, w, cpu, op) else []
    if nops >= setup.max_ops:
        return []
    out = []
    voc = setup.vocabulary
    claimed = _claimed(k)
    if not exited:
        if "alloc" in voc:
            for s in ctx.slots:
                if k.mem.read_u64(s) & _SEGMENT_ENTRY_EMPTY and s not in claimed:
                    out.append(("alloc", s))
                    break
        for kind in TABLE_OPS:
            if kind not in voc or (kind == "defer" and k.v.DEFER_IS_PTE_FREE and "free" in voc):
                continue        # where pte_free_defer is pte_free, "defer" would repeat "free"
            if setup.walkers and kind != "defer" and _pte_map_excluded(k, kind):
                continue
            for s in ctx.slots:
                e = k.mem.read_u64(s)
                if not e & _SEGMENT_ENTRY_EMPTY and (e & ~0x7FF) not in claimed:
                    out.append((kind, e & ~0x7FF))
        if "exit" in voc and not any(_mm_op_running(k, c) for c in range(len(k.cpus)) if c != cpu):
            out.append(("exit",))
        if "flush_lazy" in voc:
            out.append(("flush_lazy",))
        if setup.walkers:
            out += [op for op in _walker_ops(ctx, w, voc) if _walker_enabled(ctx, w, cpu, op)]
            if "switch_mm" in voc and _attached(ctx, k, cpu):
                out.append(("switch_mm",))
    if "mmdrop" in voc and lazy_left:
        out.append(("mmdrop",))
    if "spec_ref" in voc:
        for f in ctx.frames:
            out.append(("spec_ref", f))
    return out


def _walker_ops(ctx: Context, w: World, voc: tuple) -> list[tuple]:
    """The walkers the vocabulary and the version have, one per setup table's address."""
    kinds = [k for k in WALKER_OPS if k in voc and (k != "pte_map" or lockless_pte_map(w.k.v))]
    return [(kind, i) for kind in kinds for i in range(len(ctx.tables))]


def _walker_enabled(ctx: Context, w: World, cpu: int, op: tuple) -> bool:
    """GUP-fast walks ``current->mm``: only on a CPU with the mm's ASCE loaded; a
    ``pte_offset_map`` walker only while no table free excludes it."""
    k = w.k
    if op[0] == "gup_fast":
        return _attached(ctx, k, cpu)
    return not _pte_map_excluded(k, "pte_map")


def _attached(ctx: Context, k: Kernel, cpu: int) -> bool:
    """Whether ``cpu`` has the mm's ASCE loaded (runs one of its threads)."""
    return k.mem.read_u64(ctx.mm + _ASCE) in k.loaded_asces(cpu)


def _resolve(ctx: Context, w: World, op: tuple) -> tuple | None:
    """A scenario op names tables by setup index or by slot; make it concrete."""
    kind = op[0]
    if kind in TABLE_OPS:
        slot = ctx.slots[op[1]]
        e = w.k.mem.read_u64(slot)
        if e & _SEGMENT_ENTRY_EMPTY:
            return None
        return (kind, e & ~0x7FF)
    if kind == "alloc":
        return ("alloc", ctx.slots[op[1]]) if len(op) > 1 else ("alloc", ctx.slots[-1])
    if kind == "spec_ref":
        return ("spec_ref", ctx.tables[op[1]] & ~0xFFF)
    return op


def _enabled(ctx: Context, w: World, cpu: int, op: tuple) -> bool:
    """Whether scenario operation ``op`` may start on ``cpu`` now."""
    k, (_, exited, lazy_left, _) = w.k, w.gen
    kind = op[0]
    if (kind in MM_OPS or kind in INFLIGHT_OPS) and exited:
        return False
    if kind == "switch_mm":
        return ctx.setup.walkers and _attached(ctx, k, cpu)
    if kind == "exit":
        return not any(_mm_op_running(k, c) for c in range(len(k.cpus)) if c != cpu)
    if kind == "mmdrop":
        return lazy_left > 0
    if kind in TABLE_OPS:
        if ctx.setup.walkers and kind != "defer" and _pte_map_excluded(k, kind):
            return False
        return op[1] not in _claimed(k)
    if kind in WALKER_OPS:
        return ctx.setup.walkers and _walker_enabled(ctx, w, cpu, op)
    if kind == "alloc":
        return bool(k.mem.read_u64(op[1]) & _SEGMENT_ENTRY_EMPTY) and op[1] not in _claimed(k)
    return True


def _slot_of(ctx: Context, k: Kernel, table: int) -> int:
    """The segment-table entry that holds ``table`` (0: none)."""
    for s in ctx.slots:
        e = k.mem.read_u64(s)
        if not e & _SEGMENT_ENTRY_EMPTY and (e & ~0x7FF) == table:
            return s
    return 0


def make_path(ctx: Context, k: Kernel, op: tuple) -> Path:
    """The kernel function that operation ``op`` starts."""
    kind, mm = op[0], ctx.mm
    if kind == "alloc":
        return pte_alloc_op(mm=mm, ste=op[1])
    if kind == "free":
        return pte_free_op(mm=mm, table=op[1], ste=_slot_of(ctx, k, op[1]))
    if kind in ("free_tlb", "free_tlb_nomem"):
        return free_pgtables_op(mm=mm, table=op[1], ste=_slot_of(ctx, k, op[1]), nomem=int(kind == "free_tlb_nomem"))
    if kind == "defer":
        return collapse_op(mm=mm, table=op[1], ste=_slot_of(ctx, k, op[1]))
    if kind == "exit":
        return MM.mmput(mm=mm, nomem=0)
    if kind == "mmdrop":
        return MM.mmdrop(mm=mm)
    if kind == "flush_lazy":
        return tlb_flush_mm_lazy_(mm=mm)
    if kind == "spec_ref":
        return speculative_ref(table=op[1])
    if kind == "gup_fast":
        return gup_fast(mm=mm, addr=op[1] << 20)
    if kind == "pte_map":
        return pte_offset_map_lock(mm=mm, addr=op[1] << 20)
    if kind == "switch_mm":
        return context_switch(mm=mm)
    raise ValueError(f"unknown operation {kind!r}")


def transitions(ctx: Context, w: World) -> list[tuple]:
    """Every transition enabled at ``w`` (in a fixed order)."""
    k = w.k
    out = []
    ncpu = len(k.cpus)
    for cpu in range(ncpu):
        if k.busy(cpu):
            if k.runnable(cpu):
                out.append(("step", cpu))
    # Symmetry (generated mode): CPUs with nothing running hold nothing and are
    # interchangeable, so only the first of them starts an operation or a callback.
    cpus = list(range(ncpu))
    if ctx.setup.symmetric:
        idle = [c for c in cpus if not k.busy(c)]
        cpus = [c for c in cpus if k.busy(c)] + idle[:1]
    for cpu in cpus:
        for op in possible_ops(ctx, w, cpu):
            out.append(("start", cpu, op))
    if not ctx.setup.eager_gp and any(not e[3] for e in k.rcu) and not k.in_rcu_reader():
        out.append(("gp",))
    seen = set()
    for (head, func, args, ready) in k.rcu:
        cb = (head, func, args)
        if not ready or cb in seen:
            continue
        seen.add(cb)
        for cpu in cpus:
            if k.can_softirq(cpu):
                out.append(("rcu", cpu, cb))
    return out
