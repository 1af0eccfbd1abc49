"""The interleaving explorer: every interleaving of concurrent page-table paths, with
minimal counterexample traces (issue 4).

A *world* is a ``Kernel`` (memory bytes, CPUs with their running kernel functions, RCU
queue, mmu_gather batches, lock holders) plus the generator's own small state (how many
operations were started, whether the process has exited, which scenario operation each
CPU runs next).  From a world, the *transitions* are:

* ``("start", cpu, op)``: an idle CPU starts an operation in process context
  (``page_table_alloc``, ``pte_free``, ``pte_free_tlb`` + ``tlb_finish_mmu`` (also the
  no-memory fallback), THP collapse ``pte_free_defer``, process exit ``mmput`` ->
  ``exit_mmap`` -> ``mmdrop``, dropping a lazy mm reference ``mmdrop``,
  ``__tlb_flush_mm_lazy`` (plain ``spin_lock``), a speculative page reference);
* ``("step", cpu)``: the CPU's running context (softirq if one runs, else process)
  takes one atomic step of its innermost kernel function;
* ``("gp",)``: a grace period elapses (only outside every RCU read-side section);
* ``("rcu", cpu, callback)``: a ready RCU callback starts as softirq work on ``cpu``
  (any CPU with bottom halves enabled, interrupting whatever process context runs).

The search is breadth first, so the first trace that breaks an invariant is a shortest
one (in transitions).  Visited worlds are cached by key (the memory as the hashes of the
1 KiB blocks where it differs from the setup's memory, plus ``Kernel.key()``'s other
parts with only the live locals of each running function (``pgalloc.liveness``), plus
the generator state); steps that no other CPU can observe are taken at once
(``is_local``, ``settle``); a world is not explored again when one explored before
differs from it only by a larger budget (fewer operations started, a superset of
lockdep usage bits: ``subsumes``), and a *sleep set* partial-order reduction (off by
default) skips a transition at a world when an independent transition already explored
the same interleaving: two transitions of different CPUs are independent when their
memory footprints (words read and written, recorded while they run) do not conflict and
neither touches the shared kernel state outside memory (RCU queue, lock table,
allocation records, bottom-half counts).  Lipton's movers shorten the paths themselves:
a spinlock taken with bottom halves off is fused with the step after it, and its release
with the step before it (``_take``, ``settle``), and starting a page-table operation or
an RCU callback runs on to its first visible step (``apply``).  Each BFS level is split
over worker processes.

>>> r = explore(Setup(version="v64", cpus=2, max_ops=1))
>>> r.violations, r.complete
([], True)
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from s390emu import structs as S
from s390emu.machine import Machine

from . import mm as MM
from . import tlb as TLB
from .checks import Violation, check_quiescent, fmt, listed_pages, lock_of_freed_mm
from .explore_world import (CONSTANT, ExploreMemory, Scratch, World, base_hashes, clone_onto, copy_world, freeze, own_cpu,
                            subsumes, thaw, world_key)
from .kernel import PROCESS, SOFTIRQ, Kernel
from .steps import BLOCKED, DONE, PATHS, Call, Path, step
from .users import speculative_ref, tlb_flush_mm_lazy_
from .versions import VERSIONS        # (and so every built-in function is defined before _LOCAL_STEPS)

MIB = 1 << 20
_MMF = S.mm_struct.fields
_SEG_EMPTY = 0x20
_PAGE_INVALID = 0x400
DEFAULT_MEM = 0x140000          # 1.25 MiB: mem_map + kernel + ~290 free frames

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
}
TABLE_OPS = ("free", "free_tlb", "free_tlb_nomem", "defer")
MM_OPS = ("alloc",) + TABLE_OPS + ("exit", "flush_lazy")
DEFAULT_VOCABULARY = tuple(OP_KINDS)


# -- the setup and the operations --------------------------------------------------------------------

@dataclass
class Setup:
    """What to explore.  ``max_ops`` bounds the operations started in generated mode;
    ``script`` (scenario mode) fixes each CPU's operations instead."""

    version: str = "v64"
    cpus: int = 2
    max_ops: int = 3
    max_steps: int = 0                  # 0: no bound on the trace length
    max_states: int = 2_000_000
    max_seconds: float = 0.0            # 0: no time bound (checked at the end of each BFS level)
    pages: int = 1                      # page-table pages in the setup (both halves in use)
    free_halves: tuple = ()             # table indices page_table_free'd during setup
    lazy_refs: int = 0                  # mm_count references held by lazy-TLB users (mmdrop ops)
    pgste: bool = False
    vocabulary: tuple = DEFAULT_VOCABULARY
    script: tuple | None = None         # per CPU: tuple of ops (("free_tlb", 0), ...)
    sleep_sets: bool = False
    symmetry: bool = True
    eager_gp: bool = True               # grace periods as early as allowed (no choice points)
    movers: bool = True                 # Lipton: fuse bh-off lock/unlock with the next/previous step,
                                        # an operation's or RCU callback's start with its first visible step
    subsumption: bool = True            # skip a world another one covers with more budget left
    local_steps: bool = True            # take local steps at once (is_local: an ample set of one)
    dead_locals: bool = True            # key paths by their live locals only (pgalloc.liveness)
    quiescent_checks: bool = True
    name: str = ""

    @property
    def symmetric(self) -> bool:
        """CPU symmetry reduction: generated mode only (scenario CPUs differ), and not
        together with sleep sets (whose entries name CPUs)."""
        return self.symmetry and self.script is None and not self.sleep_sets

    def describe(self) -> str:
        if self.script is not None:
            return f"scenario {self.name or '(inline)'}"
        return f"generated, --max-ops {self.max_ops}"


class Context:
    """What every world of one exploration shares: version module, base memory, names."""

    def __init__(self, setup: Setup, k0: Kernel, mm: int, tables: list[int], slots: list[int]):
        self.setup = setup
        self.mm = mm
        self.tables = tables            # setup tables, by index
        self.slots = slots              # segment-table entry addresses, one per MiB slot
        self.frames = sorted({t & ~0xFFF for t in tables})
        self.size = k0.mem.size
        self.base_bytes = np.array(k0.mem.data, copy=True)
        self.hashes = base_hashes(self.base_bytes)
        self.template = {n: k0.__dict__[n] for n in CONSTANT}
        self.swapper = k0.machine.swapper_pg_dir
        self.scratch = None             # this process's Scratch, made on first use

    # -- naming, for traces --
    def table_name(self, t: int) -> str:
        if t in self.tables:
            i = self.tables.index(t)
            return f"T{i}({t:#x})"
        return f"{t:#x}"


def _op_label(ctx: "Context", op: tuple) -> str:
    kind = op[0]
    if kind in TABLE_OPS:
        return f"{kind} {ctx.table_name(op[1])}"
    if kind == "spec_ref":
        return f"spec_ref frame {op[1]:#x}"
    return kind


# Operation paths (the callers in the kernel that run the allocator's functions).
# What ``_claimed`` reads of a running operation (beside the checks' ``page``).
_CLAIMS = ("page", "ste", "table")

class pte_alloc_op(Path):
    """``__pte_alloc``: ``pte_alloc_one`` (page_table_alloc), then ``pmd_populate``."""

    FUNC = "__pte_alloc"
    EXTERNAL = _CLAIMS
    LOCALS = ("mm", "ste")

    @step("pte_alloc_one: page_table_alloc(mm)")
    def alloc(self, k):
        return Call(k.v.page_table_alloc(mm=self.mm), "pmd_populate(mm, pmd, new)")

    @step("pmd_populate(mm, pmd, new)")
    def populate(self, k):
        if self.ret:
            k.mem.write_u64(self.ste, 0x0 | self.ret)       # _SEGMENT_ENTRY | table
        return DONE


class pte_free_op(Path):
    """``pmd_clear`` then ``pte_free`` (``page_table_free``)."""

    FUNC = "pte_free"
    EXTERNAL = _CLAIMS
    LOCALS = ("mm", "table", "ste")

    @step("pmd_clear(pmd); zap ptes")
    def clear(self, k):
        k.mem.table(self.table, 256)[:] = _PAGE_INVALID
        k.mem.write_u64(self.ste, _SEG_EMPTY)
        return "page_table_free(mm, table)"

    @step("page_table_free(mm, table)")
    def free(self, k):
        return Call(k.v.page_table_free(mm=self.mm, table=self.table), "return")

    @step("return")
    def ret_(self, k):
        return DONE


class free_pgtables_op(Path):
    """``free_pgtables`` of one table: gather, ``pmd_clear``, ``pte_free_tlb``, ``tlb_finish_mmu``."""

    FUNC = "free_pgtables"
    EXTERNAL = _CLAIMS
    LOCALS = ("mm", "table", "ste", "nomem", "tlb")

    @step("tlb_gather_mmu(&tlb, mm); pmd_clear(pmd)")
    def gather(self, k):
        self.tlb = k.tlb_gather_mmu(self.mm, nomem=bool(self.nomem))
        k.mem.table(self.table, 256)[:] = _PAGE_INVALID
        k.mem.write_u64(self.ste, _SEG_EMPTY)
        return "pte_free_tlb: page_table_free_rcu(tlb, table)"

    @step("pte_free_tlb: page_table_free_rcu(tlb, table)")
    def free(self, k):
        return Call(k.v.page_table_free_rcu(tlb=self.tlb, table=self.table, vmaddr=0), "tlb_finish_mmu(&tlb)")

    @step("tlb_finish_mmu(&tlb)")
    def finish(self, k):
        return Call(TLB.tlb_finish_mmu(tlb=self.tlb), "return")

    @step("return")
    def ret_(self, k):
        return DONE


class collapse_op(Path):
    """khugepaged ``retract_page_tables``: ``pmdp_collapse_flush``, then ``pte_free_defer``."""

    FUNC = "retract_page_tables"
    EXTERNAL = _CLAIMS
    LOCALS = ("mm", "table", "ste")

    @step("pmdp_collapse_flush(pmd)")
    def clear(self, k):
        k.mem.table(self.table, 256)[:] = _PAGE_INVALID
        k.mem.write_u64(self.ste, _SEG_EMPTY)
        return "pte_free_defer(mm, pgtable)"

    @step("pte_free_defer(mm, pgtable)")
    def defer(self, k):
        return Call(k.v.pte_free_defer(mm=self.mm, table=self.table), "return")

    @step("return")
    def ret_(self, k):
        return DONE


OP_PATHS = (pte_alloc_op, pte_free_op, free_pgtables_op, collapse_op)


# -- building the setup --------------------------------------------------------------------------

def build(setup: Setup) -> tuple[Context, World]:
    """The initial world: one mm with ``setup.pages`` page-table pages, both halves in use,
    each table installed in a segment-table entry (1 MiB per table)."""
    if setup.version not in VERSIONS:
        raise ValueError(f"unknown version {setup.version!r} (one of {', '.join(VERSIONS)})")
    k = Kernel(setup.version, mem_size=DEFAULT_MEM, ncpus=setup.cpus, checks=True)
    mm = MM.mm_alloc(k, pgste=setup.pgste)
    ntables = 2 * setup.pages
    MM.map_range(k, mm, 0, ntables * MIB)
    st = MM.segment_table(k, mm, 0)
    slots = [st + 8 * i for i in range(ntables + 1)]       # one spare slot for alloc
    tables = [k.mem.read_u64(s) & ~0x7FF for s in slots[:ntables]]
    for i in setup.free_halves:
        k.mem.write_u64(slots[i], _SEG_EMPTY)
        k.page_table_free(mm, tables[i])
    for _ in range(setup.lazy_refs):
        MM.mmgrab(k, mm)
    k.rcu_barrier()
    # Re-seat the machine on storage that keys itself as a difference to this one.
    mem = ExploreMemory(k.mem.size, _data=np.array(k.mem.data, copy=True))
    m = Machine(mem=mem)
    m.swapper_pg_dir = k.machine.swapper_pg_dir
    k.machine = m
    k._bind()
    ctx = Context(setup, k, mm, tables, slots)
    mem.base, mem.hashes = ctx.base_bytes, ctx.hashes
    mem.written = set()
    script = tuple(0 for _ in range(setup.cpus)) if setup.script is not None else ()
    return ctx, World(k, (0, 0, setup.lazy_refs, script))


# -- transitions ------------------------------------------------------------------------------------

def _mm_op_running(k: Kernel, cpu: int) -> bool:
    for fr in k.cpus[cpu].proc[:1]:
        if isinstance(fr, OP_PATHS) or isinstance(fr, (MM.mmput, tlb_flush_mm_lazy_)):
            return True
    return False


def _claimed(k: Kernel) -> set[int]:
    """Tables and segment-entry slots that a running operation works on."""
    out = set()
    for c in k.cpus:
        for fr in c.proc[:1]:
            if isinstance(fr, OP_PATHS):
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
                if k.mem.read_u64(s) & _SEG_EMPTY and s not in claimed:
                    out.append(("alloc", s))
                    break
        for kind in TABLE_OPS:
            if kind not in voc or (kind == "defer" and k.v.DEFER_IS_PTE_FREE and "free" in voc):
                continue        # where pte_free_defer is pte_free, "defer" would repeat "free"
            for s in ctx.slots:
                e = k.mem.read_u64(s)
                if not e & _SEG_EMPTY and (e & ~0x7FF) not in claimed:
                    out.append((kind, e & ~0x7FF))
        if "exit" in voc and not any(_mm_op_running(k, c) for c in range(len(k.cpus)) if c != cpu):
            out.append(("exit",))
        if "flush_lazy" in voc:
            out.append(("flush_lazy",))
    if "mmdrop" in voc and lazy_left:
        out.append(("mmdrop",))
    if "spec_ref" in voc:
        for f in ctx.frames:
            out.append(("spec_ref", f))
    return out


def _resolve(ctx: Context, w: World, op: tuple) -> tuple | None:
    """A scenario op names tables by setup index or by slot; make it concrete."""
    kind = op[0]
    if kind in TABLE_OPS:
        slot = ctx.slots[op[1]]
        e = w.k.mem.read_u64(slot)
        if e & _SEG_EMPTY:
            return None
        return (kind, e & ~0x7FF)
    if kind == "alloc":
        return ("alloc", ctx.slots[op[1]]) if len(op) > 1 else ("alloc", ctx.slots[-1])
    if kind == "spec_ref":
        return ("spec_ref", ctx.tables[op[1]] & ~0xFFF)
    return op


def _enabled(ctx: Context, w: World, cpu: int, op: tuple) -> bool:
    k, (_, exited, lazy_left, _) = w.k, w.gen
    kind = op[0]
    if kind in MM_OPS and exited:
        return False
    if kind == "exit":
        return not any(_mm_op_running(k, c) for c in range(len(k.cpus)) if c != cpu)
    if kind == "mmdrop":
        return lazy_left > 0
    if kind in TABLE_OPS:
        return op[1] not in _claimed(k)
    if kind == "alloc":
        return bool(k.mem.read_u64(op[1]) & _SEG_EMPTY) and op[1] not in _claimed(k)
    return True


def _slot_of(ctx: Context, k: Kernel, table: int) -> int:
    for s in ctx.slots:
        e = k.mem.read_u64(s)
        if not e & _SEG_EMPTY and (e & ~0x7FF) == table:
            return s
    return 0


def make_path(ctx: Context, k: Kernel, op: tuple) -> Path:
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


LAST_STEP: list = [None]        # (cpu, (context, function, label)) of the step being taken


def _step(k: Kernel, cpu: int):
    own_cpu(k, cpu)
    LAST_STEP[0] = (cpu, k.position(cpu))
    res = k.step(cpu)
    if res is BLOCKED:
        raise RuntimeError(f"CPU{cpu} was runnable but its step blocked")
    return res


def _bh_off(k: Kernel, cpu: int) -> bool:
    """Whether no softirq can interrupt ``cpu``'s running context (it is one, or it
    disabled bottom halves)."""
    c = k.cpus[cpu]
    return bool(c.soft) or c.bh_proc > 0


def _take(k: Kernel, cpu: int, movers: bool = True) -> None:
    """One step of ``cpu``; a lock acquisition is fused with the step after it.

    Lipton's reduction: with bottom halves off, taking a spinlock is a *right mover*:
    it commutes with every step another CPU (or context) can take while the lock is
    held, since none of them touches the lock word (another CPU's acquisition of it is
    disabled) and no softirq can start on this CPU.  So no interleaving is lost by
    taking the next step at once, and a CPU can never block between the two (its next
    step is its own).  With a plain ``spin_lock`` and bottom halves on, a softirq on the
    same CPU may still come in between, so nothing is fused (``__tlb_flush_mm_lazy``).
    """
    while True:
        fr = k.active(cpu)[1][-1]
        acquire = fr.is_lock_step()
        _step(k, cpu)
        if not (movers and acquire and k.busy(cpu) and _bh_off(k, cpu) and k.runnable(cpu)):
            return


GP_EVENTS: list = []            # grace periods taken by settle() (for traces)


def settle(k: Kernel, eager_gp: bool = True, movers: bool = True, local: bool = True) -> None:
    """Take every local step that is next on some CPU (see ``is_local``) and, with
    ``movers``, every lock release with bottom halves off (a *left mover*, see ``_take``:
    no other CPU's step between it and the step before it can touch the lock word, and
    no softirq can start there); then, with ``eager_gp``, let a grace period elapse if
    one can.

    Eager grace periods lose no behaviour: a callback only *may* run once ready, so
    readiness as early as the rules allow (the first instant after its ``call_rcu`` at
    which no CPU is in an RCU read-side section) allows every run order and placement a
    later grace period would, and nothing else reads readiness.
    """
    ncpu = len(k.cpus)
    moved = True
    while moved:
        moved = False
        for cpu in range(ncpu):
            c = k.cpus[cpu]
            st = c.soft or c.proc
            if st and (local and is_local(st[-1]) or (movers and st[-1].is_unlock_step() and _bh_off(k, cpu))):
                _step(k, cpu)
                moved = True
    if eager_gp and k.rcu and not all(e[3] for e in k.rcu) and not k.in_rcu_reader():
        k.rcu_grace_period()
        GP_EVENTS.append(True)


def _to_first_visible(ctx: Context, k: Kernel, cpu: int, stack: list) -> None:
    """After a start that is a right mover: take the local steps, then, if the started
    function (on ``stack``) still runs, its first step another CPU can see."""
    settle(k, ctx.setup.eager_gp, ctx.setup.movers, ctx.setup.local_steps)
    if stack and k.runnable(cpu):
        _take(k, cpu, ctx.setup.movers)


def apply(ctx: Context, w: World, t: tuple) -> None:
    """Take transition ``t`` in place (may raise ``Violation`` or a kernel exception).

    Starting an operation or a softirq is merged with its first step (starting is
    invisible to every other CPU), and local steps that follow are taken at once.
    """
    k = w.k
    kind = t[0]
    if kind == "step":
        _take(k, t[1], ctx.setup.movers)
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
        own_cpu(k, cpu)
        path = make_path(ctx, k, op)
        k.start(cpu, path, PROCESS)
        if k.runnable(cpu):
            _take(k, cpu, ctx.setup.movers)
            if ctx.setup.movers and isinstance(path, OP_PATHS) and not k.cpus[cpu].soft:
                # A right mover: starting a page-table operation and its first step
                # (pmd_clear and zapping its own table, an empty gather, or nothing
                # at all for __pte_alloc) touch only what the operation has claimed,
                # so they are fused with the operation's first step that another CPU
                # can see.  Another CPU's transition after them is enabled before them
                # too (the claims, the budget and the exit rule only ever take options
                # away) and does the same there.
                _to_first_visible(ctx, k, cpu, k.cpus[cpu].proc)
    elif kind == "gp":
        if not k.rcu_grace_period():
            raise RuntimeError("grace period refused")
    elif kind == "rcu":
        cpu, cb = t[1], t[2]
        for i, (head, func, args, ready) in enumerate(k.rcu):
            if ready and (head, func, args) == cb:
                own_cpu(k, cpu)
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
            _to_first_visible(ctx, k, cpu, soft)
        elif k.runnable(cpu):
            _take(k, cpu, ctx.setup.movers)
    else:
        raise ValueError(t)
    settle(k, ctx.setup.eager_gp, ctx.setup.movers, ctx.setup.local_steps)


def _pyfoot(k: Kernel) -> tuple:
    """The shared kernel state outside memory, for the footprint comparison: a step
    that changes any of it is dependent on every other transition."""
    return (tuple(k.rcu), tuple(sorted(k.locks.items())), tuple(sorted(k.owner.items())),
            tuple((c.bh_proc, c.bh_soft, len(c.soft), len(c.proc)) for c in k.cpus), k.next_gid, k.rcu_readers,
            tuple(sorted(k.lock_usage.items())), tuple(sorted(k.gathers)),
            frozenset(getattr(fr, "page", 0) for c in k.cpus for st in (c.proc, c.soft) for fr in st))


# -- findings ------------------------------------------------------------------------------------------

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
        return (self.name, self.where.split(": ", 1)[-1] if self.where else "", _fn(self.where))

    def as_dict(self) -> dict:
        return {"invariant": self.name, "page": f"{self.page:#x}", "message": self.message, "where": self.where,
                "steps": len(self.trace), "trace": self.trace, "final": self.state}


def _fn(where: str) -> str:
    parts = where.split(" ", 2)
    return parts[2].split(":")[0] if len(parts) == 3 else ""


def _violation_finding(e: BaseException) -> Finding:
    if isinstance(e, Violation):
        return Finding(e.name, e.page, e.message, e.step)
    return Finding(f"exception:{type(e).__name__}", 0, str(e), "")


def _deadlock(ctx: Context, w: World) -> Finding | None:
    """Some CPU spins on a lock that no runnable CPU will ever release."""
    k = w.k
    blocked = {c for c in range(len(k.cpus)) if k.busy(c) and not k.runnable(c)}
    if not blocked:
        return None
    for c in blocked:
        fr = k.active(c)[1][-1]
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


def _quiescent(w: World) -> bool:
    k = w.k
    return not k.rcu and not k.gathers and not any(k.busy(c) for c in range(len(k.cpus)))


def _end_checks(ctx: Context, w: World) -> Finding | None:
    """At a quiescent world (no CPU runs, RCU drained, no gather open): leaks and the
    whole-state invariants including reachability."""
    if not ctx.setup.quiescent_checks:
        return None
    for v in check_quiescent(w.k):
        return Finding(v.name, v.page, v.message, v.step or "quiescent state (RCU drained, no CPU running)")
    return None


# -- expanding one world ----------------------------------------------------------------------------------

def expand(ctx: Context, blob: bytes, sleep: frozenset) -> tuple[list, bool]:
    """Successors of a frozen world: ``[(t, key|None, blob|None, sleep, finding|None)]``
    and whether the ops bound cut something off.

    ``sleep`` is a set of ``(transition, footprint)``: transitions not to take here
    because an equivalent interleaving takes them elsewhere.  A footprint measured at an
    ancestor stays valid while only independent transitions ran since (they changed
    nothing it read), which is exactly when it stays in the sleep set.
    """
    sc = ctx.scratch
    if sc is None:
        sc = ctx.scratch = Scratch(ctx)
    w = thaw(ctx, blob, sc)
    k = w.k
    ts = transitions(ctx, w)
    bound_hit = (ctx.setup.script is None and w.gen[0] >= ctx.setup.max_ops
                 and any(not k.cpus[c].proc for c in range(len(k.cpus))))
    out = []
    use_sleep = ctx.setup.sleep_sets
    asleep = {t for t, _ in sleep}
    done: list[tuple] = []                  # (t, footprint) explored here, in order
    pre_py = _pyfoot(k) if use_sleep else None
    # A successor shares the CPUs its transition did not move (``own_cpu``): key them once.
    known = {id(c): c.state(ctx.setup.dead_locals) for c in k.cpus}
    for t in ts:
        if t in asleep:
            continue
        sc.reset_child()
        c = clone_onto(w, sc.C)
        if use_sleep:
            c.k.mem.rec = (set(), set())
        try:
            apply(ctx, c, t)
        except Exception as e:          # noqa: BLE001 - every kernel exception is a finding
            out.append((t, None, None, None, _violation_finding(e)))
            continue
        fp = None
        if use_sleep:
            r, wr = c.k.mem.rec
            c.k.mem.rec = None
            glob = t[0] != "step" or _pyfoot(c.k) != pre_py
            fp = (t[1] if len(t) > 1 else -1, frozenset(r), frozenset(wr), glob)
        fnd = None
        ck = c.k
        if any(ck.busy(x) and not ck.runnable(x) for x in range(len(ck.cpus))):
            fnd = _deadlock(ctx, c)
        if fnd is None and _quiescent(c):
            fnd = _end_checks(ctx, c)
        if fnd is not None:
            out.append((t, None, None, None, fnd))
            continue
        child_sleep = frozenset()
        if use_sleep and not fp[3]:
            child_sleep = frozenset(p for p in list(sleep) + done if _independent(p[1], fp))
        diff = ck.mem.keyed_diff()
        key = world_key(c, ctx.setup.symmetric, diff, ctx.setup.dead_locals, known)
        if not use_sleep and key in sc.sent:
            # This process already handed this world to the search, which has it.
            out.append((t, key, None, child_sleep, None))
        else:
            if not use_sleep:
                sc.sent.add(key)
            out.append((t, key, freeze(c, diff, sc), child_sleep, None))
        if use_sleep:
            done.append((t, fp))
    sc.reset_child()
    return out, bound_hit


def _independent(a, b) -> bool:
    """Footprints ``(cpu, reads, writes, global)`` of two transitions commute."""
    ca, ra, wa, ga = a
    cb, rb, wb, gb = b
    if ca == cb or ga or gb:
        return False
    return not (wa & (rb | wb)) and not (wb & ra)


# -- the search -----------------------------------------------------------------------------------------------

@dataclass
class Result:
    setup: Setup
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    depth: int = 0
    complete: bool = True          # False when max_steps / max_states / max_seconds cut the search
    ops_bound_reached: bool = False
    violations: list = field(default_factory=list)
    workers: int = 1

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        s = self.setup
        return {"version": s.version, "mode": s.describe(), "cpus": s.cpus, "max_ops": s.max_ops if s.script is None else None,
                "pages": s.pages, "states": self.states, "transitions": self.transitions,
                "seconds": round(self.seconds, 3), "states_per_second": round(self.states_per_second, 1),
                "depth": self.depth, "complete": self.complete, "ops_bound_reached": self.ops_bound_reached,
                "workers": self.workers, "violations": [v.as_dict() for v in self.violations]}


_WORKER_CTX: Context | None = None


def _worker_init(setup: Setup) -> None:
    global _WORKER_CTX
    _WORKER_CTX, _ = build(setup)


def _worker_expand(chunk: list) -> list:
    return [(sid, expand(_WORKER_CTX, blob, sleep)) for sid, blob, sleep in chunk]


def _expand_level(ctx: Context, frontier: list, pool, workers: int):
    """``(sid, expand(...))`` for each world of a BFS level, in order; over the pool
    in chunks small enough that no worker idles long at the level's end."""
    if pool is None or len(frontier) < 2 * workers:
        for sid, blob, sl in frontier:
            yield sid, expand(ctx, blob, sl)
        return
    n = max(1, min(64, len(frontier) // (workers * 4)))
    for part in pool.imap(_worker_expand, [frontier[i:i + n] for i in range(0, len(frontier), n)]):
        yield from part


def explore(setup: Setup, *, workers: int = 1, progress: Callable[[int, int, int], None] | None = None,
            first_only: bool = False) -> Result:
    """Breadth-first search of every interleaving; returns the states explored and one
    shortest trace per distinct violation (name + function + step)."""
    t0 = time.perf_counter()
    ctx, w0 = build(setup)
    res = Result(setup, workers=workers)
    root_key = world_key(w0, setup.symmetric, live=setup.dead_locals)
    visited: dict[bytes, int] = {root_key: 0}
    sleeps: dict[int, frozenset] = {0: frozenset()}
    parents: list[tuple] = [(-1, None)]
    frontier = [(0, freeze(w0), frozenset())]
    kinds: dict[tuple, Finding] = {}
    # Worlds explored, by key without the budget: a world whose budget one of them
    # covers is not explored again (sleep sets keep exact keys: their entries differ).
    subsume = setup.subsumption and not setup.sleep_sets
    variants: dict[bytes, list] = {root_key[:16]: [(root_key, 0)]}
    pool = None
    if workers > 1:
        mpctx = mp.get_context("fork")
        pool = mpctx.Pool(workers, initializer=_worker_init, initargs=(setup,))
    depth = 0
    try:
        while frontier:
            if setup.max_steps and depth >= setup.max_steps:
                res.complete = False
                break
            nxt: dict[int, list] = {}
            order: list[int] = []
            # Merged as each chunk comes back, while the workers expand the next ones.
            for sid, (succ, bound_hit) in _expand_level(ctx, frontier, pool, workers):
                if bound_hit:
                    res.ops_bound_reached = True
                for t, key, blob, sl, fnd in succ:
                    res.transitions += 1
                    if fnd is not None:
                        if fnd.kind not in kinds:
                            fnd.transitions = _path(parents, sid) + [t]
                            kinds[fnd.kind] = fnd
                        continue
                    cid = visited.get(key)
                    if cid is None and blob is None:
                        raise RuntimeError("a worker skipped a world the search has not seen")
                    if cid is None and subsume:
                        for other, ocid in variants.get(key[:16], ()):
                            if subsumes(other, key):
                                cid = visited[key] = ocid
                                break
                    if cid is None:
                        cid = len(parents)
                        visited[key] = cid
                        if subsume:
                            variants.setdefault(key[:16], []).append((key, cid))
                        parents.append((sid, t))
                        sleeps[cid] = sl
                        nxt[cid] = [blob, sl]
                        order.append(cid)
                    elif cid in nxt:
                        # Reached again in this level: explore with the intersection.
                        nxt[cid][1] = nxt[cid][1] & sl
                        sleeps[cid] = nxt[cid][1]
                    else:
                        old = sleeps.get(cid, frozenset())
                        if not old <= sl:
                            # Seen before with a sleep set that pruned more: explore the rest.
                            new = old & sl
                            sleeps[cid] = new
                            nxt[cid] = [blob, new]
                            order.append(cid)
            frontier = [(cid, nxt[cid][0], nxt[cid][1]) for cid in order]
            depth += 1
            res.depth = depth
            if progress:
                progress(depth, len(parents), len(frontier))
            if len(parents) > setup.max_states or (setup.max_seconds and time.perf_counter() - t0 > setup.max_seconds):
                res.complete = False
                break
            if first_only and kinds:
                res.complete = False
                break
    finally:
        if pool is not None:
            pool.terminate()
    res.states = len(parents)
    res.seconds = time.perf_counter() - t0
    res.violations = sorted(kinds.values(), key=lambda f: (len(f.transitions), f.name))
    for f in res.violations:
        replay(ctx, w0, f)
    return res


def _path(parents: list, sid: int) -> list:
    out = []
    while sid > 0:
        p, t = parents[sid]
        out.append(t)
        sid = p
    return out[::-1]


# -- replaying a trace with full detail -------------------------------------------------------------------------

def _rcu_desc(k: Kernel) -> list[str]:
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


def describe_transition(ctx: Context, t: tuple) -> str:
    if t[0] == "start":
        return f"CPU{t[1]} starts {_op_label(ctx, t[2])}"
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
    k.trace_hook = lambda ev: events.append((ev, k._touch is not None))
    rows: list[dict] = []
    focus = f.page

    def row_for(item) -> dict:
        ev, touched = item
        r = {"kind": "step", "cpu": ev.cpu, "context": ev.context, "func": ev.func, "label": ev.label}
        if ev.page:
            r.update(page=f"{ev.page:#x}", before=ev.before if touched else ev.after, after=ev.after)
        return r

    for t in f.transitions:
        events.clear()
        err = None
        LAST_STEP[0] = None
        head = None
        if t[0] != "step":
            head = {"kind": t[0], "what": describe_transition(ctx, t)}
            if t[0] != "gp":
                head["cpu"] = t[1]
                head["context"] = PROCESS if t[0] == "start" else SOFTIRQ
        GP_EVENTS.clear()
        try:
            apply(ctx, w, t)
        except Exception as e:      # noqa: BLE001
            err = e
        new = ([head] if head else []) + [row_for(ev) for ev in events]
        if GP_EVENTS:
            new.append({"kind": "gp", "what": "RCU grace period elapses (no CPU in a read-side section)"})
        if err is not None and new and LAST_STEP[0] is not None and LAST_STEP[0][1] and new[-1].get("cpu") == LAST_STEP[0][0] \
                and (new[-1].get("func"), new[-1].get("label")) == LAST_STEP[0][1][1:] and new[-1]["kind"] == "step":
            new[-1]["violation"] = str(err)     # the step ran, then a check after it failed
        elif err is not None:
            r = {"kind": "step", "violation": str(err)}
            if LAST_STEP[0] is not None:
                cpu, pos = LAST_STEP[0]
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


def parse_ops_bound(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError("--max-ops must be >= 0")
    return n


def run_in_order(setup: Setup) -> tuple[Kernel, "Finding | None"]:
    """Run a scenario once, in the plainest order, and return the kernel it leaves.

    CPU 0's operations first, then CPU 1's, ...; each runs to completion before the next
    starts, and RCU callbacks (softirq on the lowest CPU that can take one) run once
    nothing else can move.  This is one of the interleavings ``explore`` searches: the
    one ``s390emu dump save --scenario`` records.  A check that fails stops the run where
    it failed and is returned as the finding, with the state as it was then.

    >>> k, found = run_in_order(Setup(version="v64", script=((("free_tlb", 0),), (("free", 1),))))
    >>> found is None, k.rcu, k.owner
    (True, [], {})
    """
    ctx, w = build(setup)
    order = {"step": 0, "start": 1, "rcu": 2, "gp": 3}
    while True:
        ts = transitions(ctx, w)
        if not ts:
            return w.k, _deadlock(ctx, w)
        t = min(ts, key=lambda t: (order[t[0]], t[1] if len(t) > 1 else 0))
        try:
            apply(ctx, w, t)
        except Exception as e:          # a Violation, or a kernel error the checks name
            return w.k, _violation_finding(e)
