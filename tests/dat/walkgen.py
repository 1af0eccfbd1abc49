"""Random DAT images for the differential and property tests.

``ImageGenerator`` writes entries exactly where a walk would read them (each next table
origin taken from the entry just written, index from the address), so random addresses
get deep into random tables instead of stopping at a zero top entry. Every kind of input
is drawn: all ASCE types and TLs, random TF/TL/TT/I and P/CR/FC bits in region entries,
STE and PTE bit patterns, page tables in both 2K halves, indices at table edges, origins
beyond storage, whole random entries, real-space ASCEs, garbage pages.

Nothing generated points into the unicorn oracle's code page (``qemu_oracle.CODE_GUARD``).
"""

from __future__ import annotations

import numpy as np

from s390emu.memory import PhysicalMemory

from .qemu_oracle import CODE_GUARD, in_code_guard

U64 = 0xFFFF_FFFF_FFFF_FFFF
SHIFT = {3: 53, 2: 42, 1: 31, 0: 20}        #: index shift per table level (3 = R1 ... 0 = ST)
EDGES = (0x000, 0x1FF, 0x200, 0x3FF, 0x400, 0x5FF, 0x600, 0x7FF)
PX_EDGES = (0x00, 0x7F, 0x80, 0xFF)


def place_walk(mem: PhysicalMemory, asce: int, vaddr: int, entries) -> None:
    """Write ``entries`` (top level first) where a walk of ``vaddr`` under ``asce`` reads them.

    A region/segment entry's next origin is ``entry & ~0xFFF``; an STE's page-table origin is
    ``entry & ~0x7FF`` (EDAT off reading). Writes that fall outside storage are dropped, and
    the walk stops there.
    """
    if asce & 0x20:
        return
    level = (asce >> 2) & 3
    table = asce & ~0xFFF & U64
    for entry in entries:
        if level >= 0:
            addr = table + 8 * ((vaddr >> SHIFT[level]) & 0x7FF)
        else:
            addr = table + 8 * ((vaddr >> 12) & 0xFF)
        if addr + 8 > mem.size:
            return
        mem.write_u64(addr, entry)
        if level < 0:
            return
        table = entry & (~0x7FF if level == 0 else ~0xFFF) & U64
        level -= 1


class ImageGenerator:
    """A seeded source of random images, ASCEs, addresses and entries.

    >>> g = ImageGenerator(1, size=0x200000)
    >>> mem, asce, vaddrs = g.image(10)
    >>> len(vaddrs), mem.size
    (10, 2097152)
    """

    def __init__(self, seed: int, size: int = 0x20_0000):
        self.rng = np.random.default_rng(seed)
        self.size = size

    # -- primitives -----------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def bits(self, n: int) -> int:
        return int(self.rng.integers(0, 1 << n, dtype=np.uint64)) if n < 64 else \
            int(self.rng.integers(0, 1 << 63)) << 1 | int(self.rng.integers(0, 2))

    def origin(self, align: int = 0x1000) -> int:
        """A table origin: mostly inside storage, sometimes just or far beyond it."""
        r = self.rng.random()
        if r < 0.9:
            o = int(self.rng.integers(0, self.size // align)) * align
        elif r < 0.95:
            o = self.size - align * int(self.rng.integers(0, 4)) + align * int(self.rng.integers(0, 8))
        else:
            o = self.bits(64) & ~(align - 1)
        return self.sane(o)

    @staticmethod
    def sane(value: int) -> int:
        """``value`` moved off the oracle's code page if its origin would touch it."""
        return value ^ (1 << 40) if in_code_guard(value & ~0xFFF & U64) else value

    def index(self) -> int:
        return int(self.rng.choice(EDGES)) if self.chance(0.4) else self.bits(11)

    # -- entries --------------------------------------------------------------------------

    def region_entry(self, level: int) -> int:
        """An R1TE/R2TE/R3TE (level 3/2/1), usually well formed, sometimes broken."""
        if self.chance(0.06):
            return self.sane(self.bits(64))
        tt = level if self.chance(0.92) else self.bits(2)
        e = self.origin() | tt << 2
        e |= 0 if self.chance(0.8) else self.bits(2) << 6                # TF
        e |= 3 if self.chance(0.65) else self.bits(2)                     # TL
        e |= 0x20 if self.chance(0.07) else 0                             # I
        e |= self.bits(12) & 0xF10 if self.chance(0.2) else 0             # P/FC/CR/reserved
        return e

    def ste(self) -> int:
        if self.chance(0.05):
            return self.sane(self.bits(64))
        e = self.origin(0x800)
        e |= 0x20 if self.chance(0.07) else 0                             # I
        e |= self.bits(2) << 2 if self.chance(0.05) else 0                # TT
        e |= 0x10 if self.chance(0.1) else 0                              # CS
        e |= self.bits(11) & 0x7D3 if self.chance(0.3) else 0             # FC/P/reserved
        return e

    def pte(self) -> int:
        if self.chance(0.05):
            return self.bits(64)
        e = self.bits(64) & ~0xFFF if self.chance(0.2) else self.bits(32) << 12 & 0xFFFF_F000
        e |= 0x400 if self.chance(0.15) else 0                            # I
        e |= 0x800 if self.chance(0.06) else 0                            # bit 52
        e |= self.bits(10) & 0x3FF if self.chance(0.5) else 0             # P/IEP/software
        return e

    def asce(self) -> int:
        if self.chance(0.03):
            return self.bits(64) | 0x20                                   # real space
        if self.chance(0.02):
            return self.sane(self.bits(64))
        dt = self.bits(2)
        tl = 3 if self.chance(0.5) else self.bits(2)
        return self.origin() | (0x100 if self.chance(0.3) else 0) | dt << 2 | tl \
            | (self.bits(12) & 0xCD0 if self.chance(0.1) else 0)

    def vaddr(self, asce: int) -> int:
        """An address for ``asce``: indices at table edges, levels above the ASCE's type
        mostly zero (so walks happen), sometimes anything."""
        if self.chance(0.03):
            return self.bits(64)
        dt = (asce >> 2) & 3
        v = 0
        for level in (3, 2, 1, 0):
            if level > dt and not self.chance(0.05):
                continue
            v |= self.index() << SHIFT[level]
        v |= (int(self.rng.choice(PX_EDGES)) if self.chance(0.3) else self.bits(8)) << 12
        return v | self.bits(12)

    def walk_entries(self, asce: int) -> list[int]:
        dt = (asce >> 2) & 3
        return [self.region_entry(level) for level in range(dt, 0, -1)] + [self.ste(), self.pte()]

    def image(self, n_vaddrs: int) -> tuple[PhysicalMemory, int, list[int]]:
        """A fresh image, its ASCE, and ``n_vaddrs`` addresses whose walks were written.

        Later walks may overwrite entries of earlier ones (tables overlap at random);
        that is fine, the image is compared as it finally is.
        """
        mem = PhysicalMemory(self.size)
        for _ in range(int(self.rng.integers(0, 4))):                     # garbage frames
            frame = int(self.rng.integers(0, self.size // 4096))
            g = self.rng.integers(0, 1 << 63, size=512, dtype=np.uint64) << np.uint64(1)
            g &= ~np.uint64(0xFFF) | self.rng.integers(0, 0x1000, size=512, dtype=np.uint64)
            bad = ((g & np.uint64(~0xFFF & U64)) >= CODE_GUARD[0]) & ((g & np.uint64(~0xFFF & U64)) < CODE_GUARD[1])
            g[bad] ^= np.uint64(1 << 40)
            mem.table(frame * 4096, 512)[:] = g
        asce = self.asce()
        vaddrs = []
        shared = None
        for _ in range(n_vaddrs):
            v = self.vaddr(asce)
            if shared is not None and self.chance(0.5):
                # reuse the upper path of an earlier address: deeper walks through shared tables
                keep = ~((1 << int(self.rng.choice([12, 20, 31, 42]))) - 1) & U64
                v = (shared & keep) | (v & ~keep & U64)
            else:
                place_walk(mem, asce, v, self.walk_entries(asce))
                shared = v
            vaddrs.append(v)
        return mem, asce, vaddrs
