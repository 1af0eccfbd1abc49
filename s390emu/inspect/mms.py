"""The live mms of a dump, from its VMCOREINFO alone.

An s390emu kernel keeps every live ``mm_struct`` on one list, published as
``SYMBOL(s390emu_mm_list)``, threaded through ``OFFSET(mm_struct.mmlist)``.  The list is
read as crash reads lists (``lists.list_entries(..., lenient=True)``): a corrupt link
ends it, it does not stop the reader.
"""

from __future__ import annotations

from ..lists import list_entries
from ..memory import PhysicalMemory
from ..vmcoreinfo import number, symbol


def live_mms(mem: PhysicalMemory, vmcoreinfo: dict[str, str]) -> list[int]:
    """Every ``mm_struct`` on the kernel's mm list (``LayoutError`` without its keys).

    >>> from pgalloc.demo import build_demo
    >>> from s390emu.vmcoreinfo import read_vmcoreinfo
    >>> d = build_demo("v66")
    >>> live_mms(d.machine.mem, read_vmcoreinfo(d.machine.mem)) == [d.mm3, d.mm5]
    True
    """
    head = symbol(vmcoreinfo, "s390emu_mm_list")
    off = number(vmcoreinfo, "OFFSET(mm_struct.mmlist)")
    return [n - off for n in list_entries(mem, head, lenient=True)]
