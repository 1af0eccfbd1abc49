"""Linux's s390 page-table allocator (``arch/s390/mm/pgalloc.c``) in five versions, over
the bytes of an emulated machine, written as atomic steps for the interleaving explorer.

>>> from pgalloc import Kernel, mm
>>> k = Kernel("v64", mem_size=8 << 20, checks=True)
>>> m = mm.mm_alloc(k)
>>> a, b = k.page_table_alloc(m), k.page_table_alloc(m)
>>> b - a, hex(k.byte(k.mem_map.virt_to_page(a)))
(2048, '0x3')
"""

from .checks import PgallocError, Violation, check_all, check_quiescent, reachability
from .kernel import Kernel, TraceEvent
from .steps import BLOCKED, DONE, Call, Path, step
from .versions import VERSIONS
from . import mm

__all__ = ["BLOCKED", "DONE", "Call", "Kernel", "Path", "PgallocError", "TraceEvent", "VERSIONS",
           "Violation", "check_all", "check_quiescent", "mm", "reachability", "step"]
