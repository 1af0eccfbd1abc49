"""Hand-built DAT tables for the walker tests.

Everything here writes raw doublewords with the bit layouts of ``dat-spec.md`` §1, on
purpose without going through ``dat``'s own entry formats: a test that builds its tables
with the code under test cannot catch an encoding mistake in it.

Named addresses follow Volatility 3's ``test_intel_large_pages.py``: one constant per
table, so an expected entry address reads as ``R3T + 8 * rtx(VADDR)``.
"""

from __future__ import annotations

from s390emu.memory import PhysicalMemory

# -- storage and table placement -----------------------------------------------------------

STORAGE = 0x0100_0000          #: 16 MiB of storage for hand-built images
R1T = 0x0001_0000              #: region-first table (16K)
R2T = 0x0002_0000              #: region-second table
R3T = 0x0003_0000              #: region-third table
ST = 0x0004_0000               #: segment table
PT_FRAME = 0x0005_0000         #: a 4K frame holding two 2K page tables
PT_LOW = PT_FRAME              #: the page table in the lower 2K half
PT_HIGH = PT_FRAME + 0x800     #: the page table in the upper 2K half
FRAME = 0x0060_0000            #: the 4K data frame the tests map
BEYOND = 0x4000_0000           #: an absolute address well outside STORAGE

# -- ASCE ----------------------------------------------------------------------------------

ASCE_ORIGIN = 0xFFFF_FFFF_FFFF_F000
ASCE_P = 0x100                 #: private space
ASCE_R = 0x020                 #: real space
DT_R1, DT_R2, DT_R3, DT_ST = 0xC, 0x8, 0x4, 0x0

# -- region entries ------------------------------------------------------------------------

REGION_ORIGIN = 0xFFFF_FFFF_FFFF_F000
REGION_FC = 0x400              #: R3TE only, EDAT-2
REGION_P = 0x200
REGION_I = 0x020
REGION_CR = 0x010              #: R3TE common region
TT_R1, TT_R2, TT_R3, TT_ST = 0xC, 0x8, 0x4, 0x0
RFAA = 0xFFFF_FFFF_8000_0000

# -- segment and page entries --------------------------------------------------------------

STE_PTO = 0xFFFF_FFFF_FFFF_F800
STE_SFAA = 0xFFFF_FFFF_FFF0_0000
STE_FC = 0x400
STE_P = 0x200
STE_I = 0x020
STE_CS = 0x010
PTE_PFRA = 0xFFFF_FFFF_FFFF_F000
PTE_BIT52 = 0x800
PTE_I = 0x400
PTE_P = 0x200
PTE_IEP = 0x100

# Linux's empty entries (dat-spec §4.2)
REGION1_ENTRY_EMPTY = 0x2C
REGION2_ENTRY_EMPTY = 0x28
REGION3_ENTRY_EMPTY = 0x24
SEGMENT_ENTRY_EMPTY = 0x20
PAGE_INVALID = 0x400

# -- virtual-address fields ----------------------------------------------------------------


def rfx(vaddr: int) -> int:
    """Region-first index (bits 0-10)."""
    return (vaddr >> 53) & 0x7FF


def rsx(vaddr: int) -> int:
    """Region-second index (bits 11-21)."""
    return (vaddr >> 42) & 0x7FF


def rtx(vaddr: int) -> int:
    """Region-third index (bits 22-32)."""
    return (vaddr >> 31) & 0x7FF


def sx(vaddr: int) -> int:
    """Segment index (bits 33-43)."""
    return (vaddr >> 20) & 0x7FF


def px(vaddr: int) -> int:
    """Page index (bits 44-51)."""
    return (vaddr >> 12) & 0xFF


def vaddr_of(rfx_: int = 0, rsx_: int = 0, rtx_: int = 0, sx_: int = 0, px_: int = 0,
             bx: int = 0) -> int:
    """The virtual address with the given indices, e.g. ``vaddr_of(sx_=0x7FF, px_=0xFF)``."""
    return (rfx_ << 53) | (rsx_ << 42) | (rtx_ << 31) | (sx_ << 20) | (px_ << 12) | bx


# -- entry constructors --------------------------------------------------------------------


def asce(origin: int, dt: int, tl: int = 3, *, private: bool = False, real: bool = False) -> int:
    """An ASCE: ``asce(R3T, DT_R3)`` -> ``0x30007``."""
    return (origin & ASCE_ORIGIN) | (ASCE_P if private else 0) | (ASCE_R if real else 0) | dt | tl


def region_entry(origin: int, tt: int, *, tf: int = 0, tl: int = 3, invalid: bool = False,
                 protect: bool = False, cr: bool = False) -> int:
    """A region-table entry pointing at the next table: ``region_entry(R2T, TT_R1)``."""
    return ((origin & REGION_ORIGIN) | (tf << 6) | tl | tt | (REGION_I if invalid else 0)
            | (REGION_P if protect else 0) | (REGION_CR if cr else 0))


def r3te_large(rfaa: int, *, protect: bool = False, invalid: bool = False, cr: bool = False) -> int:
    """An EDAT-2 R3TE (FC=1) mapping the 2G frame at absolute ``rfaa``."""
    return ((rfaa & RFAA) | REGION_FC | TT_R3 | (REGION_P if protect else 0)
            | (REGION_I if invalid else 0) | (REGION_CR if cr else 0))


def ste(pto: int, *, invalid: bool = False, protect: bool = False, cs: bool = False,
        tt: int = TT_ST) -> int:
    """An STE (FC=0) pointing at the 2K page table at ``pto``."""
    return ((pto & STE_PTO) | tt | (STE_I if invalid else 0) | (STE_P if protect else 0)
            | (STE_CS if cs else 0))


def ste_large(sfaa: int, *, protect: bool = False, invalid: bool = False, cs: bool = False) -> int:
    """An EDAT-1 STE (FC=1) mapping the 1M frame at absolute ``sfaa``."""
    return ((sfaa & STE_SFAA) | STE_FC | (STE_P if protect else 0) | (STE_I if invalid else 0)
            | (STE_CS if cs else 0))


def pte(pfra: int, *, invalid: bool = False, protect: bool = False, bit52: bool = False) -> int:
    """A PTE mapping the 4K frame at real ``pfra``."""
    return ((pfra & PTE_PFRA) | (PTE_I if invalid else 0) | (PTE_P if protect else 0)
            | (PTE_BIT52 if bit52 else 0))


# -- images --------------------------------------------------------------------------------

#: the top table each designation type starts from
TOP = {DT_R1: R1T, DT_R2: R2T, DT_R3: R3T, DT_ST: ST}


def empty_image(size: int = STORAGE) -> PhysicalMemory:
    """Zeroed storage of ``size`` bytes."""
    return PhysicalMemory(size)


def fill_crst(mem: PhysicalMemory, origin: int, value: int) -> None:
    """Fill a 16K region/segment table with ``value`` (Linux's ``crst_table_init``)."""
    mem.table(origin, 2048)[:] = value


def fill_pt(mem: PhysicalMemory, origin: int, value: int = PAGE_INVALID) -> None:
    """Fill a 2K page table with ``value``."""
    mem.table(origin, 256)[:] = value


def map_4k(mem: PhysicalMemory, vaddr: int, dt: int = DT_R1, *, frame: int = FRAME,
           pt: int = PT_LOW, top_tl: int = 3, private: bool = False) -> int:
    """Write one valid path from the ``dt`` top table down to a PTE for ``vaddr``.

    Tables sit at the module's named addresses (R1T, R2T, R3T, ST, ``pt``); the PTE maps
    ``frame``. Returns the ASCE. Tests then overwrite single entries to provoke the case
    under test, e.g. ``mem.write_u64(ste_addr(v), SEGMENT_ENTRY_EMPTY)``.

    >>> mem = empty_image(); a = map_4k(mem, 0x1234, DT_ST)
    >>> hex(a), hex(mem.read_u64(PT_LOW + 8))
    ('0x40003', '0x600000')
    """
    if dt >= DT_R1:
        mem.write_u64(r1te_addr(vaddr), region_entry(R2T, TT_R1))
    if dt >= DT_R2:
        mem.write_u64(r2te_addr(vaddr), region_entry(R3T, TT_R2))
    if dt >= DT_R3:
        mem.write_u64(r3te_addr(vaddr), region_entry(ST, TT_R3))
    mem.write_u64(ste_addr(vaddr), ste(pt))
    mem.write_u64(pt + 8 * px(vaddr), pte(frame))
    return asce(TOP[dt], dt, top_tl, private=private)


def r1te_addr(vaddr: int) -> int:
    """Where ``map_4k`` puts the R1TE for ``vaddr``."""
    return R1T + 8 * rfx(vaddr)


def r2te_addr(vaddr: int) -> int:
    """Where ``map_4k`` puts the R2TE for ``vaddr``."""
    return R2T + 8 * rsx(vaddr)


def r3te_addr(vaddr: int) -> int:
    """Where ``map_4k`` puts the R3TE for ``vaddr``."""
    return R3T + 8 * rtx(vaddr)


def ste_addr(vaddr: int) -> int:
    """Where ``map_4k`` puts the STE for ``vaddr``."""
    return ST + 8 * sx(vaddr)


def pte_addr(vaddr: int, pt: int = PT_LOW) -> int:
    """Where ``map_4k`` puts the PTE for ``vaddr`` (page table at ``pt``)."""
    return pt + 8 * px(vaddr)
