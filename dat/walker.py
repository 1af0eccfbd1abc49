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

from typing import NamedTuple

from s390emu.memory import PhysicalMemory

from .entries import (
    ASCE_ORIGIN, ASCE_PRIVATE, ASCE_REAL_SPACE, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK, U64,
    PAGE_ENTRY_0, PAGE_ENTRY_I, PAGE_ENTRY_IEP, PAGE_ENTRY_P, PGM_ADDRESSING, PGM_NAMES,
    PGM_PAGE_TRANS, PGM_PROTECTION, PGM_REG_FIRST_TRANS, PGM_ASCE_TYPE, PGM_SEGMENT_TRANS,
    PGM_TRANS_SPEC, REGION3_ENTRY_RFAA, REGION_ENTRY_CR, REGION_ENTRY_FC, REGION_ENTRY_I,
    REGION_ENTRY_IEP, REGION_ENTRY_ORIGIN, REGION_ENTRY_P, SEGMENT_ENTRY_CS, SEGMENT_ENTRY_FC,
    SEGMENT_ENTRY_I, SEGMENT_ENTRY_IEP, SEGMENT_ENTRY_ORIGIN, SEGMENT_ENTRY_P,
    SEGMENT_ENTRY_SFAA, INDEX_SHIFT, LEVEL_PGM, Level,
)

ACCESSES = ("read", "write", "fetch", "lra")

# Low-address protection covers real/virtual 0-511 and 4096-4607.
_LAP_MASK = ~0x11FF & U64


class Step(NamedTuple):
    """One level of a walk: the table, the index into it, the entry's address and value."""

    level: str          # RFTE, RSTE, RTTE, STE or PTE
    table: int          # table origin (where entry 0 would be)
    index: int
    entry_addr: int
    entry: int


class Translation(NamedTuple):
    """A successful translation.

    ``real`` is the real address; ``absolute`` the absolute one after prefixing (equal
    to ``real`` for LRA); ``page_size`` is 4096, 1 MiB or 2 GiB (0 for a real-space ASCE).
    """

    vaddr: int
    real: int
    absolute: int
    protected: bool
    noexec: bool
    page_size: int
    path: tuple[Step, ...]


class TranslationException(Exception):
    """A program interruption raised by DAT for ``vaddr``.

    ``code`` is the program-interruption code, ``level`` where it was recognised
    (ASCE, RFTE, RSTE, RTTE, STE, PTE or PAGE for the final address), ``entry_addr``
    the entry involved (None for ASCE-level and final-address exceptions).
    """

    def __init__(self, code: int, vaddr: int, level: str, entry_addr: int | None = None,
                 path: tuple[Step, ...] = ()):
        self.code = code
        self.vaddr = vaddr
        self.level = level
        self.entry_addr = entry_addr
        self.path = path
        where = f" at {level} {entry_addr:#018x}" if entry_addr is not None else f" at {level}"
        super().__init__(f"{self.name} exception ({code:#04x}) for {vaddr:#018x}{where}")

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


def _top_check(asce: int, vaddr: int) -> int:
    """The ASCE-type or top-table length exception for ``vaddr`` (0 when it passes)."""
    level = Level((asce & ASCE_TYPE_MASK) >> 2)
    tl = asce & ASCE_TABLE_LENGTH
    if level == Level.REGION1:
        return PGM_REG_FIRST_TRANS if vaddr >> 62 > tl else 0
    if vaddr >> (INDEX_SHIFT[level] + 11):
        return PGM_ASCE_TYPE          # ASCE-type is always tested before the length
    if (vaddr >> (INDEX_SHIFT[level] + 9)) & 3 > tl:
        return LEVEL_PGM[level]
    return 0


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
        raise ValueError(f"access must be one of {', '.join(ACCESSES)}, not {access!r}")
    vaddr &= U64
    lra = access == "lra"
    # Low-address protection is checked on the virtual address, before DAT.
    if lap and access == "write" and not asce & ASCE_PRIVATE and not vaddr & _LAP_MASK:
        raise TranslationException(PGM_PROTECTION, vaddr, "ASCE")
    if asce & ASCE_REAL_SPACE:
        return _finish(mem, vaddr, vaddr, False, False, 0, (), access, prefix, True)

    edat2 = edat2 and edat1   # EDAT-2 needs EDAT-1 enabled
    private = asce & ASCE_PRIVATE
    origin = asce & ASCE_ORIGIN
    if lenient:
        # Dump tools: the level from entry 0's TT, the top table taken as full length.
        if origin + 8 > mem.size:
            raise TranslationException(PGM_ADDRESSING, vaddr, "ASCE", origin)
        asce = (mem.read_u64(origin) & ASCE_TYPE_MASK) | ASCE_TABLE_LENGTH
    code = _top_check(asce, vaddr)
    if code:
        raise TranslationException(code, vaddr, "ASCE")
    level = Level((asce & ASCE_TYPE_MASK) >> 2)
    path: list[Step] = []
    protected = noexec = False
    table = origin
    while True:
        name = level.entry_name
        idx = vaddr >> INDEX_SHIFT[level] & 0x7FF
        entry_addr = (table + 8 * idx) & U64
        if entry_addr + 8 > mem.size:
            raise TranslationException(PGM_ADDRESSING, vaddr, name, entry_addr, tuple(path))
        entry = int(mem.u64[entry_addr >> 3])
        path.append(Step(name, table, idx, entry_addr, entry))
        if entry & REGION_ENTRY_I:          # same bit (0x20) in region and segment entries
            raise TranslationException(LEVEL_PGM[level], vaddr, name, entry_addr, tuple(path))
        if not lenient and (entry & 0xC) >> 2 != level:
            raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, tuple(path))
        if level == Level.SEGMENT:
            if not lenient and entry & SEGMENT_ENTRY_CS and private:
                raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, tuple(path))
            protected |= bool(entry & SEGMENT_ENTRY_P)
            if edat1 and entry & SEGMENT_ENTRY_FC:
                noexec |= bool(iep and entry & SEGMENT_ENTRY_IEP)
                real = (entry & SEGMENT_ENTRY_SFAA) | (vaddr & 0xFFFFF)
                return _finish(mem, vaddr, real, protected, noexec, 1 << 20, tuple(path), access,
                               prefix, large_prefixing)
            table = entry & SEGMENT_ENTRY_ORIGIN
            break
        if level == Level.REGION3:
            if not lenient and edat2 and entry & REGION_ENTRY_CR and private:
                raise TranslationException(PGM_TRANS_SPEC, vaddr, name, entry_addr, tuple(path))
            protected |= bool(edat1 and entry & REGION_ENTRY_P)
            if edat2 and entry & REGION_ENTRY_FC:
                noexec |= bool(iep and entry & REGION_ENTRY_IEP)
                real = (entry & REGION3_ENTRY_RFAA) | (vaddr & 0x7FFF_FFFF)
                return _finish(mem, vaddr, real, protected, noexec, 1 << 31, tuple(path), access,
                               prefix, large_prefixing)
        else:
            protected |= bool(edat1 and entry & REGION_ENTRY_P)
        # The next table's TF..TL bounds the two high bits of the next index.
        nxt = Level(level - 1)
        hi = vaddr >> (INDEX_SHIFT[nxt] + 9) & 3
        if hi < (entry >> 6 & 3) or hi > (entry & 3):
            raise TranslationException(LEVEL_PGM[nxt], vaddr, name, entry_addr, tuple(path))
        table = entry & REGION_ENTRY_ORIGIN
        level = nxt

    px = vaddr >> 12 & 0xFF
    entry_addr = table + 8 * px
    if entry_addr + 8 > mem.size:
        raise TranslationException(PGM_ADDRESSING, vaddr, "PTE", entry_addr, tuple(path))
    entry = int(mem.u64[entry_addr >> 3])
    path.append(Step("PTE", table, px, entry_addr, entry))
    if entry & PAGE_ENTRY_I:
        raise TranslationException(PGM_PAGE_TRANS, vaddr, "PTE", entry_addr, tuple(path))
    if entry & PAGE_ENTRY_0:
        raise TranslationException(PGM_TRANS_SPEC, vaddr, "PTE", entry_addr, tuple(path))
    protected |= bool(entry & PAGE_ENTRY_P)
    noexec |= bool(iep and entry & PAGE_ENTRY_IEP)
    real = (entry & 0xFFFF_FFFF_FFFF_F000) | (vaddr & 0xFFF)
    return _finish(mem, vaddr, real, protected, noexec, 4096, tuple(path), access, prefix, True)


def _finish(mem: PhysicalMemory, vaddr: int, real: int, protected: bool, noexec: bool,
            page_size: int, path: tuple[Step, ...], access: str, prefix: int,
            prefixing: bool) -> Translation:
    """Protection, prefixing and the final addressing check after a complete walk."""
    if access == "lra":
        return Translation(vaddr, real, real, protected, noexec, page_size, path)
    last = path[-1] if path else None
    if (access == "write" and protected) or (access == "fetch" and noexec):
        raise TranslationException(PGM_PROTECTION, vaddr, last.level if last else "ASCE",
                                   last.entry_addr if last else None, path)
    absolute = prefix_address(real, prefix) if prefixing else real
    if (absolute | 0xFFF) >= mem.size:
        raise TranslationException(PGM_ADDRESSING, vaddr, "PAGE", None, path)
    return Translation(vaddr, real, absolute, protected, noexec, page_size, path)


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
