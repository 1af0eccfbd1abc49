"""A machine with a hand-built user address space, for the dump tests.

The tables are raw doublewords written here with the architecture's bit layouts
(``dat-spec.md`` §1, Linux's encodings §4.2), not through ``dat`` or ``pgalloc``, so a
mistake in either cannot hide in both the image and the check.  The layout, a Linux
3-level (region-third) process plus a 5-level variant of it:

=================  ==========================================================
``0x00100000``     text: 16 read-only PTEs (0x200), executable
``0x10000000``     heap: 64 read-write no-exec PTEs; PTE 8 is ``_PAGE_INVALID``
``0x10100000``     a page table in the upper 2K half of a frame, 3 valid PTEs
``0x20000000``     an EDAT-1 1 MiB segment frame, read-only
``0x3ffffff000``   the stack page (last PTE of the last page table)
=================  ==========================================================

CPU 1 runs the process: CR1 and CR7 hold its ASCE, CR13 the kernel's.  An
``mm_struct`` (``structs.mm_struct``) in storage records pgd and context.asce.
"""

from __future__ import annotations

from dataclasses import dataclass

from s390emu import structs as S
from s390emu.machine import Machine

R3_EMPTY, R2_EMPTY, R1_EMPTY, SEG_EMPTY, PTE_INVALID = 0x24, 0x28, 0x2C, 0x20, 0x400
R3_ENTRY, R2_ENTRY, R1_ENTRY = 0x07, 0x0B, 0x0F   # TT | TL=3
ASCE_R3, ASCE_R1, ASCE_TL = 0x04, 0x0C, 0x03
SEG_LARGE, PROTECT, NOEXEC = 0x400, 0x200, 0x100

LARGE_FRAME = 0x0140_0000    # 20 MiB: the 1 MiB frame LARGE maps (kernel memory, read-only)
TEXT, HEAP, HALF, LARGE, STACK = 0x0010_0000, 0x1000_0000, 0x1010_0000, 0x2000_0000, 0x3F_FFFF_F000


@dataclass
class Image:
    machine: Machine
    mm: int              # address of the mm_struct
    pgd: int             # its region-third table
    asce3: int
    asce5: int           # a 5-level ASCE over the same region-third table
    r1t: int
    data: list[int]      # data frames mapped (in mapping order)


def _crst(m: Machine, empty: int) -> int:
    t = m.frames.alloc_pages(2)
    m.mem.table(t, 2048)[:] = empty
    return t


def build_image(mem_size: int = 32 << 20, ncpus: int = 2) -> Image:
    """The machine and address space described in the module docstring."""
    m = Machine(mem_size, ncpus=ncpus)
    mem = m.mem
    r3 = _crst(m, R3_EMPTY)
    st = _crst(m, SEG_EMPTY)
    mem.write_u64(r3 + 8 * 0, st | R3_ENTRY)
    st_top = _crst(m, SEG_EMPTY)
    mem.write_u64(r3 + 8 * 0x7F, st_top | R3_ENTRY)     # 0x3f80000000 .. 0x3fffffffff

    pt_frame = m.frames.alloc_pages(0)
    mem.table(pt_frame, 512)[:] = PTE_INVALID
    pt_half = m.frames.alloc_pages(0)
    mem.table(pt_half, 512)[:] = PTE_INVALID
    pt_stack = m.frames.alloc_pages(0)
    mem.table(pt_stack, 512)[:] = PTE_INVALID
    data = []

    def page(pt: int, i: int, bits: int) -> None:
        f = m.frames.alloc_pages(0)
        mem.fill(f, 4096, 0xA5)
        mem.write_u64(f, len(data))
        data.append(f)
        mem.write_u64(pt + 8 * i, f | bits)

    # text: lower half of pt_frame, segment 1
    mem.write_u64(st + 8 * (TEXT >> 20), pt_frame)
    for i in range(16):
        page(pt_frame, i, PROTECT)
    # heap: upper half of pt_frame, segment 0x100
    mem.write_u64(st + 8 * (HEAP >> 20), pt_frame + 0x800)
    for i in range(64):
        if i != 8:
            page(pt_frame + 0x800, i, NOEXEC)
    # a page table in the upper half of another frame
    mem.write_u64(st + 8 * (HALF >> 20), pt_half + 0x800)
    for i in range(3):
        page(pt_half + 0x800, i, NOEXEC)
    # a 1 MiB read-only segment frame
    mem.write_u64(st + 8 * (LARGE >> 20), LARGE_FRAME | SEG_LARGE | PROTECT)
    # stack: the last page of the 4 TiB space
    mem.write_u64(st_top + 8 * 0x7FF, pt_stack)
    page(pt_stack, 255, NOEXEC)

    # 5-level: R1 -> R2 -> our R3
    r1 = _crst(m, R1_EMPTY)
    r2 = _crst(m, R2_EMPTY)
    mem.write_u64(r1, r2 | R1_ENTRY)
    mem.write_u64(r2, r3 | R2_ENTRY)

    mm = m.frames.alloc_pages(0)
    mem.fill(mm, 4096, 0)
    mem.write_u32(mm + S.mm_struct.mm_users, 1)
    mem.write_u32(mm + S.mm_struct.mm_count, 1)
    mem.write_u64(mm + S.mm_struct.pgd, r3)
    asce3 = r3 | ASCE_R3 | ASCE_TL
    mem.write_u64(mm + S.mm_struct.fields["context.asce"], asce3)
    mem.write_u64(mm + S.mm_struct.fields["context.asce_limit"], 1 << 42)
    if ncpus > 1:
        m.set_control_register(1, 1, asce3)
        m.set_control_register(1, 7, asce3)
        m.set_control_register(1, 13, m.kernel_asce)
    m.set_control_register(0, 1, m.kernel_asce)
    m.set_control_register(0, 13, m.kernel_asce)
    return Image(m, mm, r3, asce3, r1 | ASCE_R1 | ASCE_TL, r1, data)


# EDAT-2: region-third entries with FC set, each a 2 GiB frame (R3 TT 01 = 0x04).
R3_LARGE = 0x400
EDAT2_FRAMES = [           # (R3 index, entry): 4G RW NX in two frames, 2G RO X, a gap, 2G RO NX
    (4, 0x0_8000_0000 | R3_LARGE | NOEXEC | 0x04),
    (5, 0x1_0000_0000 | R3_LARGE | NOEXEC | 0x04),
    (6, 0x0_0000_0000 | R3_LARGE | PROTECT | 0x04),
    (8, 0x1_8000_0000 | R3_LARGE | PROTECT | NOEXEC | 0x04),
]


def add_edat2_frames(image: Image) -> Image:
    """Map the 2 GiB EDAT-2 frames of ``EDAT2_FRAMES`` into ``image``'s region-third table
    (virtual 8G..12G, 12G..14G, 16G..18G; the frames lie beyond storage, which neither
    ptdump nor LRA looks at)."""
    for index, entry in EDAT2_FRAMES:
        image.machine.mem.write_u64(image.pgd + 8 * index, entry)
    return image
