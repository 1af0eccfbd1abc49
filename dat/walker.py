"""The scalar DAT walker: one virtual address, the whole path, QEMU's order of checks.

The order is ``mmu_translate`` / ``mmu_translate_asce`` of QEMU's s390x target
(``reference/dat-spec.md`` §2): low-address protection, real-space ASCE, the ASCE-type
and table-length checks of the top table, then per entry: fetch (0x05 outside storage),
invalid bit, table type, common-segment/region with a private ASCE, the next table's
TF/TL, protection accumulated across levels, EDAT-1/EDAT-2 large frames; after a
complete translation protection (0x04), prefixing and the final addressing check.

Facilities (EDAT-1, EDAT-2, IEP, low-address protection) and the prefix are arguments,
never globals.  ``lenient=True`` reads tables the way dump tools do (crash, drgn): the
number of levels comes from entry 0 of the top table, the top table is taken as full
length, and table types and common bits are not checked.
"""

from __future__ import annotations

import struct
from operator import itemgetter
from typing import NamedTuple

from s390emu.memory import PhysicalMemory

from .errors import DatError, InvalidArgument
from .entries import (
    ASCE_ORIGIN, ASCE_PRIVATE, ASCE_REAL_SPACE, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK, U64,
    PAGE_ENTRY_0, PAGE_ENTRY_I, PAGE_ENTRY_IEP, PAGE_ENTRY_P, PGM_ADDRESSING, PGM_NAMES,
    PGM_PAGE_TRANS, PGM_PROTECTION, PGM_REG_FIRST_TRANS, PGM_ASCE_TYPE, PGM_TRANS_SPEC, REGION3_ENTRY_RFAA, REGION_ENTRY_CR, REGION_ENTRY_FC, REGION_ENTRY_IEP, REGION_ENTRY_ORIGIN, REGION_ENTRY_P, SEGMENT_ENTRY_CS, SEGMENT_ENTRY_FC,
    SEGMENT_ENTRY_IEP, SEGMENT_ENTRY_ORIGIN, SEGMENT_ENTRY_P,
    SEGMENT_ENTRY_SFAA,
)

ACCESSES = ("read", "write", "fetch", "lra")

# Low-address protection covers real/virtual 0-511 and 4096-4607.
_LAP_MASK = ~0x11FF & U64

# Per level (indexed by DT/TT: 0 segment .. 3 region-first): the entry's name, the
# index shift, the translation exception for an invalid entry or an index outside
# TF..TL, and the TT the entry must carry.
# The last two: the shift of the next index's two high bits, and the exception when
# they fall outside this entry's TF..TL.
_LEVELS = (("STE", 20, 0x10, 0x0, 0, 0),
           ("RTTE", 31, 0x3B, 0x4, 29, 0x10),
           ("RSTE", 42, 0x3A, 0x8, 40, 0x3B),
           ("RFTE", 53, 0x39, 0xC, 51, 0x3A))
_UNPACK = struct.Struct(">Q").unpack_from


class Step(NamedTuple):
    """One level of a walk: the table, the index into it, the entry's address and value."""

    level: str          # RFTE, RSTE, RTTE, STE or PTE
    table: int          # table origin (where entry 0 would be)
    index: int
    entry_addr: int
    entry: int


def _steps(raw: list) -> tuple[Step, ...]:
    return tuple(map(Step._make, raw))


class Translation(tuple):
    """A successful translation.

    ``real`` is the real address; ``absolute`` the absolute one after prefixing (equal
    to ``real`` for LRA); ``page_size`` is 4096, 1 MiB or 2 GiB (0 for a real-space
    ASCE); ``path`` the levels walked, as ``Step`` tuples.  A plain tuple underneath,
    built with ``tuple.__new__``, because the scalar walker's speed is a feature.
    """

    __slots__ = ()
    vaddr = property(itemgetter(0), doc="The translated virtual address.")
    real = property(itemgetter(1), doc="The real address.")
    absolute = property(itemgetter(2), doc="The absolute address (after prefixing).")
    protected = property(itemgetter(3), doc="DAT protection applies (a store raises 0x04).")
    noexec = property(itemgetter(4), doc="IEP applies (an instruction fetch raises 0x04).")
    page_size = property(itemgetter(5), doc="4096, 1 MiB, 2 GiB, or 0 for a real-space ASCE.")

    @property
    def path(self) -> tuple[Step, ...]:
        """The levels walked, top table first (built on demand: hot loops never pay)."""
        return _steps(self[6])

    def __repr__(self):
        return (f"Translation(vaddr={self.vaddr:#x}, real={self.real:#x}, absolute={self.absolute:#x}, "
                f"protected={self.protected}, page_size={self.page_size:#x})")


_new = tuple.__new__


class TranslationException(DatError):
    """A program interruption raised by DAT for the virtual ``address`` (also ``vaddr``).

    ``code`` is the program-interruption code, ``level`` where it was recognised
    (ASCE, RFTE, RSTE, RTTE, STE, PTE or PAGE for the final address), ``entry_addr``
    the entry involved (None for ASCE-level and final-address exceptions), ``path``
    the levels walked up to and including that entry.
    """

    def __init__(self, code: int, vaddr: int, level: str, entry_addr: int | None = None,
                 path=()):
        self.code = code
        self.address = vaddr
        self.level = level
        self.entry_addr = entry_addr
        self._raw = path

    def __str__(self) -> str:
        # Formatted on demand: a batch of failing walks should not pay for messages.
        where = f" {self.entry_addr:#018x}" if self.entry_addr is not None else ""
        return f"{self.name} exception ({self.code:#04x}) for {self.address:#018x} at {self.level}{where}"

    def __repr__(self) -> str:
        return f"TranslationException({self})"

    def __reduce__(self):
        return (TranslationException, (self.code, self.address, self.level, self.entry_addr, self._raw))

    @property
    def vaddr(self) -> int:
        """The virtual address (``address``, under the name the walker's arguments use)."""
        return self.address

    @property
    def path(self) -> tuple[Step, ...]:
        """The levels walked up to and including the failing entry."""
        return _steps(self._raw)

    @property
    def name(self) -> str:
        """The exception's architectural name, e.g. ``segment-translation``."""
        return PGM_NAMES.get(self.code, f"program-interruption {self.code:#x}")


def prefix_address(real: int, prefix: int) -> int:
    """Real to absolute: swap the 8K at 0 with the 8K at ``prefix`` (``mmu_real2abs``)."""
    if prefix:
        if real < 0x2000:
            return real + prefix
        if prefix <= real < prefix + 0x2000:
            return real - prefix
    return real


def translate(mem: PhysicalMemory, asce: int, vaddr: int, *, access: str = "read",
              edat1: bool = True, edat2: bool = True, iep: bool = False, prefix: int = 0,
              lap: bool = False, lenient: bool = False, large_prefixing: bool = True) -> Translation:
    """Translate ``vaddr`` through the tables ``asce`` designates in ``mem``.

    ``access`` is ``read``, ``write``, ``fetch`` (instruction fetch) or ``lra`` (LOAD
    REAL ADDRESS: no protection, no prefixing, no final addressing check).
    ``large_prefixing`` applies prefixing to EDAT large-frame results as QEMU and
    Hercules do (the default); ``False`` leaves them absolute as the PoP and KVM do.

    >>> from s390emu.memory import PhysicalMemory
    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20         # an empty segment table
    >>> mem.write_u64(0x10000, 0x30800)           # STE 0 -> page table in an upper half
    >>> mem.table(0x30800, 256)[:] = 0x400
    >>> mem.write_u64(0x30800 + 8 * 5, 0x7000)    # PTE 5 -> frame 0x7000
    >>> hex(translate(mem, 0x10003, 0x5abc).real)
    '0x7abc'
    >>> try:
    ...     translate(mem, 0x10003, 0x6000)
    ... except TranslationException as e:
    ...     print(e.name, hex(e.entry_addr))
    page-translation 0x30830
    """
    if access not in ACCESSES:
        raise InvalidArgument(f"access must be one of {', '.join(ACCESSES)}, not {access!r}")
    vaddr &= U64
    # Low-address protection is checked on the virtual address, before DAT.
    if lap and access == "write" and not asce & ASCE_PRIVATE and not vaddr & _LAP_MASK:
        raise TranslationException(PGM_PROTECTION, vaddr, "ASCE")
    if asce & ASCE_REAL_SPACE:
        return _finish(mem, vaddr, vaddr, False, False, 0, [], access, prefix, True)

    edat2 = edat2 and edat1   # EDAT-2 needs EDAT-1 enabled
    private = asce & ASCE_PRIVATE
    table = asce & ASCE_ORIGIN
    size = mem.size
    if lenient:
        # Dump tools: the level from entry 0's TT, the top table taken as full length.
        if table + 8 > size:
            raise TranslationException(PGM_ADDRESSING, vaddr, "ASCE", table)
        asce = (mem.read_u64(table) & ASCE_TYPE_MASK) | ASCE_TABLE_LENGTH
    level = (asce & ASCE_TYPE_MASK) >> 2
    # The top table: ASCE-type before length; no TF at ASCE level.
    if level == 3:
        if vaddr >> 62 > asce & ASCE_TABLE_LENGTH:
            raise TranslationException(PGM_REG_FIRST_TRANS, vaddr, "ASCE")
    else:
        shift = _LEVELS[level][1]
        if vaddr >> (shift + 11):
            raise TranslationException(PGM_ASCE_TYPE, vaddr, "ASCE")
        if (vaddr >> (shift + 9)) & 3 > asce & ASCE_TABLE_LENGTH:
            raise TranslationException(_LEVELS[level][2], vaddr, "ASCE")
    unpack = _UNPACK
    buf = mem.view
    path: list = []
    protected = noexec = False
    # One loop over the region and segment levels (Volatility-style, data-driven).
    while True:
        name, shift, pgm, tt, next_hi_shift, next_pgm = _LEVELS[level]
        idx = vaddr >> shift & 0x7FF
        entry_addr = (table + 8 * idx) & U64
        if entry_addr + 8 > size:
            raise TranslationException(PGM_ADDRESSING, vaddr, name, entry_addr, path)
        entry = unpack(buf, entry_addr)[0]
        path.append((name, table, idx, entry_addr, entry))
        if entry & 0x2C != tt:              # I set, or the wrong table type
            if entry & 0x20:                # I beats TT; same bit in region and segment entries
                raise TranslationException(pgm, vaddr, name, entry_addr, path)
            if not lenient:
                raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, path)
        if not level:                       # segment-table entry
            if entry & 0x610:               # CS, P or FC: the rare cases
                if entry & SEGMENT_ENTRY_CS and private and not lenient:
                    raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, path)
                if entry & SEGMENT_ENTRY_P:
                    protected = True
                if edat1 and entry & SEGMENT_ENTRY_FC:
                    noexec |= bool(iep and entry & SEGMENT_ENTRY_IEP)
                    real = (entry & SEGMENT_ENTRY_SFAA) | (vaddr & 0xFFFFF)
                    return _finish(mem, vaddr, real, protected, noexec, 1 << 20, path, access,
                                   prefix, large_prefixing)
            table = entry & SEGMENT_ENTRY_ORIGIN
            break
        if entry & 0x610 and edat1:         # P, FC or CR, which only EDAT makes meaningful
            if level == 1:                  # region-third-table entry
                if edat2 and entry & REGION_ENTRY_CR and private and not lenient:
                    raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, path)
                if entry & REGION_ENTRY_P:
                    protected = True
                if edat2 and entry & REGION_ENTRY_FC:
                    noexec |= bool(iep and entry & REGION_ENTRY_IEP)
                    real = (entry & REGION3_ENTRY_RFAA) | (vaddr & 0x7FFF_FFFF)
                    return _finish(mem, vaddr, real, protected, noexec, 1 << 31, path, access,
                                   prefix, large_prefixing)
            elif entry & REGION_ENTRY_P:
                protected = True
        # The next table's TF..TL bounds the two high bits of the next index.
        hi = vaddr >> next_hi_shift & 3
        if hi < (entry >> 6 & 3) or hi > (entry & 3):
            raise TranslationException(next_pgm, vaddr, name, entry_addr, path)
        table = entry & REGION_ENTRY_ORIGIN
        level -= 1

    px = vaddr >> 12 & 0xFF
    entry_addr = table + 8 * px
    if entry_addr + 8 > size:
        raise TranslationException(PGM_ADDRESSING, vaddr, "PTE", entry_addr, path)
    entry = unpack(buf, entry_addr)[0]
    path.append(("PTE", table, px, entry_addr, entry))
    if entry & PAGE_ENTRY_I:
        raise TranslationException(PGM_PAGE_TRANS, vaddr, "PTE", entry_addr, path)
    if entry & PAGE_ENTRY_0:
        raise TranslationException(PGM_TRANS_SPEC, vaddr, "PTE", entry_addr, path)
    if entry & PAGE_ENTRY_P:
        protected = True
    noexec |= bool(iep and entry & PAGE_ENTRY_IEP)
    real = (entry & 0xFFFF_FFFF_FFFF_F000) | (vaddr & 0xFFF)
    if access == "read" and not prefix and (real | 0xFFF) < size:    # the common case, inline
        return _new(Translation, (vaddr, real, real, protected, noexec, 4096, path))
    return _finish(mem, vaddr, real, protected, noexec, 4096, path, access, prefix, True)


def _finish(mem: PhysicalMemory, vaddr: int, real: int, protected: bool, noexec: bool,
            page_size: int, path: list, access: str, prefix: int,
            prefixing: bool) -> Translation:
    """Protection, prefixing and the final addressing check after a complete walk."""
    if access == "lra":
        return _new(Translation, (vaddr, real, real, protected, noexec, page_size, path))
    if (protected and access == "write") or (noexec and access == "fetch"):
        # P and IEP come only from an entry read, so the path is never empty here.
        last = path[-1]
        raise TranslationException(PGM_PROTECTION, vaddr, last[0], last[3], path)
    absolute = prefix_address(real, prefix) if prefixing and prefix else real
    if (absolute | 0xFFF) >= mem.size:
        raise TranslationException(PGM_ADDRESSING, vaddr, "PAGE", None, path)
    return _new(Translation, (vaddr, real, absolute, protected, noexec, page_size, path))


def lra(mem: PhysicalMemory, asce: int, vaddr: int, *, edat1: bool = True, edat2: bool = True,
        r1: int = 0) -> tuple[int, int]:
    """LOAD REAL ADDRESS (LRAG) as QEMU implements it: ``(cc, new R1)``.

    cc 0: R1 = the real address.  Any exception: cc 3 and R1's low word =
    ``0x80000000 | code`` with its high word kept.  QEMU never sets cc 1 or 2.

    >>> from s390emu.memory import PhysicalMemory
    >>> lra(PhysicalMemory(1 << 20), 0x0, 0x80000000)      # segment ASCE, RTX != 0
    (3, 2147483704)
    """
    try:
        return 0, translate(mem, asce, vaddr, access="lra", edat1=edat1, edat2=edat2).real
    except TranslationException as e:
        return 3, (r1 & 0xFFFF_FFFF_0000_0000) | 0x8000_0000 | e.code
