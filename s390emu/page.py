"""``struct page`` and the ``mem_map`` array, as views over emulated storage.

A page is named by the address of its ``struct page`` (a kernel pointer), exactly as
kernel code passes ``struct page *`` around.  Every accessor reads or writes the bytes;
there is no Python-side copy of any field.
"""

from __future__ import annotations

from . import structs as S
from .memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

_PAGE = S.page
# Field offsets resolved once (Struct's attribute lookup is dynamic; these are hot).
_SIZE, _FLAGS, _REFCOUNT, _PAGE_TYPE = _PAGE.size, _PAGE.flags, _PAGE._refcount, _PAGE.page_type


class MemMap:
    """The ``mem_map`` array: one 64-byte ``struct page`` per 4K frame of storage.

    >>> from s390emu.memory import PhysicalMemory
    >>> mm = MemMap(PhysicalMemory(1 << 20), base=0x4000)
    >>> hex(mm.pfn_to_page(1)), mm.page_to_pfn(0x4040)
    ('0x4040', 1)
    """

    __slots__ = ("mem", "base", "nr_pages")

    def __init__(self, mem: PhysicalMemory, base: int):
        self.mem = mem
        self.base = base
        self.nr_pages = mem.size >> PAGE_SHIFT

    # -- address conversions (kernel names) ------------------------------------------

    def pfn_to_page(self, pfn: int) -> int:
        """The ``struct page`` address of frame ``pfn``."""
        return self.base + pfn * _SIZE

    def page_to_pfn(self, page: int) -> int:
        """The frame number described by ``page``."""
        return (page - self.base) // _SIZE

    def virt_to_page(self, addr: int) -> int:
        """The ``struct page`` of the frame holding (identity-mapped) ``addr``."""
        return self.pfn_to_page(addr >> PAGE_SHIFT)

    def page_address(self, page: int) -> int:
        """The (identity-mapped) address of the frame ``page`` describes."""
        return self.page_to_pfn(page) << PAGE_SHIFT

    def is_page(self, page: int) -> bool:
        """Whether ``page`` points at the start of a ``struct page`` in ``mem_map``."""
        off = page - self.base
        return 0 <= off < self.nr_pages * _SIZE and off % _SIZE == 0

    # -- fields ------------------------------------------------------------------------

    def flags(self, page: int) -> int:
        """``page->flags``."""
        return self.mem.read_u64(page + _FLAGS)

    def test_flag(self, page: int, bit: int) -> bool:
        """``PageXxx(page)`` for flag number ``bit``."""
        return bool(self.flags(page) >> bit & 1)

    def set_flag(self, page: int, bit: int, on: bool = True) -> bool:
        """Set (or clear) flag ``bit``; return its old value (``TestSetPageXxx``)."""
        old = self.flags(page)
        new = old | (1 << bit) if on else old & ~(1 << bit)
        self.mem.write_u64(page + _FLAGS, new)
        return bool(old >> bit & 1)

    def refcount(self, page: int) -> int:
        """The whole 32-bit ``page->_refcount`` word."""
        return self.mem.read_u32(page + _REFCOUNT)

    def set_refcount(self, page: int, value: int) -> None:
        """``set_page_count`` on the whole word."""
        self.mem.write_u32(page + _REFCOUNT, value)

    def atomic_xor(self, page: int, bits: int) -> int:
        """``atomic_xor`` on ``_refcount``; returns the new word (s390 ``atomic_xor_bits``)."""
        new = self.refcount(page) ^ bits
        self.set_refcount(page, new)
        return new

    def field(self, page: int, name: str) -> int:
        """A pointer-sized field of ``struct page`` by name (``lru.next``, ``pt_mm``, ...)."""
        return self.mem.read_u64(page + _PAGE.fields[name])

    def set_field(self, page: int, name: str, value: int) -> None:
        """Store a pointer-sized field of ``struct page`` by name."""
        self.mem.write_u64(page + _PAGE.fields[name], value)

    def page_type(self, page: int) -> int:
        """``page->page_type`` (stored inverted: ``0xffffffff`` means none)."""
        return self.mem.read_u32(page + _PAGE_TYPE)

    def set_page_type(self, page: int, value: int) -> None:
        """Store ``page->page_type``."""
        self.mem.write_u32(page + _PAGE_TYPE, value)

    def has_type(self, page: int, pg_type: int) -> bool:
        """``PageBuddy``/``PageTable``: the inverted type bit is clear."""
        return not self.page_type(page) & pg_type


def frame_of(addr: int) -> int:
    """The 4K frame address containing ``addr``."""
    return addr & ~(PAGE_SIZE - 1)
