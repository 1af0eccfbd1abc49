"""Linux's s390 page-table encodings (``arch/s390/include/asm/pgtable.h``), declared once.

The values are those of v5.15 .. v6.7, the releases the allocator versions model (they
did not change in between): region and segment table entries, the PTE bits the mm code
writes, the user ASCE bits and the region sizes that pick the top level.  Checked
against Linux: ``_SEGMENT_ENTRY`` is ``(0)`` (``0x01`` is ``_SEGMENT_ENTRY_READ``, a
software bit of large segments only), ``_SEGMENT_ENTRY_EMPTY`` is
``_SEGMENT_ENTRY_INVALID``, ``_REGIONn_ENTRY`` is the type with ``_REGION_ENTRY_LENGTH``.

This module imports nothing: every other module takes its encodings from here.
"""

# Region-first/second/third and segment table entries.
_REGION_ENTRY_INVALID = 0x20
_REGION_ENTRY_TYPE_R1, _REGION_ENTRY_TYPE_R2, _REGION_ENTRY_TYPE_R3 = 0x0C, 0x08, 0x04
_REGION_ENTRY_LENGTH = 0x03
_REGION1_ENTRY = _REGION_ENTRY_TYPE_R1 | _REGION_ENTRY_LENGTH              # 0x0f
_REGION1_ENTRY_EMPTY = _REGION_ENTRY_TYPE_R1 | _REGION_ENTRY_INVALID       # 0x2c
_REGION2_ENTRY = _REGION_ENTRY_TYPE_R2 | _REGION_ENTRY_LENGTH              # 0x0b
_REGION2_ENTRY_EMPTY = _REGION_ENTRY_TYPE_R2 | _REGION_ENTRY_INVALID       # 0x28
_REGION3_ENTRY = _REGION_ENTRY_TYPE_R3 | _REGION_ENTRY_LENGTH              # 0x07
_REGION3_ENTRY_EMPTY = _REGION_ENTRY_TYPE_R3 | _REGION_ENTRY_INVALID       # 0x24
_SEGMENT_ENTRY_ORIGIN = ~0x7FF
_SEGMENT_ENTRY_INVALID = 0x20
_SEGMENT_ENTRY_LARGE = 0x400
_SEGMENT_ENTRY = 0
_SEGMENT_ENTRY_EMPTY = _SEGMENT_ENTRY_INVALID                              # 0x20

# Page table entries.
_PAGE_PRESENT, _PAGE_YOUNG, _PAGE_DIRTY, _PAGE_READ, _PAGE_WRITE = 0x001, 0x004, 0x008, 0x010, 0x020
_PAGE_PROTECT = 0x200
_PAGE_INVALID = 0x400           # pte_none: exactly this value

# Address-space-control elements.
_ASCE_SPACE_SWITCH, _ASCE_ALT_EVENT, _ASCE_PRIVATE_SPACE = 0x40, 0x80, 0x100
_ASCE_USER_BITS = _ASCE_SPACE_SWITCH | _ASCE_PRIVATE_SPACE | _ASCE_ALT_EVENT   # 0x1c0
_ASCE_TYPE_REGION1, _ASCE_TYPE_REGION2, _ASCE_TYPE_REGION3 = 0x0C, 0x08, 0x04
_ASCE_TABLE_LENGTH = 0x03

# What one entry of each level maps; the top level follows from mm->context.asce_limit.
_REGION1_SIZE = 1 << 53         # 8 PiB: 4-level limit
_REGION2_SIZE = 1 << 42         # 4 TiB: 3-level limit
_REGION3_SIZE = 1 << 31
TASK_SIZE_MAX = (1 << 64) - 4096

_CRST_ENTRIES = 2048            # entries of a region or segment table (16K, order 2)
PTRS_PER_PTE = 256              # entries of a page table (2K)
CRST_ALLOC_ORDER = 2
