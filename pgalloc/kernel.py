"""The kernel state object: one machine, its CPUs, RCU, mmu_gather batches and locks.

Everything Linux keeps in memory is in ``self.mem`` (``struct page``, ``mm_struct``,
page tables, lock words).  What is not memory on a real machine lives here as small,
explicit, copyable Python state:

* each CPU's running kernel functions (a process-context stack and a softirq stack,
  each a list of ``Path`` objects with their program counter and locals), and how many
  times each context disabled bottom halves;
* the RCU callback queue: ``(rcu_head address, callback name, args, ready)``;
  ``call_rcu`` still writes ``next`` and ``func`` into the ``rcu_head`` bytes;
* mmu_gather batches: ``gid -> (mm, tagged tables, nomem)``;
* spinlock holders ``lock address -> (cpu, context, variant)`` (the lock word itself is
  in memory: 0 free, else ``~cpu``) and lockdep-style usage bits per lock;
* ``owner``: which mm each allocated table was handed to (like ``page_owner``), used by
  the checks and the page listing, never by the allocator;
* with ``walkers=True``, each CPU's TLB (``tlbs``): the table-naming entries it holds
  (``dat.tlb``), filled after every step with everything its loaded ASCEs make formable
  (an entry *may* be formed at any instant, so the filled TLB holds every entry any run
  could hold) and purged by the flushes of ``pgalloc.tlbflush``.

Long module: one class, whose methods are the primitives every step calls (the
fragment byte and atomics, list operations, frames, spinlocks, RCU) and the one
interface to its state (``copy``, ``key``, ``snapshot``, ``restore``); split, the state
of one object would be read and written from several modules.

``copy()`` clones all of it, ``key()`` hashes it (memory digest included), ``start``,
``runnable`` and ``step`` move one CPU by one atomic step, ``run`` runs a path straight
through.

>>> k = Kernel("v64", mem_size=8 << 20)
>>> from pgalloc import mm as MM
>>> mm = MM.mm_alloc(k)
>>> t = k.page_table_alloc(mm)
>>> hex(k.byte(k.mem_map.virt_to_page(t)))
'0x1'
"""

from __future__ import annotations

import zlib
from typing import Callable, NamedTuple

from dat.tlb import formable
from s390emu import structs as S
from s390emu.frames import FrameError
from s390emu.lists import ListCorruption
from s390emu import lists
from s390emu.machine import Machine

from . import checks as _checks
from . import inflight
from .cpu import PROCESS, SOFTIRQ, Cpu
from .crst import PG_COMPOUND_ORDER_FLAGS
from .errors import MisuseError, Violation
from .pgtable import LRU
from .registry import OSRELEASES, PGALLOC_KEY, VERSIONS, osrelease  # noqa: F401 - OSRELEASES: today's importers
from .steps import BLOCKED, DONE, Call, Path
from .tlb import CALLBACKS as TLB_CALLBACKS, tlb_finish_mmu
from .tlbflush import CR_PRIMARY, CR_SECONDARY

_REFCOUNT = S.page.fields["_refcount"]
MM_LOCK = S.mm_struct.fields["context.lock"]
MM_PGTABLE_LIST = S.mm_struct.fields["context.pgtable_list"]
FUNC_TEXT = 0x0010_0000      # fake kernel text: rcu_head.func = FUNC_TEXT + crc(name)

def func_addr(name: str) -> int:
    """The (fake) kernel text address ``call_rcu`` stores for callback ``name``."""
    return FUNC_TEXT + (zlib.crc32(name.encode()) & 0xFFFF0)


class TraceEvent(NamedTuple):
    """One executed step: who ran it, where, and the fragment byte it changed."""

    cpu: int
    context: str
    func: str
    label: str
    page: int
    before: int
    after: int
    purges: tuple = ()      # the TLB purges the step made (walkers on), in words
    tlb: tuple = ()         # (cpu, entries added, entries removed) per CPU whose TLB the step changed


def _tlb_diff(before: list | None, after: list) -> tuple:
    """``(cpu, added, removed)`` (entries sorted) for each CPU whose TLB changed."""
    if before is None:
        return ()
    return tuple((c, tuple(sorted(a - b)), tuple(sorted(b - a))) for c, (b, a) in enumerate(zip(before, after)) if a != b)


class KernelKey(NamedTuple):
    """``Kernel.key()``: the whole state, hashable, in named parts."""

    memory: bytes           # the storage's digest
    cpus: tuple             # each CPU's state: running functions, bottom-half counts
    rcu: tuple              # the RCU queue, sorted (a multiset)
    rcu_readers: int
    gathers: tuple          # open mmu_gathers, sorted
    locks: tuple            # held spinlocks and their holders, sorted
    lock_usage: tuple       # lockdep-style usage bits per lock, sorted
    owner: tuple            # which mm each allocated table was handed to, sorted
    tlbs: tuple             # each CPU's TLB entries, sorted (empty without walkers)


class Kernel:
    """A Linux s390 kernel's page-table allocation state over one emulated machine.

    ``version`` is one of ``pgalloc.versions.VERSIONS`` (``v515``, ``v64``, ``seed``,
    ``v66``, ``v67``).  ``checks=True`` runs the invariants after every step and raises
    ``Violation`` on the first one broken.  ``walkers=True`` models the readers in flight:
    each CPU's TLB (filled after every step, purged by the flush primitives), interrupts
    off, and the callers' real flush and IPI steps (``pgalloc.callers``).
    """

    def __init__(self, version: str = "v64", *, mem_size: int = 16 << 20, ncpus: int = 2,
                 checks: bool = False, machine: Machine | None = None, walkers: bool = False):
        self.version = version
        self.v = VERSIONS[version]
        if machine is None:
            machine = Machine(mem_size, ncpus)
            machine.publish_vmcoreinfo({"OSRELEASE": osrelease(version), PGALLOC_KEY: version})
        else:            # over existing storage (``pgalloc.attach``): its CPUs, its VMCOREINFO
            ncpus = machine.nr_cpus
        self.machine = machine
        self._bind()
        self.cpus = [Cpu() for _ in range(ncpus)]
        self.rcu: list[tuple] = []
        self.rcu_readers = 0
        self.gathers: dict[int, tuple] = {}
        self.next_gid = 1
        self.locks: dict[int, tuple] = {}
        self.lock_usage: dict[int, int] = {}
        self.owner: dict[int, int] = {}
        self.zero_page = 0
        self.checks = checks
        self.walkers = walkers
        self.tlbs: list[frozenset] = [frozenset()] * ncpus
        self._purges: list[str] = []
        self._formable: dict[int, frozenset] = {}      # what tlb_fill found formable, by ASCE
        self._asces: tuple | None = None                # loaded_asces, read once
        self._memo: dict = {}                           # tlb_fill: asce -> (formable, tables read)
        self.trace_hook: Callable[[TraceEvent], None] | None = None
        self.warnings: list[Violation] = []
        self.cur: tuple | None = None
        self._touch: tuple | None = None
        self.tlb_batch_max = 509

    def _bind(self):
        self.mem = self.machine.mem
        self.mem_map = self.machine.mem_map
        self.frames = self.machine.frames

    # -- copy / hash ---------------------------------------------------------------------
    # The one interface anything outside uses to see or rebuild a kernel's state: what a
    # transition may change is ``snapshot()``, a kernel is rebuilt from one by ``restore``,
    # and ``key()`` names its parts.  A new attribute in ``__init__`` goes into
    # ``snapshot``/``restore`` (state) or ``restore``'s constants; a test compares the
    # attributes of a restored kernel with a built one's.

    def copy(self, machine: Machine | None = None, *, share_cpus: bool = False) -> "Kernel":
        """An independent copy of the whole state (memory, CPUs, RCU, batches, locks).

        With ``machine`` (whose storage must equal this one's) the copy runs on it instead
        of on a copy of the storage; with ``share_cpus`` it holds this kernel's ``Cpu``
        objects, which the caller must copy before it changes one (a step moves one CPU,
        so copying the call stacks of the others would be wasted)."""
        k = object.__new__(Kernel)
        k.__dict__.update(self.__dict__)
        if machine is None:
            machine = Machine(mem=self.mem.copy())
            machine.swapper_pg_dir = self.machine.swapper_pg_dir
        k.machine = machine
        k._bind()
        k.cpus = self.cpus.copy() if share_cpus else [c.copy() for c in self.cpus]
        k.rcu = self.rcu.copy()
        k.gathers = self.gathers.copy()
        k.locks = self.locks.copy()
        k.lock_usage = self.lock_usage.copy()
        k.owner = self.owner.copy()
        k.tlbs = self.tlbs.copy()
        k.warnings = self.warnings.copy()
        k._purges = []
        k._formable = {}
        k._asces = self._asces
        # The walks are valid on equal storage, as far as stores into it were recorded.
        k._memo = self._memo if hasattr(self.mem, "stored_in") else {}
        return k

    def snapshot(self) -> tuple:
        """Everything outside memory that a step may change, as one picklable tuple
        (``restore`` takes it back).  It holds the kernel's own containers: pickle it,
        or give it to ``restore`` only once.  Its last part is not state but the TLB
        fill's walks (``_walk``), kept while they still describe the tables, so that the
        kernel restored on the same bytes need not walk them again."""
        stored_in = getattr(self.mem, "stored_in", None)
        walks = {a: m for a, m in self._memo.items() if stored_in is not None and not stored_in(m[1])}
        return (self.cpus, self.rcu, self.rcu_readers, self.gathers, self.next_gid, self.locks, self.lock_usage,
                self.owner, self.zero_page, self.tlbs, walks)

    @classmethod
    def restore(cls, template: "Kernel", state: tuple, machine: Machine) -> "Kernel":
        """The kernel whose state is ``state`` (a ``snapshot()``, which it takes over),
        running on ``machine`` (whose storage holds that state's memory), with the
        version and settings of ``template``; nothing is traced or running a step."""
        k = object.__new__(cls)
        k.version, k.v, k.checks, k.tlb_batch_max = template.version, template.v, template.checks, template.tlb_batch_max
        k.walkers = template.walkers
        (k.cpus, k.rcu, k.rcu_readers, k.gathers, k.next_gid, k.locks, k.lock_usage, k.owner,
         k.zero_page, k.tlbs, k._memo) = state
        k._purges = []
        k._formable = {}
        k._asces = None
        k.machine = machine
        k._bind()
        k.trace_hook = None
        k.warnings = []
        k.cur = None
        k._touch = None
        return k

    def key(self, live: bool = False, known: dict | None = None, cpu_key=None) -> KernelKey:
        """A hashable key of the whole state (memory digest + everything else); with
        ``live``, the running functions' dead locals left out (``Path.state``).
        ``cpu_key(cpu)`` keys each CPU (default: its state); ``known`` maps ``id(cpu)``
        to the key of a ``Cpu`` object keyed before and not changed since (the
        explorer's worlds share unchanged CPUs)."""
        known = known or {}
        cpu_key = cpu_key or (lambda c: c.state(live))
        cpus = tuple(known.get(id(c)) or cpu_key(c) for c in self.cpus)
        # The RCU queue as a multiset: ready callbacks run in any order, and call_rcu
        # writes nothing that depends on the others queued.
        return KernelKey(self.mem.digest(), cpus, tuple(sorted(self.rcu)),
                         self.rcu_readers, tuple(sorted(self.gathers.items())), tuple(sorted(self.locks.items())),
                         tuple(sorted(self.lock_usage.items())), tuple(sorted(self.owner.items())),
                         tuple(tuple(sorted(t)) for t in self.tlbs))

    # -- running paths ---------------------------------------------------------------------

    def start(self, cpu: int, path: Path, context: str = PROCESS) -> None:
        """Start kernel function ``path`` on ``cpu`` (process context, or softirq)."""
        c = self.cpus[cpu]
        if context == PROCESS:
            if c.proc:
                raise MisuseError(f"CPU {cpu} is already running {c.proc[0]!r}")
            c.proc.append(path)
        else:
            if c.soft:
                raise MisuseError(f"CPU {cpu} is already in softirq {c.soft[0]!r}")
            c.soft.append(path)
        path.on_enter(self)
        if self.walkers:
            self.tlb_fill()

    def active(self, cpu: int) -> tuple[str, list[Path]]:
        """The context that runs next on ``cpu`` (a softirq interrupts process context)."""
        c = self.cpus[cpu]
        return (SOFTIRQ, c.soft) if c.soft else (PROCESS, c.proc)

    def busy(self, cpu: int) -> bool:
        c = self.cpus[cpu]
        return bool(c.proc or c.soft)

    def runnable(self, cpu: int) -> bool:
        """Whether ``cpu`` has a step to take that is not spinning on another CPU's lock."""
        ctx, st = self.active(cpu)
        if not st:
            return False
        fr = st[-1]
        if fr.blocked(self):
            return False
        if fr.is_lock_step():
            if self.mem.read_u32(fr.lock_addr()) != 0:
                holder = self.locks.get(fr.lock_addr())
                return holder is not None and holder[0] == cpu   # same CPU: a deadlock to report
        return True

    def position(self, cpu: int) -> tuple[str, str, str] | None:
        """``(context, function, label)`` of ``cpu``'s next step, or None when idle."""
        ctx, st = self.active(cpu)
        return (ctx, st[-1].FUNC, st[-1].pc) if st else None

    def step(self, cpu: int):
        """Take one atomic step on ``cpu``; returns the step's outcome (BLOCKED: nothing done)."""
        ctx, st = self.active(cpu)
        fr = st[-1]
        label = fr.pc
        self._touch = None
        self.cur = (cpu, ctx, fr)
        page0 = getattr(fr, "page", 0)
        before0 = self.byte(page0) if page0 and self.trace_hook else 0
        tlbs0 = self.tlbs.copy() if self.trace_hook and self.walkers else None
        try:
            res = fr.STEPS[label](fr, self)
        except ListCorruption as e:
            raise Violation("list_corruption", getattr(fr, "page", 0), str(e), self._where(label)) from None
        except FrameError as e:
            raise Violation("page_free", e.page, str(e), self._where(label)) from None
        finally:
            self.cur = None
        if fr._RESOLVE is not None:         # redirected edges, run-time label checks
            res = fr._RESOLVE(label, res)
        if res is BLOCKED:
            return res
        if self.walkers:
            # Before the frame updates below (which change no storage, so the fill is the
            # same) so that the trace row can say what the step formed.
            self.tlb_fill()
        if self.trace_hook:
            if self._touch:
                page, before = self._touch
            else:
                page, before = page0 or getattr(fr, "page", 0), before0
            self.trace_hook(TraceEvent(cpu, ctx, fr.FUNC, label, page, before, self.byte(page) if page else 0,
                                       tuple(self._purges), _tlb_diff(tlbs0, self.tlbs)))
            self._purges.clear()
        if isinstance(res, Call):
            fr.pc = res.ret
            st.append(res.path)
            res.path.on_enter(self)
        elif res == DONE:
            st.pop()
            fr.on_return(self)
            if st:
                st[-1].ret = fr.result
            elif ctx == PROCESS:
                self.cpus[cpu].result = fr.result
        else:
            fr.pc = res
        if self.checks:
            try:
                _checks.after_step(self, cpu, ctx, fr, label)
            except ListCorruption as e:     # a list the checks walk after the step is corrupt
                raise Violation("list_corruption", getattr(fr, "page", 0), str(e),
                                f"CPU{cpu} {ctx} {fr.FUNC}: {label}") from None
            if self.walkers:
                inflight.after_step(self, cpu, ctx, fr, label)
        return res

    def _where(self, label: str) -> str:
        if self.cur:
            cpu, ctx, fr = self.cur
            return f"CPU{cpu} {ctx} {fr.FUNC}: {label}"
        return label

    def run(self, path: Path, cpu: int = 0, context: str = PROCESS):
        """Run ``path`` on ``cpu`` straight through; return its result."""
        self.start(cpu, path, context)
        c = self.cpus[cpu]
        st = c.soft if context == SOFTIRQ else c.proc
        while st:
            if not self.runnable(cpu):
                fr = st[-1]
                raise Violation("deadlock", getattr(fr, "page", 0),
                                f"{fr.FUNC} spins on lock {fr.lock_addr():#x} held by "
                                f"{self.locks.get(fr.lock_addr())}", f"CPU{cpu} {context} {fr.FUNC}: {fr.pc}")
            self.step(cpu)
        return path.result

    # -- the allocator's entry points, run sequentially ------------------------------------

    def page_table_alloc(self, mm: int, cpu: int = 0) -> int:
        """``page_table_alloc(mm)``: a 2K (v67: 4K) page table, or 0 when out of memory."""
        return self.run(self.v.page_table_alloc(mm=mm), cpu)

    def page_table_free(self, mm: int, table: int, cpu: int = 0) -> None:
        """``page_table_free(mm, table)`` (``pte_free``)."""
        _checks.validate_free(self, mm, table, "page_table_free")
        self.run(self.v.page_table_free(mm=mm, table=table), cpu)

    def page_table_free_rcu(self, tlb: int, table: int, vmaddr: int = 0, cpu: int = 0) -> None:
        """``page_table_free_rcu(tlb, table, vmaddr)`` (``pte_free_tlb``)."""
        _checks.validate_free(self, self.gathers[tlb][0], table, "page_table_free_rcu")
        self.run(self.v.page_table_free_rcu(tlb=tlb, table=table, vmaddr=vmaddr), cpu)

    def pte_free_defer(self, mm: int, table: int, cpu: int = 0) -> None:
        """``pte_free_defer(mm, pgtable)`` (THP collapse)."""
        _checks.validate_free(self, mm, table, "pte_free_defer")
        self.run(self.v.pte_free_defer(mm=mm, table=table), cpu)

    def tlb_gather_mmu(self, mm: int, nomem: bool = False) -> int:
        """``tlb_gather_mmu(tlb, mm)``; ``nomem`` makes every batch allocation fail."""
        gid = self.next_gid
        self.next_gid += 1
        self.gathers[gid] = (mm, (), nomem)
        return gid

    def tlb_finish_mmu(self, tlb: int, cpu: int = 0) -> None:
        """``tlb_finish_mmu``: flush, and hand the batch to RCU."""
        self.run(tlb_finish_mmu(tlb=tlb), cpu)

    # -- bytes: the helpers every step uses ------------------------------------------------

    def byte(self, page: int) -> int:
        """The fragment byte: ``atomic_read(&page->_refcount) >> 24``."""
        return self.mem.read_u32(page + _REFCOUNT) >> 24

    def atomic_read(self, page: int) -> int:
        self._access(page, "atomic_read")
        return self.mem_map.refcount(page)

    def atomic_xor_bits(self, page: int, bits: int) -> int:
        """s390 ``atomic_xor_bits(&page->_refcount, bits)``: returns the new word."""
        self._access(page, "atomic_xor_bits")
        old = self.mem_map.refcount(page)
        if self._touch is None:
            self._touch = (page, old >> 24)
        if self.checks:
            _checks.before_xor(self, page, old, bits)
        return self.mem_map.atomic_xor(page, bits)

    def _access(self, page: int, what: str) -> None:
        if self.checks and self.mem_map.has_type(page, S.PG_buddy):
            raise Violation("use_after_free", page, f"{what} on page {page:#x}, which is free",
                            self._where(self.cur[2].pc if self.cur else what))

    def list_add(self, page: int, head: int, tail: bool = False) -> None:
        self._access(page, "list_add")
        if self.checks:
            _checks.before_list_op(self, page, "list_add_tail" if tail else "list_add")
        (lists.list_add_tail if tail else lists.list_add)(self.mem, page + LRU, head)

    def list_del(self, page: int, init: bool = False) -> None:
        self._access(page, "list_del")
        if self.checks:
            _checks.before_list_op(self, page, "list_del_init" if init else "list_del")
        (lists.list_del_init if init else lists.list_del)(self.mem, page + LRU)

    def list_first(self, head: int) -> int:
        """``list_first_entry(head, struct page, lru)``, or 0 for an empty list."""
        first = self.mem.read_u64(head)
        return 0 if first == head else first - LRU

    def warn(self, name: str, page: int, message: str) -> None:
        """``WARN_ON_ONCE``: a Violation when checks are on, else remembered and ignored."""
        v = Violation(name, page, message, self._where(self.cur[2].pc if self.cur else name))
        if self.checks:
            raise v
        self.warnings.append(v)

    # -- frames ---------------------------------------------------------------------------

    def alloc_page(self, order: int = 0) -> int:
        """``alloc_pages(GFP_KERNEL, order)``: the frame address, or 0 when out of memory."""
        try:
            return self.frames.alloc_pages(order)
        except FrameError:
            return 0

    def free_page(self, page: int, order: int = 0) -> None:
        """``pgtable_pte_page_dtor`` + ``__free_pages(page, order)``."""
        if self.checks:
            _checks.before_page_free(self, page, order)
            if self.walkers and (order or self.mem_map.refcount(page) & 0xFFFFFF == 1):
                base = self.mem_map.page_address(page)
                inflight.at_release(self, base, base + (0x1000 << order), "freed to the page allocator")
        self.mem_map.set_page_type(page, S.PAGE_TYPE_NONE)
        if self.mem_map.test_flag(page, S.PG_head):
            # free_tail_page_prepare: the folio order in the first tail page goes with it.
            self.mem.write_u64(page + S.page.size + PG_COMPOUND_ORDER_FLAGS, 0)
            self.mem_map.set_flag(page, S.PG_head, False)
        self.frames.put_pages(page, order)

    # -- spinlocks (lock word in memory) -----------------------------------------------------

    def spin_lock(self, addr: int, bh: bool) -> bool:
        """``spin_lock_bh`` / ``spin_lock``: False (BLOCKED) while another CPU holds it."""
        cpu, ctx, fr = self.cur
        word = self.mem.read_u32(addr)
        if word != 0:
            holder = self.locks.get(addr)
            if holder is not None and holder[0] == cpu:
                raise Violation("deadlock", getattr(fr, "page", 0),
                                f"CPU{cpu} {ctx} spins on lock {addr:#x} that its own {holder[1]} context "
                                f"holds ({holder[2]}): self-deadlock", self._where(fr.pc))
            if self.checks and holder is None:
                self._lock_of_freed(addr)
            return False
        if self.checks:
            self._lock_of_freed(addr)
        self.mem.write_u32(addr, ~cpu & 0xFFFFFFFF)
        self.locks[addr] = (cpu, ctx, "spin_lock_bh" if bh else "spin_lock")
        c = self.cpus[cpu]
        if bh:
            if ctx == PROCESS:
                c.bh_proc += 1
            else:
                c.bh_soft += 1
        usage = self.lock_usage.get(addr, 0) | (1 if ctx == SOFTIRQ else 0) | (2 if ctx == PROCESS and not bh else 0)
        self.lock_usage[addr] = usage
        if self.checks and usage == 3:
            raise Violation("lock_context", 0, f"lock {addr:#x} is taken in softirq and with plain spin_lock "
                            "(bottom halves enabled) in process context", self._where(fr.pc))
        return True

    def _lock_of_freed(self, addr: int) -> None:
        """A lock in a freed mm, or (the PTE lock lives in ``struct page``) of a free page."""
        if self.mem_map.base <= addr < self.mem_map.base + self.mem_map.nr_pages * S.page.size:
            inflight.ptl_of_freed_page(self, addr)
        else:
            _checks.lock_of_freed_mm(self, addr)

    def spin_unlock(self, addr: int, bh: bool) -> None:
        cpu, ctx, fr = self.cur
        holder = self.locks.pop(addr, None)
        if holder is None or holder[0] != cpu:
            raise Violation("locking", 0, f"CPU{cpu} unlocks {addr:#x} held by {holder}", self._where(fr.pc))
        self.mem.write_u32(addr, 0)
        if bh:
            c = self.cpus[cpu]
            if ctx == PROCESS:
                c.bh_proc -= 1
            else:
                c.bh_soft -= 1

    def holds(self, addr: int) -> bool:
        """Whether the CPU running the current step holds lock ``addr``."""
        h = self.locks.get(addr)
        return h is not None and self.cur is not None and h[0] == self.cur[0]

    # -- TLBs (walkers=True) ------------------------------------------------------------------

    def loaded_asces(self, cpu: int) -> frozenset[int]:
        """The user ASCEs ``cpu`` may form TLB entries through: control registers 1 and 7,
        but the kernel's and ``s390_invalid_asce`` (0).  Read once per kernel object: a
        step that loads a control register calls ``reload_asces`` (``pgalloc.tlbflush``)."""
        if self._asces is None:
            m = self.machine
            kernel = m.kernel_asce if m.swapper_pg_dir else None
            self._asces = tuple(frozenset(a for a in (m.control_register(c, CR_PRIMARY), m.control_register(c, CR_SECONDARY))
                                          if a and a != kernel) for c in range(len(self.cpus)))
        return self._asces[cpu]

    def reload_asces(self) -> None:
        """Forget the control registers read (one was loaded)."""
        self._asces = None

    def tlb_fill(self) -> None:
        """Every CPU forms every entry its loaded ASCEs make formable now (``dat.tlb``)."""
        made = self._formable = {}
        for cpu in range(len(self.cpus)):
            for asce in self.loaded_asces(cpu):
                f = made.get(asce)
                if f is None:
                    f = made[asce] = self._walk(asce)
                if not f <= self.tlbs[cpu]:
                    self.tlbs[cpu] = self.tlbs[cpu] | f
        if hasattr(self.mem, "forget_stores"):
            self.mem.forget_stores()

    def prime_tlb_walks(self) -> None:
        """Walk every loaded ASCE not walked yet, so that the copies of this kernel (each
        on storage equal to its own) reuse the walks while their steps store nothing into
        the tables (the explorer calls it on a world before it expands it; a frozen world
        usually brings its walks along: ``snapshot``).  The TLBs are untouched."""
        for cpu in range(len(self.cpus)):
            for asce in self.loaded_asces(cpu):
                if asce not in self._memo:
                    self._walk(asce)

    def _walk(self, asce: int) -> frozenset:
        """``dat.tlb.formable`` of ``asce``, reused while none of the tables it read was
        stored into: storage that records the blocks stores touch (the explorer's,
        ``stored_in``) says so; other storage is walked every time."""
        memo = self._memo.get(asce)
        stored_in = getattr(self.mem, "stored_in", None)
        if memo is None or stored_in is None or stored_in(memo[1]):
            read: list = []
            memo = (formable(self.mem, asce, read=read), tuple(read))
            self._memo = {**self._memo, asce: memo}     # replaced: copies share it
        # What the walk read, reused or not, is what the fill (and the checks reading
        # its entries) depends on: the explorer's footprints count it (``note_reads``).
        note = getattr(self.mem, "note_reads", None)
        if note is not None:
            note(memo[1])
        return memo[0]

    def note_purge(self, what: str) -> None:
        """Remember a purge for the step's trace row (only while traced)."""
        if self.trace_hook:
            self._purges.append(what)

    # -- RCU --------------------------------------------------------------------------------

    def call_rcu(self, head: int, func: str, args: tuple = ()) -> None:
        """``call_rcu(head, func)``: writes ``head->next``/``head->func``, queues the callback."""
        if head:
            if self.checks:
                _checks.before_call_rcu(self, head, func)
            self.mem.write_u64(head, 0)
            self.mem.write_u64(head + 8, func_addr(func))
        self.rcu.append((head, func, args, False))

    def in_rcu_reader(self) -> bool:
        """Whether some CPU holds off grace periods: in softirq, bottom halves or
        interrupts off (RCU's sched flavour, which mmu_gather relies on), or inside
        ``rcu_read_lock``."""
        return self.rcu_readers > 0 or any(c.soft or c.bh_proc or c.irq for c in self.cpus)

    def rcu_grace_period(self) -> bool:
        """Let a grace period elapse: every queued callback becomes ready.

        Refused (returns False) while some CPU is in a read-side critical section
        (bottom halves disabled, in softirq, or an explicit ``rcu_read_lock`` walker).
        """
        if self.in_rcu_reader():
            return False
        self.rcu = [(h, f, a, True) for h, f, a, _ in self.rcu]
        return True

    def ready_callbacks(self) -> list[int]:
        """Indices in ``self.rcu`` of callbacks whose grace period has elapsed."""
        return [i for i, e in enumerate(self.rcu) if e[3]]

    def can_softirq(self, cpu: int) -> bool:
        """Whether a softirq may start on ``cpu`` now (none running, bottom halves enabled)."""
        c = self.cpus[cpu]
        return not c.soft and c.bh_proc == 0 and not c.irq

    def run_rcu_callback(self, cpu: int, i: int) -> Path:
        """Start ready callback ``i`` on ``cpu`` in softirq context (step it with ``step``)."""
        head, func, args, ready = self.rcu[i]
        if not ready:
            raise MisuseError(f"callback {func} has not waited for its grace period")
        if not self.can_softirq(cpu):
            raise MisuseError(f"CPU {cpu} cannot run softirqs now")
        del self.rcu[i]
        path = self.callback_path(head, func, args)
        self.start(cpu, path, SOFTIRQ)
        return path

    def callback_path(self, head: int, func: str, args: tuple) -> Path:
        """The path RCU callback ``func`` runs (the version's own, or mmu_gather's)."""
        maker = self.v.CALLBACKS.get(func) or TLB_CALLBACKS[func]
        return maker(head, args)

    def rcu_barrier(self, cpu: int = 0) -> None:
        """Grace periods and callbacks (softirq on ``cpu``) until the queue is empty."""
        while self.rcu:
            if not self.rcu_grace_period():
                raise MisuseError("rcu_barrier inside an RCU read-side critical section")
            while self.ready_callbacks():
                self.run_rcu_callback(cpu, self.ready_callbacks()[0])
                st = self.cpus[cpu].soft
                while st:
                    if not self.runnable(cpu):
                        raise Violation("deadlock", 0, f"softirq on CPU{cpu} cannot progress: {st[-1]!r}", "rcu_barrier")
                    self.step(cpu)

    def synchronize_rcu(self) -> None:
        if not self.rcu_grace_period():
            raise MisuseError("synchronize_rcu inside an RCU read-side critical section")

    def rcu_read_lock(self) -> None:
        self.rcu_readers += 1

    def rcu_read_unlock(self) -> None:
        self.rcu_readers -= 1
