"""A pytest plugin for a kernel developer's own DAT-after-free tests (issue 13 point 7).

Registered as the ``pytest11`` entry point ``s390emu`` (pyproject.toml), so an installed
s390emu gives every pytest run these; without the entry point, ``-p pgalloc.testing``
loads it.  A test file then needs nothing but the fixtures and the helpers below
(``examples/test_pte_free_defer.py``):

* fixtures: ``s390_version`` (the version's name: the ``@pytest.mark.s390_version(V)``
  marker, else ``--s390-version V``, else ``v66``; ``V`` is a built-in name or a version
  file), ``s390_kernel`` (a ``Kernel`` with ``checks=True, walkers=True``, 2 CPUs, 8 MiB),
  ``s390_mm`` (an mm, every CPU attached, ``[0, 4 MiB)`` mapped: four page tables) and
  ``s390_new_mm`` (a factory making more);
* assertions: ``assert_nothing_freed_reachable``, ``assert_no_stale_tlb``,
  ``assert_no_walker_on_freed`` and ``assert_dat_safe`` (all three), each raising one
  ``AssertionError`` that names the table, the CPU and the entry of every problem;
* the kernel's real paths in a line each: ``run_on`` (a path run through on a CPU),
  ``step`` and ``finish`` (a CPU's running paths stepped), ``start_walker`` (a lockless
  walker started and stepped), ``retract_table`` (khugepaged's ``retract_page_tables``),
  ``free_pgtables_range`` (``free_pgtables``), ``pte_free_table`` (``pte_free`` after
  ``pmdp_collapse_flush``), ``alloc_table`` (``__pte_alloc``), all from ``pgalloc.callers``.

With ``checks=True`` the kernel raises ``pgalloc.Violation`` at the step that breaks an
invariant (``walker_use_after_free``, ``tlb_stale``, ...): ``pytest.raises(Violation)``
is how a test says a patch is caught.  The assertions read the state between steps, so
they also judge a state a test built by hand or a kernel run without checks.
"""

from __future__ import annotations

import os

import pytest

from dat.tlb import describe
from s390emu import structs as S

from . import mm as MM
from .callers import CALLERS, collapse_op, free_pgtables_op, pte_alloc_op, pte_free_op
from .checks import live_mms, reachability
from .errors import VersionError
from .kernel import Kernel
from .pgtable import FreePath
from .pgtable_bits import _SEGMENT_ENTRY_INVALID, _SEGMENT_ENTRY_LARGE, _SEGMENT_ENTRY_ORIGIN
from .registry import load_version
from .steps import BLOCKED, Path
from .tlbflush import attach
from .walkers import WALKERS, gup_fast

DEFAULT_VERSION = "v66"
MEM_SIZE = 8 << 20
NCPUS = 2
MIB = 1 << 20
_ASCE = S.mm_struct.fields["context.asce"]


class Stuck(AssertionError):
    """A CPU that was asked to run on cannot: it spins on a lock another CPU holds, or
    waits for an IPI that a CPU with interrupts off does not take."""


# -- the plugin ----------------------------------------------------------------------------------

def pytest_addoption(parser) -> None:
    """``--s390-version``: the version the fixtures' kernel runs when no marker says."""
    parser.getgroup("s390emu").addoption(
        "--s390-version", default=DEFAULT_VERSION, metavar="VERSION",
        help=f"pgalloc version (a built-in name or a version file) for s390_kernel (default {DEFAULT_VERSION})")


def pytest_configure(config) -> None:
    """Register the marker, and refuse a bad ``--s390-version`` before any test runs
    (one line, pytest's usage-error exit code 4)."""
    config.addinivalue_line("markers", "s390_version(version): the pgalloc version (name or version file) "
                            "s390_kernel runs")
    spec = config.getoption("s390_version", DEFAULT_VERSION)
    if spec != DEFAULT_VERSION:
        try:
            load_version(_resolve(spec, [config.rootpath]))
        except VersionError as e:
            raise pytest.UsageError(f"--s390-version: {e}") from None


def _resolve(spec: str, bases) -> str:
    """A relative version file found from the working directory, else from ``bases``
    (the rootdir, the test file's directory); a name is returned as it is."""
    if not spec.endswith(".py") or os.path.isabs(spec) or os.path.exists(spec):
        return spec
    for base in bases:
        candidate = os.path.join(str(base), spec)
        if os.path.exists(candidate):
            return candidate
    return spec


@pytest.fixture
def s390_version(request) -> str:
    """The name of the version under test: the ``s390_version`` marker's, else the
    ``--s390-version`` option's, else ``v66`` (a version file is loaded and registered)."""
    marker = request.node.get_closest_marker("s390_version")
    spec = marker.args[0] if marker else request.config.getoption("s390_version", DEFAULT_VERSION)
    try:
        return load_version(_resolve(spec, [request.config.rootpath, request.path.parent]))
    except VersionError as e:
        error = str(e)
    pytest.fail(f"s390_version: {error}", pytrace=False)      # outside the handler: one line, no chain


@pytest.fixture
def s390_kernel(s390_version) -> Kernel:
    """A kernel of the version under test, with every invariant checked after every step
    and the readers in flight modelled (TLBs, walkers): 2 CPUs, 8 MiB."""
    return new_kernel(s390_version)


@pytest.fixture
def s390_mm(s390_kernel) -> int:
    """An mm with its tables, every CPU attached, ``[0, 4 MiB)`` mapped (four page tables,
    two 4K frames of two 2K halves before v6.7)."""
    return new_mm(s390_kernel)


@pytest.fixture
def s390_new_mm(s390_kernel):
    """A factory: ``s390_new_mm(start=0, end=4 MiB, cpus=None)`` makes one more mm of
    ``s390_kernel`` (``cpus``: the CPUs to attach, default all)."""
    return lambda start=0, end=4 * MIB, cpus=None: new_mm(s390_kernel, start, end, cpus)


def new_kernel(version: str = DEFAULT_VERSION, *, checks: bool = True) -> Kernel:
    """What ``s390_kernel`` is: ``Kernel(version, checks=checks, walkers=True)``, 2 CPUs, 8 MiB."""
    return Kernel(version, mem_size=MEM_SIZE, ncpus=NCPUS, checks=checks, walkers=True)


def new_mm(k: Kernel, start: int = 0, end: int = 4 * MIB, cpus=None) -> int:
    """What ``s390_mm`` is: ``mm_alloc``, ``attach`` of each CPU in ``cpus`` (default all),
    ``map_range(start, end)``; the TLBs then hold all the mapping makes formable."""
    mm = MM.mm_alloc(k)
    for cpu in range(len(k.cpus)) if cpus is None else cpus:
        attach(k, cpu, mm)
    MM.map_range(k, mm, start, end)
    k.tlb_fill()            # map_range's last pmd_populate is a plain store after its last step
    return mm


# -- running the kernel's paths --------------------------------------------------------------

def _position(k: Kernel, cpu: int) -> str:
    ctx, st = k.active(cpu)
    if not st:
        return f"CPU{cpu} idle"
    fr = st[-1]
    where = f"CPU{cpu} {ctx} {fr.FUNC}: {fr.pc}"
    if fr.is_lock_step() and k.mem.read_u32(fr.lock_addr()):
        holder = k.locks.get(fr.lock_addr())
        where += f" (lock {fr.lock_addr():#x} held by CPU{holder[0]})" if holder else ""
    return where


def step(k: Kernel, cpu: int, n: int = 1) -> str | None:
    """Take ``n`` steps on ``cpu`` (fewer if it goes idle); the label of its next step, or
    None when idle.  Raises ``Stuck`` when the CPU cannot take a step it is asked for."""
    for _ in range(n):
        if not k.busy(cpu):
            break
        if not k.runnable(cpu) or k.step(cpu) is BLOCKED:
            raise Stuck(f"{_position(k, cpu)} cannot progress")
    pos = k.position(cpu)
    return pos[2] if pos else None


def finish(k: Kernel, cpu: int) -> None:
    """Step ``cpu`` until it is idle (its softirq, then its process context)."""
    while k.busy(cpu):
        step(k, cpu)


def run_on(k: Kernel, cpu: int, path: Path):
    """Start ``path`` on ``cpu`` (process context) and run it through; its result.
    Other CPUs stay where they are: what they hold (locks, interrupts off, RCU readers)
    is what ``path`` meets."""
    k.start(cpu, path)
    finish(k, cpu)
    return path.result


def table_at(k: Kernel, mm: int, vaddr: int) -> tuple[int, int]:
    """``(ste, table)``: the segment-table entry covering ``vaddr`` in ``mm`` and the page
    table it designates.  AssertionError when there is none."""
    st = MM.segment_table(k, mm, vaddr)
    ste = st + 8 * ((vaddr >> 20) & 0x7FF) if st else 0
    e = k.mem.read_u64(ste) if ste else _SEGMENT_ENTRY_INVALID
    if e & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_LARGE):
        raise AssertionError(f"mm {mm:#x} has no page table at {vaddr:#x}"
                             + (f" (STE at {ste:#x} is {e:#x})" if ste else " (no segment table)"))
    return ste, e & _SEGMENT_ENTRY_ORIGIN


def retract_table(k: Kernel, mm: int, vaddr: int, cpu: int = 0) -> int:
    """khugepaged's ``retract_page_tables`` of the page table at ``vaddr``
    (``callers.collapse_op``: since v6.6 under the PTE lock, ``pmdp_collapse_flush``, then
    ``pte_free_defer``) run through on ``cpu``; the table."""
    ste, table = table_at(k, mm, vaddr)
    run_on(k, cpu, collapse_op(mm=mm, table=table, ste=ste))
    return table


def pte_free_table(k: Kernel, mm: int, vaddr: int, cpu: int = 0) -> int:
    """``pmdp_collapse_flush``, ``tlb_remove_table_sync_one`` (the IPI) and ``pte_free`` of
    the page table at ``vaddr`` (``callers.pte_free_op``, ≤6.5's collapse) on ``cpu``; the table."""
    ste, table = table_at(k, mm, vaddr)
    run_on(k, cpu, pte_free_op(mm=mm, table=table, ste=ste))
    return table


def free_pgtables_range(k: Kernel, mm: int, start: int, end: int, cpu: int = 0) -> list[int]:
    """``free_pgtables`` of every page table in ``[start, end)`` (whole MiBs), one
    ``callers.free_pgtables_op`` each (gather, zap, ``pmd_clear``, ``pte_free_tlb``,
    ``tlb_finish_mmu``) on ``cpu``; the tables, in address order."""
    out = []
    for va in range(start & ~(MIB - 1), end, MIB):
        if va < start or va + MIB > end:
            continue
        try:
            ste, table = table_at(k, mm, va)
        except AssertionError:
            continue                    # nothing mapped there: free_pgtables skips it too
        run_on(k, cpu, free_pgtables_op(mm=mm, table=table, ste=ste, nomem=0))
        out.append(table)
    return out


def alloc_table(k: Kernel, mm: int, vaddr: int, cpu: int = 0) -> int:
    """``__pte_alloc`` of the page table for ``vaddr`` (``callers.pte_alloc_op``:
    ``page_table_alloc``, ``pmd_populate``) on ``cpu``, the upper tables made as needed;
    the table (0: out of memory)."""
    st = MM.segment_table(k, mm, vaddr, alloc=True)
    ste = st + 8 * ((vaddr >> 20) & 0x7FF)
    if not k.mem.read_u64(ste) & _SEGMENT_ENTRY_INVALID:
        raise AssertionError(f"mm {mm:#x} already has a page table at {vaddr:#x} (STE at {ste:#x})")
    run_on(k, cpu, pte_alloc_op(mm=mm, ste=ste))
    e = k.mem.read_u64(ste)
    return 0 if e & _SEGMENT_ENTRY_INVALID else e & _SEGMENT_ENTRY_ORIGIN


def start_walker(k: Kernel, cpu: int, mm: int, addr: int, walker=gup_fast, steps: int = 0) -> Path:
    """Start lockless walker ``walker`` (``pgalloc.walkers.gup_fast`` or
    ``pte_offset_map_lock``) of ``addr`` in ``mm`` on ``cpu`` and take ``steps`` steps;
    the walker (its ``pt`` is the page table it loaded, 0 before and after)."""
    w = walker(mm=mm, addr=addr)
    k.start(cpu, w)
    step(k, cpu, steps)
    return w


# -- assertions -------------------------------------------------------------------------------------

def _fail(what: str, problems: list[str]) -> None:
    if problems:
        raise AssertionError(f"{what}: {len(problems)} found\n  " + "\n  ".join(problems))


def _mm_of(k: Kernel, asce: int) -> int:
    """The live mm whose ASCE is ``asce`` (0: none)."""
    return next((mm for mm in live_mms(k) if k.mem.read_u64(mm + _ASCE) == asce), 0)


def _cpus_with(k: Kernel, asce: int) -> str:
    cpus = [f"CPU{c}" for c in range(len(k.cpus)) if asce in k.loaded_asces(c)]
    return ", ".join(cpus) or "no CPU"


def _frame_freed(k: Kernel, addr: int) -> bool:
    """Whether the frame of a region or segment table has no reference (as
    ``checks.reachability`` judges a CRST frame)."""
    return not k.mem_map.refcount(k.mem_map.virt_to_page(addr & ~0xFFF)) & 0xFFFFFF


def table_freed(k: Kernel, table: int) -> bool:
    """Whether the frame of page table ``table`` is no page-table page any more: it went
    back to the page allocator (``pgtable_pte_page_dtor`` clears the type), perhaps to
    be allocated again as something else."""
    return not k.mem_map.has_type(k.mem_map.virt_to_page(table & ~0xFFF), S.PG_table)


def _page_table_state(k: Kernel, table: int, mm: int) -> str:
    """Why page table ``table`` is not ``mm``'s now ('' when it is)."""
    if table_freed(k, table):
        return "freed to the page allocator"
    owner = k.owner.get(table)
    if owner is None:
        return f"not allocated (byte {k.byte(k.mem_map.virt_to_page(table & ~0xFFF)):#04x})"
    if owner != mm:
        return f"allocated to mm {owner:#x}"
    return ""


def assert_nothing_freed_reachable(k: Kernel) -> None:
    """A new walk from every live mm's ASCE reaches only tables that are allocated to that
    mm (``pgalloc.checks.reachability`` finds nothing); else AssertionError naming each
    table, the entry that reaches it and the CPUs with the ASCE loaded."""
    problems = []
    for mm in live_mms(k):
        asce = k.mem.read_u64(mm + _ASCE)
        problems += [f"{v.message} [ASCE {asce:#x} loaded on {_cpus_with(k, asce)}]" for v in reachability(k, [mm])]
    _fail("freed or foreign tables reachable", problems)


def assert_no_stale_tlb(k: Kernel) -> None:
    """No CPU's TLB holds an entry that names a table not allocated to its ASCE's mm: a
    page table (read from, or designated by a segment entry) must be the mm's now
    (``k.owner``), a region or segment table must be in an allocated frame, the ASCE must
    be a live mm's.  Meant for points where the paths run have done their flushes: a
    path between its unhook and its flush holds such entries by design."""
    problems = []
    for cpu, entries in enumerate(k.tlbs):
        for e in sorted(entries):
            asce, table, designates, level = e
            mm = _mm_of(k, asce)
            head = f"CPU{cpu}'s TLB holds {describe(e)} (ASCE {asce:#x})"
            if not mm:
                problems.append(f"{head}: the ASCE is no live mm's")
                continue
            pts = [table] if level < 0 else [designates] if level == 0 else []
            crsts = [table] if level >= 0 else []
            crsts += [designates] if level > 0 else []
            for t in pts:
                why = _page_table_state(k, t, mm)
                if why:
                    problems.append(f"{head}: page table {t:#x} is not mm {mm:#x}'s ({why})")
            for t in crsts:
                if _frame_freed(k, t):
                    problems.append(f"{head}: region/segment table {t:#x} is in a freed frame")
    _fail("stale TLB entries", problems)


def _freeing(k: Kernel, table: int) -> bool:
    """Whether a free of ``table`` is running (a caller between unhook and free, or the
    free itself): it is no longer the mm's, but not yet given back either."""
    return any(isinstance(fr, (FreePath,) + CALLERS) and getattr(fr, "table", None) == table
               for c in k.cpus for st in (c.proc, c.soft) for fr in st)


def assert_no_walker_on_freed(k: Kernel) -> None:
    """No running lockless walker holds a pointer (``pt``) to a page table that was freed
    or handed out again since it read it: the table's frame must not be free, and while
    the segment entry it read no longer designates the table, the table must not be
    allocated again (RCU-pending and PageActive-held halves are fine)."""
    problems = []
    for cpu, c in enumerate(k.cpus):
        for fr in (*c.proc, *c.soft):
            pt = getattr(fr, "pt", 0)
            if not pt or not isinstance(fr, WALKERS):
                continue
            head = f"CPU{cpu}'s {fr.FUNC} [at {fr.pc}] holds page table {pt:#x}"
            ste = getattr(fr, "pmdp", 0)
            entry = k.mem.read_u64(ste) if ste else _SEGMENT_ENTRY_INVALID
            hooked = not entry & _SEGMENT_ENTRY_INVALID and entry & _SEGMENT_ENTRY_ORIGIN == pt
            if table_freed(k, pt):
                problems.append(f"{head}, read from the STE at {ste:#x}: freed to the page allocator")
            elif not hooked and pt in k.owner and not _freeing(k, pt):
                problems.append(f"{head}, read from the STE at {ste:#x} (now {entry:#x}): handed out "
                                f"again, to mm {k.owner[pt]:#x}")
    _fail("walkers on freed page tables", problems)


def assert_dat_safe(k: Kernel) -> None:
    """``assert_nothing_freed_reachable``, ``assert_no_stale_tlb`` and
    ``assert_no_walker_on_freed``, every problem of all three in one AssertionError."""
    problems = []
    for check in (assert_nothing_freed_reachable, assert_no_stale_tlb, assert_no_walker_on_freed):
        try:
            check(k)
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        raise AssertionError("not DAT-safe:\n" + "\n".join(problems))
