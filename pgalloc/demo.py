"""The built-in demo: two processes' address spaces built by the project's own allocator.

It lives in ``pgalloc`` because it is built with the allocator: the machine package
(``s390emu``) may use it only from its inspection library and its CLI (``s390emu demo``,
every command's ``--demo``).  It imports only ``pgalloc``'s public names and ``s390emu``.

Everything here goes through ``pgalloc`` (``mm_alloc``, ``map_range``,
``page_table_alloc``, ``free_pgtables`` + ``tlb_finish_mmu``, ``retract_page_tables`` ->
``pte_free_defer``, ``crst_table_upgrade``) and the buddy page allocator, on a 64 MiB
machine with two CPUs.  The result is deterministic for a given allocator version, so
the addresses below (and in ``s390emu translate --help``) always mean the same thing.

=====================  =====================================================
``0x1000000``          text: 16 pages, read-only (a store raises 0x04)
``0x10000000``         heap: 64 pages; ``0x10008000`` is unmapped (0x11); its page table
                       is the upper 2K half of the frame that holds the text's
``0x10100000``         one page, in the next segment
``0x20000000``         inside no segment's page table (0x10)
``0x30000000``         a 1 MiB EDAT-1 frame after a THP collapse (pte_free_defer)
``0x3fffffff000``      the stack page, top of the 3-level (4 TiB) space
``0x40000000000``      only in the 5-level process: needs its region-second table
``0x20000000000000``   only in the 5-level process: needs its region-first table
=====================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgalloc import Kernel, VERSIONS
from pgalloc import mm as MM
from pgalloc.errors import VersionError


TEXT, TEXT_PAGES = 0x0100_0000, 16
HEAP, HEAP_PAGES = 0x1000_0000, 64
HOLE = HEAP + 0x8000
UPPER_HALF = 0x1010_0000
NO_SEGMENT = 0x2000_0000
THP = 0x3000_0000
SCRATCH = 0x3800_0000
STACK = 0x3FF_FFFF_F000
R2_RANGE = 0x400_0000_0000
R1_RANGE = 0x20_0000_0000_0000

# (address, what the 5-level process has there): printed by `s390emu demo`.
ADDRESSES = [
    (TEXT, "text, read-only: --write raises 0x04"),
    (HEAP, "heap; its page table is the upper 2K half of a frame (v67: a whole page)"),
    (HOLE, "heap hole: page-translation 0x11"),
    (UPPER_HALF, "one page in the next segment"),
    (NO_SEGMENT, "no page table here: segment-translation 0x10"),
    (THP, "1 MiB EDAT-1 frame after a THP collapse"),
    (STACK, "stack, top of the 3-level space"),
    (R2_RANGE, "4-level range (R2 table)"),
    (R1_RANGE, "5-level range (R1 table)"),
]

_SEGMENT_ENTRY_LARGE = 0x400
_SEGMENT_PROTECT = 0x200
_PAGE_PROTECT = 0x200


@dataclass
class Demo:
    """The demo machine, its two mms and the log of what was done."""

    kernel: Kernel
    mm3: int
    mm5: int
    asce3: int
    asce5: int
    log: list[str] = field(default_factory=list)

    @property
    def machine(self):
        """The emulated machine (storage, mem_map, CPUs)."""
        return self.kernel.machine


def _say(log: list[str], text: str) -> None:
    log.append(text)


def _frames(k: Kernel, order: int) -> int:
    return k.frames.alloc_pages(order)


def _protect(k: Kernel, mm: int, start: int, end: int) -> None:
    """``mprotect(PROT_READ)``: set the page-protection bit in every PTE of the range."""
    for va in range(start, end, 4096):
        pt = MM.pte_table(k, mm, va)
        ea = pt + 8 * ((va >> 12) & 0xFF)
        k.mem.write_u64(ea, k.mem.read_u64(ea) | _PAGE_PROTECT)


def _map_process(k: Kernel, mm: int, log: list[str], name: str) -> None:
    text = _frames(k, 4)
    MM.map_range(k, mm, TEXT, TEXT + TEXT_PAGES * 4096, text)
    _protect(k, mm, TEXT, TEXT + TEXT_PAGES * 4096)
    heap = _frames(k, 6)
    MM.map_range(k, mm, HEAP, HEAP + HEAP_PAGES * 4096, heap)
    MM.unmap_range(k, mm, HOLE, HOLE + 4096)
    MM.map_range(k, mm, UPPER_HALF, UPPER_HALF + 4096, _frames(k, 0))
    MM.map_range(k, mm, STACK, STACK + 4096, _frames(k, 0))
    pt_text, pt_heap = MM.pte_table(k, mm, TEXT), MM.pte_table(k, mm, HEAP)
    _say(log, f"{name}: text {TEXT:#x} (16 pages, read-only), heap {HEAP:#x} (64 pages, hole at "
              f"{HOLE:#x}), {UPPER_HALF:#x}, stack {STACK:#x}; page tables: text {pt_text:#x}, "
              f"heap {pt_heap:#x}"
              + (" (the upper half of the text's frame)" if pt_heap == pt_text + 0x800 else ""))


def build_demo(version: str = "v66") -> Demo:
    """Build the demo with allocator ``version`` (``v515``, ``v64``, ``seed``, ``v66``, ``v67``,
    or a version file's name once ``pgalloc.versions.load_version`` loaded it); another
    name raises ``VersionError``.

    >>> d = build_demo("v66")
    >>> import dat
    >>> dat.translate(d.machine.mem, d.asce5, 0x10000000).page_size
    4096
    >>> hex(d.asce5 & 0xFFF), hex(d.asce3 & 0xFFF)
    ('0x1cf', '0x1c7')
    """
    if version not in VERSIONS:
        raise VersionError(f"unknown allocator version {version!r}")
    k = Kernel(version, mem_size=64 << 20, ncpus=2)
    log: list[str] = [f"machine: 64 MiB, 2 CPUs, allocator {version}"]

    mm3 = MM.mm_alloc(k)
    _say(log, f"mm_alloc: process A, mm_struct {mm3:#x}, 3-level ASCE {MM.asce(k, mm3):#x}")
    _map_process(k, mm3, log, "process A")

    mm5 = MM.mm_alloc(k)
    _say(log, f"mm_alloc: process B, mm_struct {mm5:#x}, 3-level ASCE {MM.asce(k, mm5):#x}")
    _map_process(k, mm5, log, "process B")
    MM.map_range(k, mm5, R2_RANGE, R2_RANGE + 4096, _frames(k, 0))
    _say(log, f"process B: mapping {R2_RANGE:#x} upgraded it to 4 levels: ASCE {MM.asce(k, mm5):#x}")
    MM.map_range(k, mm5, R1_RANGE, R1_RANGE + 4096, _frames(k, 0))
    _say(log, f"process B: mapping {R1_RANGE:#x} upgraded it to 5 levels: ASCE {MM.asce(k, mm5):#x}")

    # munmap of a scratch range: page tables freed through mmu_gather and RCU.
    MM.map_range(k, mm5, SCRATCH, SCRATCH + 0x200000, _frames(k, 9))
    freed = [MM.pte_table(k, mm5, SCRATCH), MM.pte_table(k, mm5, SCRATCH + 0x100000)]
    MM.unmap_range(k, mm5, SCRATCH, SCRATCH + 0x200000)
    tlb = k.tlb_gather_mmu(mm5)
    MM.free_pgtables(k, mm5, tlb, SCRATCH, SCRATCH + 0x200000)
    k.tlb_finish_mmu(tlb)
    _say(log, "process B: munmap " f"{SCRATCH:#x}-{SCRATCH + 0x200000:#x}: page_table_free_rcu of "
              + ", ".join(f"{t:#x}" for t in freed) + "; tlb_finish_mmu queued the batch for RCU")
    k.rcu_barrier()
    _say(log, "RCU grace period: __tlb_remove_table ran; the freed halves are reusable")

    # THP collapse: the 1 MiB of small pages becomes one EDAT-1 segment frame.
    MM.map_range(k, mm5, THP, THP + 0x100000, _frames(k, 8))
    old = MM.pte_table(k, mm5, THP)
    reused = " (a reused half)" if old in freed else ""
    MM.retract_page_tables(k, mm5, THP, THP + 0x100000)
    huge = _frames(k, 8)
    st = MM.segment_table(k, mm5, THP)
    k.mem.write_u64(st + 8 * ((THP >> 20) & 0x7FF), huge | _SEGMENT_ENTRY_LARGE)
    _say(log, f"process B: THP collapse at {THP:#x}: page table {old:#x}{reused} handed to "
              f"pte_free_defer; the segment now maps the 1 MiB frame {huge:#x}")
    k.rcu_barrier()
    _say(log, "RCU grace period: the deferred page table was freed")

    # CPU 0 runs process B, CPU 1 process A: user ASCE in CR1 and CR7, kernel in CR13.
    for cpu, mm in ((0, mm5), (1, mm3)):
        a = MM.asce(k, mm)
        k.machine.set_control_register(cpu, 1, a)
        k.machine.set_control_register(cpu, 7, a)
        k.machine.set_control_register(cpu, 13, k.machine.kernel_asce)
    return Demo(k, mm3, mm5, MM.asce(k, mm3), MM.asce(k, mm5), log)
