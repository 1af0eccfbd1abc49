"""QEMU's DAT as an oracle: the LRAG instruction of unicorn's embedded s390x target.

Unicorn 2.1.x embeds QEMU 5.0's s390x TCG target, whose ``HELPER(lra)`` runs the same
``mmu_translate`` as its TLB fill. We map the image at absolute 0, put
``LRAG r2,0(r3)`` on a code page at ``CODE`` and run it in secondary-space mode with the
ASCE under test in CR7, while CR1 (primary) is a real-space ASCE so that the instruction
fetch itself is untranslated.

Known properties of this QEMU (checked by hand, see the differential tests):
  * no EDAT facility: compare against ``dat.lra(..., edat1=False, edat2=False)``;
  * on cc 3 it zeroes the high word of R1 (the 2023 LRA fix is not in it), so only the
    low word and the condition code are comparable;
  * the prefix register is 0, so real == absolute.

Tables must never point into the code page; ``CODE_GUARD`` is the range to avoid.
"""

from __future__ import annotations

import numpy as np
from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, Uc
from unicorn.s390x_const import (
    UC_S390X_REG_CR0,
    UC_S390X_REG_CR1,
    UC_S390X_REG_CR7,
    UC_S390X_REG_PSWM,
    UC_S390X_REG_R2,
    UC_S390X_REG_R3,
)

CODE = 0x7F00_0000                      #: code page (absolute, real-space fetched)
CODE_GUARD = (CODE - 0x4000, CODE + 0x1000)  #: no table may overlap this range
LRAG_R2_0_R3 = bytes.fromhex("E32030000003")  #: LRAG r2,0(r3)
PSWM_DAT_SECONDARY_64 = 0x0400_8001_8000_0000  #: DAT on, secondary space, EA+BA
REAL_SPACE_ASCE = 0x20


class QemuLRA:
    """One unicorn s390x CPU over an image of ``size`` bytes at absolute 0.

    >>> q = QemuLRA(1 << 20)
    >>> q.lra(REAL_SPACE_ASCE, 0x1234)
    (0, 4660)
    """

    def __init__(self, size: int, image: bytes | None = None):
        if CODE < size:
            raise ValueError("the image would overlap the code page")
        self.size = size
        self.uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        self.uc.mem_map(0, size)
        self.uc.mem_map(CODE, 0x1000)
        self.uc.mem_write(CODE, LRAG_R2_0_R3)
        self.uc.reg_write(UC_S390X_REG_CR0, 0)            # no LAP, no EDAT, no IEP
        self.uc.reg_write(UC_S390X_REG_CR1, REAL_SPACE_ASCE)
        self._written: set[int] = set()
        if image is not None:
            self.load(image)

    def load(self, image) -> None:
        """Replace storage with ``image`` (a numpy uint8 array or bytes of ``size`` bytes).

        Only 4K pages that are non-zero now, or were written by the previous ``load``, are
        copied, so a sparse 512 MiB image costs what it holds.
        """
        data = np.frombuffer(image, dtype=np.uint8) if not isinstance(image, np.ndarray) else image
        if data.size != self.size:
            raise ValueError(f"image is {data.size:#x} bytes, storage is {self.size:#x}")
        pages = data.reshape(-1, 0x1000)
        dirty = set(np.flatnonzero(pages.any(axis=1)).tolist())
        for page in sorted(dirty | self._written):
            self.uc.mem_write(page << 12, pages[page].tobytes())
        self._written = dirty

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at absolute ``addr``."""
        self.uc.mem_write(addr, bytes(data))

    def lra(self, asce: int, vaddr: int, r2: int = 0) -> tuple[int, int]:
        """Run LRAG with CR7 = ``asce``; return ``(cc, R2)`` as QEMU left them."""
        uc = self.uc
        uc.reg_write(UC_S390X_REG_CR7, asce)
        uc.reg_write(UC_S390X_REG_R3, vaddr)
        uc.reg_write(UC_S390X_REG_R2, r2)
        uc.reg_write(UC_S390X_REG_PSWM, PSWM_DAT_SECONDARY_64)
        uc.emu_start(CODE, CODE + len(LRAG_R2_0_R3))
        return (uc.reg_read(UC_S390X_REG_PSWM) >> 44) & 3, uc.reg_read(UC_S390X_REG_R2)


def comparable(cc: int, r1: int) -> tuple[int, int]:
    """Reduce an LRA result to what this QEMU gets right: the whole R1 on cc 0, the low
    word (``0x80000000 | code``) on cc 3."""
    return (cc, r1 if cc == 0 else r1 & 0xFFFF_FFFF)


def in_code_guard(addr: int) -> bool:
    """Whether a table at ``addr`` (up to 16K) could overlap the oracle's code page."""
    return CODE_GUARD[0] <= (addr & ~0xFFF) < CODE_GUARD[1]
