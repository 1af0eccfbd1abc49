"""s390emu: a byte-level emulator of s390x storage as Linux lays it out.

The machine layer: ``PhysicalMemory`` (absolute storage), ``struct page`` and the
``mem_map`` array, the buddy page allocator and the lowcores, all in the bytes; dumps
(``dump``); and on top, the dump-inspection library (``inspect``) and the CLI.

Every error is an ``S390emuError`` (``errors``), the address it concerns under
``address``.
"""

from .errors import InvalidArgument, S390emuError
from .memory import AddressingError, ImageError, PhysicalMemory, PAGE_SIZE
from .frames import FrameError
from .lists import ListCorruption
from .machine import Machine
from .vmcoreinfo import LayoutError
from .dump import DumpError

__all__ = ["AddressingError", "DumpError", "FrameError", "ImageError", "InvalidArgument", "LayoutError",
           "ListCorruption", "Machine", "PhysicalMemory", "PAGE_SIZE", "S390emuError"]
