"""The page allocator: a buddy allocator whose whole state is in emulated storage.

As in ``mm/page_alloc.c``: one zone with ``free_area[MAX_ORDER + 1]``, each a
``list_head`` of free blocks threaded through ``page->lru``; a free block's head page
has ``PageBuddy`` set and its order in ``page->private``.  Allocation splits, freeing
merges with the buddy.  A page is freed when ``put_page_testzero`` drops the whole
32-bit ``_refcount`` word to zero, so a page-table page whose fragment byte is still
set is simply not freed (a leak the checks can see), exactly as on a real kernel.
Freed frames are poisoned with 0x6b so that a stale reader sees garbage.
"""

from __future__ import annotations

from . import lists
from . import structs as S
from .errors import S390emuError
from .memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from .page import MemMap

MAX_ORDER = 10


class FrameError(S390emuError):
    """A page-allocator misuse (double free, bad pointer, out of memory).

    ``address`` is the ``struct page`` concerned (0 when there is none, as for out of
    memory); ``page`` is its older name.
    """

    def __init__(self, address: int, msg: str):
        self.address = address
        super().__init__(msg)

    @property
    def page(self) -> int:
        """The older name of ``address``."""
        return self.address


class FrameAllocator:
    """Buddy allocator over ``mem_map`` with ``free_area`` at ``zone``.

    >>> from s390emu.machine import Machine
    >>> m = Machine(1 << 22)
    >>> addr = m.frames.alloc_pages(2)
    >>> addr % (4 * 4096), m.mem_map.refcount(m.mem_map.virt_to_page(addr))
    (0, 1)
    """

    def __init__(self, mem: PhysicalMemory, mem_map: MemMap, zone: int):
        self.mem = mem
        self.mem_map = mem_map
        self.zone = zone
        self.poison = True

    def _area(self, order: int) -> int:
        return self.zone + order * S.free_area.size

    def init_zone(self) -> None:
        """Empty every ``free_area`` list (boot)."""
        for order in range(MAX_ORDER + 1):
            lists.INIT_LIST_HEAD(self.mem, self._area(order))
            self.mem.write_u64(self._area(order) + S.free_area.nr_free, 0)

    def free_range(self, start_pfn: int, end_pfn: int) -> None:
        """Hand frames ``[start_pfn, end_pfn)`` to the allocator at boot, in aligned blocks."""
        pfn = start_pfn
        while pfn < end_pfn:
            order = MAX_ORDER
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end_pfn):
                order -= 1
            self._add_free(self.mem_map.pfn_to_page(pfn), order)
            pfn += 1 << order

    # -- free lists in the bytes ---------------------------------------------------------

    def _add_free(self, page: int, order: int) -> None:
        mm = self.mem_map
        mm.set_page_type(page, S.PAGE_TYPE_NONE & ~S.PG_buddy)
        mm.set_field(page, "private", order)
        mm.set_refcount(page, 0)
        lists.list_add(self.mem, page + S.page.lru, self._area(order))
        nr = self._area(order) + S.free_area.nr_free
        self.mem.write_u64(nr, self.mem.read_u64(nr) + 1)

    def _del_free(self, page: int, order: int) -> None:
        mm = self.mem_map
        lists.list_del(self.mem, page + S.page.lru)
        mm.set_page_type(page, S.PAGE_TYPE_NONE)
        mm.set_field(page, "private", 0)
        nr = self._area(order) + S.free_area.nr_free
        self.mem.write_u64(nr, self.mem.read_u64(nr) - 1)

    def nr_free(self, order: int | None = None) -> int:
        """Free frames in total (or free blocks of one ``order``)."""
        if order is not None:
            return self.mem.read_u64(self._area(order) + S.free_area.nr_free)
        return sum(self.nr_free(o) << o for o in range(MAX_ORDER + 1))

    # -- the allocator's interface (kernel names) ----------------------------------------

    def alloc_pages(self, order: int = 0) -> int:
        """Allocate ``2**order`` contiguous frames; return the first frame's address.

        The head page gets ``_refcount`` 1 and clean flags, as ``alloc_pages`` leaves it.
        The frames' contents are whatever was there (poison, after a free).
        """
        mm = self.mem_map
        for o in range(order, MAX_ORDER + 1):
            area = self._area(o)
            if not lists.list_empty(self.mem, area):
                page = self.mem.read_u64(area) - S.page.lru
                self._del_free(page, o)
                while o > order:  # split: give back the upper halves
                    o -= 1
                    self._add_free(page + (S.page.size << o), o)
                for i in range(1 << order):
                    p = page + i * S.page.size
                    mm.mem.write_u64(p + S.page.flags, 0)
                    mm.set_field(p, "lru.next", 0)
                    mm.set_field(p, "lru.prev", 0)
                    mm.set_field(p, "mapping", 0)
                    mm.set_field(p, "index", 0)
                    mm.set_field(p, "private", 0)
                    mm.set_page_type(p, S.PAGE_TYPE_NONE)
                    mm.set_refcount(p, 0)
                mm.set_refcount(page, 1)
                return mm.page_address(page)
        raise FrameError(0, f"out of memory: no free block of order {order}")

    def put_page_testzero(self, page: int) -> bool:
        """Drop one reference (``atomic_dec_and_test`` on the whole word)."""
        count = self.mem_map.refcount(page)
        if count == 0:
            raise FrameError(page, f"put_page on page {page:#x} whose _refcount is already 0 (double free)")
        self.mem_map.set_refcount(page, count - 1)
        return count - 1 == 0

    def put_pages(self, page: int, order: int) -> bool:
        """The kernel's ``__free_pages(page, order)``: drop a reference, free at zero.

        (Not named ``__free_pages``: Python would mangle that name inside classes.)

        Returns whether the block went back to the allocator.
        """
        self._check_page(page, order)
        if not self.put_page_testzero(page):
            return False
        self.free_pages_ok(page, order)
        return True

    def free_pages_ok(self, page: int, order: int) -> None:
        """Give a block whose count is already zero back to the free lists, merging buddies."""
        mm = self.mem_map
        if self.poison:
            self.mem.fill(mm.page_address(page), PAGE_SIZE << order, S.POISON_FREE)
        pfn = mm.page_to_pfn(page)
        while order < MAX_ORDER:
            buddy_pfn = pfn ^ (1 << order)
            if buddy_pfn >= mm.nr_pages:
                break
            buddy = mm.pfn_to_page(buddy_pfn)
            if not (mm.has_type(buddy, S.PG_buddy) and mm.field(buddy, "private") == order):
                break
            self._del_free(buddy, order)
            pfn &= ~(1 << order)
            order += 1
        self._add_free(mm.pfn_to_page(pfn), order)

    def free_pages(self, addr: int, order: int = 0) -> bool:
        """``free_pages(addr, order)``: drop a reference to the block at ``addr``."""
        return self.put_pages(self.mem_map.virt_to_page(addr), order)

    def _check_page(self, page: int, order: int) -> None:
        mm = self.mem_map
        if not mm.is_page(page):
            raise FrameError(page, f"free of {page:#x}, which is not a struct page")
        if mm.page_to_pfn(page) & ((1 << order) - 1):
            raise FrameError(page, f"free of order-{order} block at page {page:#x}, which is misaligned")
        if mm.has_type(page, S.PG_buddy):
            raise FrameError(page, f"double free: page {page:#x} (pfn {mm.page_to_pfn(page):#x}) is already free")

    def is_free(self, addr: int) -> bool:
        """Whether the frame holding ``addr`` is in a free block of the allocator."""
        mm = self.mem_map
        pfn = addr >> PAGE_SHIFT
        for order in range(MAX_ORDER + 1):
            head = pfn & ~((1 << order) - 1)
            page = mm.pfn_to_page(head)
            if mm.has_type(page, S.PG_buddy) and mm.field(page, "private") >= order:
                return pfn < head + (1 << mm.field(page, "private"))
        return False
