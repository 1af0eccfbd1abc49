"""What to explore and the world it starts from: ``Setup`` (the search's bounds and
switches), ``Context`` (what every world of one search shares), ``build`` (the setup's
kernel: one mm whose tables each fill a segment-table slot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s390emu.machine import Machine

from .. import mm as MM
from ..checks import unheld_frames
from ..errors import PgallocError
from ..pgtable_bits import _SEGMENT_ENTRY_EMPTY
from ..kernel import Kernel
from ..registry import VERSIONS
from ..tlbflush import attach
from .operations import DEFAULT_VOCABULARY
from .world import ExploreMemory, World, base_hashes

MIB = 1 << 20
DEFAULT_MEM = 0x140000          # 1.25 MiB: mem_map + kernel + ~290 free frames


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
    walkers: bool = True                # the readers in flight: TLBs, GUP-fast, pte_offset_map (--no-walkers: off)
    name: str = ""

    @property
    def symmetric(self) -> bool:
        """CPU symmetry reduction: generated mode only (scenario CPUs differ), and not
        together with sleep sets (whose entries name CPUs)."""
        return self.symmetry and self.script is None and not self.sleep_sets

    def describe(self) -> str:
        """The mode, as reports name it."""
        if self.script is not None:
            return f"scenario {self.name or '(inline)'}"
        return f"generated, --max-ops {self.max_ops}"


class Context:
    """What every world of one exploration shares: the setup's kernel (the template of
    every world's, ``Kernel.restore``), its memory and the names of its tables."""

    def __init__(self, setup: Setup, k0: Kernel, mm: int, tables: list[int], slots: list[int]):
        self.setup = setup
        self.mm = mm
        self.tables = tables            # setup tables, by index
        self.slots = slots              # segment-table entry addresses, one per MiB slot
        self.frames = sorted({t & ~0xFFF for t in tables})
        self.unheld = unheld_frames(k0, [mm])     # the frames in use at the setup that no table or mm holds
        self.size = k0.mem.size
        self.base_bytes = np.array(k0.mem.data, copy=True)
        self.hashes = base_hashes(self.base_bytes)
        self.template = k0              # the version and settings every world's kernel has
        self.swapper = k0.machine.swapper_pg_dir
        self.scratch = None             # this process's Scratch, made on first use

    # -- naming, for traces --
    def table_name(self, t: int) -> str:
        """How traces name table ``t``: ``T<index>(address)`` for a setup table."""
        if t in self.tables:
            i = self.tables.index(t)
            return f"T{i}({t:#x})"
        return f"{t:#x}"


class SetupViolation(PgallocError):
    """A check failed, or the kernel raised, while ``build`` made the setup (a patch whose
    bug fires in ``page_table_alloc`` or ``page_table_free``): ``error``, the kernel as it
    was then, and its trace events up to it (``(TraceEvent, touched)`` each)."""

    def __init__(self, error: BaseException, kernel: Kernel, events: list):
        super().__init__(str(error))
        self.error, self.kernel, self.events = error, kernel, events
        self.address = getattr(error, "address", None)


def build(setup: Setup) -> tuple[Context, World]:
    """The initial world: one mm with ``setup.pages`` page-table pages, both halves in use,
    each table installed in a segment-table entry (1 MiB per table).  ``SetupViolation``
    when a check fails on the way."""
    if setup.version not in VERSIONS:
        raise ValueError(f"unknown version {setup.version!r} (one of {', '.join(VERSIONS)})")
    k = Kernel(setup.version, mem_size=DEFAULT_MEM, ncpus=setup.cpus, checks=True, walkers=setup.walkers)
    events: list = []
    # A step that did not XOR reports the byte of its function's page unchanged (as replay).
    k.trace_hook = lambda ev: events.append((ev, k._touch is not None))
    try:
        mm = MM.mm_alloc(k, pgste=setup.pgste)
        if setup.walkers:           # every CPU runs a thread of the mm: its ASCE in CR7
            for cpu in range(setup.cpus):
                attach(k, cpu, mm)
        ntables = 2 * setup.pages
        MM.map_range(k, mm, 0, ntables * MIB)
        st = MM.segment_table(k, mm, 0)
        slots = [st + 8 * i for i in range(ntables + 1)]       # one spare slot for alloc
        tables = [k.mem.read_u64(s) & ~0x7FF for s in slots[:ntables]]
        for i in setup.free_halves:
            k.mem.write_u64(slots[i], _SEGMENT_ENTRY_EMPTY)
            k.page_table_free(mm, tables[i])
        for _ in range(setup.lazy_refs):
            MM.mmgrab(k, mm)
        k.rcu_barrier()
    except Exception as e:          # noqa: BLE001 - every kernel exception is a finding
        raise SetupViolation(e, k, events) from e
    finally:
        k.trace_hook = None
    # Re-seat the machine on storage that keys itself as a difference to this one.
    ctx = Context(setup, k, mm, tables, slots)
    mem = ExploreMemory(k.mem.size, _data=np.array(k.mem.data, copy=True), base=ctx.base_bytes, hashes=ctx.hashes)
    m = Machine(mem=mem)
    m.swapper_pg_dir = k.machine.swapper_pg_dir
    script = tuple(0 for _ in range(setup.cpus)) if setup.script is not None else ()
    return ctx, World(k.copy(m), (0, 0, setup.lazy_refs, script))


def parse_ops_bound(text: str) -> int:
    """``--max-ops``'s value: a count of operations, at least 0."""
    n = int(text)
    if n < 0:
        raise ValueError("--max-ops must be >= 0")
    return n
