"""z/Architecture DAT formats, declared once: ASCE, region/segment/page-table entries.

Bit masks are the architecture's (``reference/dat-spec.md`` §1): bit *n* of a
doubleword is ``1 << (63 - n)``.  Hot paths use the plain int masks; the ``IntFlag``
classes and ``decode()`` exist for display (crash's "flags in binary" line).
"""

from __future__ import annotations

import enum

from bitstring import Bits

U64 = 0xFFFF_FFFF_FFFF_FFFF

# -- virtual address -------------------------------------------------------------------------
RFX_SHIFT, RSX_SHIFT, RTX_SHIFT, SX_SHIFT, PX_SHIFT = 53, 42, 31, 20, 12
INDEX_MASK = 0x7FF          # region and segment indices are 11 bits
PX_MASK = 0xFF              # page index, 8 bits
BYTE_MASK = 0xFFF

# -- ASCE --------------------------------------------------------------------------------
ASCE_ORIGIN = 0xFFFF_FFFF_FFFF_F000
ASCE_PRIVATE = 0x100
ASCE_ALT_EVENT = 0x080
ASCE_SPACE_SWITCH = 0x040
ASCE_REAL_SPACE = 0x020
ASCE_TYPE_MASK = 0x00C
ASCE_TABLE_LENGTH = 0x003
ASCE_TYPE_REGION1 = 0x00C
ASCE_TYPE_REGION2 = 0x008
ASCE_TYPE_REGION3 = 0x004
ASCE_TYPE_SEGMENT = 0x000

# -- region-table entries (R1TE, R2TE, R3TE) ------------------------------------------------
REGION_ENTRY_ORIGIN = 0xFFFF_FFFF_FFFF_F000
REGION_ENTRY_FC = 0x400         # R3TE only, with EDAT-2
REGION_ENTRY_P = 0x200          # honoured with EDAT-1
REGION_ENTRY_IEP = 0x100        # leaf R3TE only
REGION_ENTRY_TF = 0x0C0
REGION_ENTRY_I = 0x020
REGION_ENTRY_CR = 0x010         # R3TE common-region, with EDAT-2
REGION_ENTRY_TT = 0x00C
REGION_ENTRY_TL = 0x003
REGION3_ENTRY_RFAA = 0xFFFF_FFFF_8000_0000
TT_REGION1, TT_REGION2, TT_REGION3, TT_SEGMENT = 0x0C, 0x08, 0x04, 0x00

# -- segment-table entry ---------------------------------------------------------------------
SEGMENT_ENTRY_ORIGIN = 0xFFFF_FFFF_FFFF_F800   # 2K-aligned page-table origin
SEGMENT_ENTRY_SFAA = 0xFFFF_FFFF_FFF0_0000
SEGMENT_ENTRY_FC = 0x400
SEGMENT_ENTRY_P = 0x200
SEGMENT_ENTRY_IEP = 0x100
SEGMENT_ENTRY_I = 0x020
SEGMENT_ENTRY_CS = 0x010
SEGMENT_ENTRY_TT = 0x00C

# -- page-table entry ------------------------------------------------------------------------
PAGE_ENTRY_PFRA = 0xFFFF_FFFF_FFFF_F000
PAGE_ENTRY_0 = 0x800            # must be zero in a valid PTE
PAGE_ENTRY_I = 0x400
PAGE_ENTRY_P = 0x200
PAGE_ENTRY_IEP = 0x100

# -- Linux's empty entries (arch/s390/include/asm/pgtable.h) --------------------------------
REGION1_ENTRY_EMPTY = 0x2C
REGION2_ENTRY_EMPTY = 0x28
REGION3_ENTRY_EMPTY = 0x24
SEGMENT_ENTRY_EMPTY = 0x20
PAGE_INVALID = 0x400

CRST_ENTRIES = 2048         # 16K region or segment table
PTRS_PER_PTE = 256          # 2K page table

# -- program-interruption codes --------------------------------------------------------------
PGM_PROTECTION = 0x04
PGM_ADDRESSING = 0x05
PGM_SEGMENT_TRANS = 0x10
PGM_PAGE_TRANS = 0x11
PGM_TRANS_SPEC = 0x12
PGM_ASCE_TYPE = 0x38
PGM_REG_FIRST_TRANS = 0x39
PGM_REG_SEC_TRANS = 0x3A
PGM_REG_THIRD_TRANS = 0x3B

PGM_NAMES = {
    PGM_PROTECTION: "protection",
    PGM_ADDRESSING: "addressing",
    PGM_SEGMENT_TRANS: "segment-translation",
    PGM_PAGE_TRANS: "page-translation",
    PGM_TRANS_SPEC: "translation-specification",
    PGM_ASCE_TYPE: "ASCE-type",
    PGM_REG_FIRST_TRANS: "region-first-translation",
    PGM_REG_SEC_TRANS: "region-second-translation",
    PGM_REG_THIRD_TRANS: "region-third-translation",
}


class Level(enum.IntEnum):
    """A DAT table level; the value is the ASCE designation type (DT) / entry TT."""

    SEGMENT = 0
    REGION3 = 1
    REGION2 = 2
    REGION1 = 3

    @property
    def entry_name(self) -> str:
        """crash's name for an entry of this level: RFTE, RSTE, RTTE or STE."""
        return ("STE", "RTTE", "RSTE", "RFTE")[self]


# Per region/segment level: index shift, the translation exception for an index out of
# TF..TL or an invalid entry.  A PTE is level "PTE" and has neither.
INDEX_SHIFT = {Level.REGION1: RFX_SHIFT, Level.REGION2: RSX_SHIFT, Level.REGION3: RTX_SHIFT,
               Level.SEGMENT: SX_SHIFT}
LEVEL_PGM = {Level.REGION1: PGM_REG_FIRST_TRANS, Level.REGION2: PGM_REG_SEC_TRANS,
             Level.REGION3: PGM_REG_THIRD_TRANS, Level.SEGMENT: PGM_SEGMENT_TRANS}
EMPTY_ENTRY = {Level.REGION1: REGION1_ENTRY_EMPTY, Level.REGION2: REGION2_ENTRY_EMPTY,
               Level.REGION3: REGION3_ENTRY_EMPTY, Level.SEGMENT: SEGMENT_ENTRY_EMPTY}


def asce_level(asce: int) -> Level:
    """The level of the table an ASCE designates."""
    return Level((asce & ASCE_TYPE_MASK) >> 2)


def index(vaddr: int, level: Level) -> int:
    """The 11-bit index of ``vaddr`` into a table of ``level``."""
    return vaddr >> INDEX_SHIFT[level] & INDEX_MASK


# -- decoding for display ------------------------------------------------------------------

class AsceFlags(enum.IntFlag):
    """ASCE control bits."""

    P = ASCE_PRIVATE
    S = ASCE_ALT_EVENT
    X = ASCE_SPACE_SWITCH
    R = ASCE_REAL_SPACE


def _bits(value: int, mask: int) -> str:
    width = mask.bit_count()
    return Bits(uint=(value & mask) >> (mask & -mask).bit_length() - 1, length=width).bin


def decode(name: str, entry: int) -> str:
    """crash's "flags in binary" line for an entry of ``name`` (RFTE ... PTE).

    >>> decode("STE", 0x30801)
    'FC=0; P=0; I=0; CS=0; TT=00'
    >>> decode("RTTE", 0x20007)
    'FC=0; P=0; TF=00; I=0; CR=0; TT=01; TL=11'
    """
    def f(label: str, mask: int) -> str:
        return f"{label}={_bits(entry, mask)}"

    large = entry & 0x400 and name in ("RTTE", "STE")
    if name == "PTE":
        parts = [f("I", PAGE_ENTRY_I), f("P", PAGE_ENTRY_P)]
    elif large:
        parts = [f("AV", 0x10000), f("ACC", 0xF000), f("F", 0x800), f("FC", 0x400), f("P", 0x200),
                 f("I", 0x20), f("CR" if name == "RTTE" else "CS", 0x10), f("TT", 0xC)]
    elif name == "STE":
        parts = [f("FC", 0x400), f("P", 0x200), f("I", 0x20), f("CS", 0x10), f("TT", 0xC)]
    elif name == "RTTE":
        parts = [f("FC", 0x400), f("P", 0x200), f("TF", 0xC0), f("I", 0x20), f("CR", 0x10),
                 f("TT", 0xC), f("TL", 0x3)]
    else:
        parts = [f("P", 0x200), f("TF", 0xC0), f("I", 0x20), f("TT", 0xC), f("TL", 0x3)]
    return "; ".join(parts)


def flags_mask(name: str, entry: int) -> tuple[int, int]:
    """crash's ``(flags = ...)`` mask and hex width for an entry of ``name``."""
    if name == "RTTE" and entry & 0x400:
        return 0x7FFFFFFF, 8
    if name == "STE":
        return (0xFFFFF, 5) if entry & 0x400 else (0x7FF, 3)
    return 0xFFF, 3
