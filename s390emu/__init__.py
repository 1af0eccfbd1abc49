"""s390emu: a byte-level emulator of s390x storage as Linux lays it out.

The machine layer: ``PhysicalMemory`` (absolute storage), ``struct page`` and the
``mem_map`` array, the buddy page allocator and the lowcores, all in the bytes.
"""

from .memory import AddressingError, ImageError, PhysicalMemory, PAGE_SIZE
from .machine import Machine

__all__ = ["AddressingError", "ImageError", "Machine", "PhysicalMemory", "PAGE_SIZE"]
