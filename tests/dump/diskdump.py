"""A kdump-compressed (diskdump) file written from scratch, for the reader's edge cases.

makedumpfile's layout (``diskdump_mod.h``, header version 6), big-endian as an s390x
dump is: block 0 the ``disk_dump_header``, block 1 the ``kdump_sub_header`` (the ELF
notes right after it, as QEMU places them), then the two bitmaps (memory present, pages
dumped: bit ``pfn % 8`` of byte ``pfn // 8``), then one 24-byte ``page_desc`` (offset,
size, flags, page_flags) per dumped page in pfn order, then the pages, uncompressed
(flags 0).  Written from the format, independently of ``s390emu.kdump``.
"""

from __future__ import annotations

import struct

PAGE = 4096


def diskdump(pages: dict[int, bytes], max_pfn: int, *, block_size: int = PAGE, notes: bytes = b"",
             unreadable: tuple[int, ...] = ()) -> bytes:
    """The file: ``pages`` (pfn -> one page of bytes) dumped out of ``max_pfn``; the pfns
    in ``unreadable`` are in the bitmap but their descriptor says zlib (flags 1) over 16 bytes that are not zlib."""
    bs = block_size
    bitmap_len = -(-max(max_pfn, 1) // 8)
    half = -(-bitmap_len // bs)                      # blocks per bitmap
    head = bytearray(bs)
    head[0:8] = b"KDUMP   "
    struct.pack_into(">i", head, 8, 6)
    head[12 + 4 * 65:12 + 4 * 65 + 5] = b"s390x"      # utsname.machine
    struct.pack_into(">IiiIIIIIIi", head, 424, 0, bs, 1, 2 * half, max_pfn, 0, 0, 0, 0, 0)
    sub = bytearray(bs)
    note_at = bs + 104
    struct.pack_into(">QiiQQQQQQQQQQQ", sub, 0, 0, 1, 0, 0, 0, 0, 0, note_at if notes else 0, len(notes),
                     0, 0, 0, 0, max_pfn)
    sub[104:104 + len(notes)] = notes
    present = bytearray(half * bs)
    dumped = bytearray(half * bs)
    for pfn in range(max_pfn):
        present[pfn // 8] |= 1 << (pfn % 8)
    order = sorted(set(pages) | set(unreadable))
    for pfn in order:
        dumped[pfn // 8] |= 1 << (pfn % 8)
    descs_at = (2 + 2 * half) * bs
    data_at = descs_at + -(-24 * len(order) // bs) * bs
    descs, data = bytearray(), bytearray()
    for pfn in order:
        if pfn in unreadable:
            descs += struct.pack(">QIIQ", data_at + len(data), 16, 1, 0)
            data += b"not zlib" * 2
            continue
        descs += struct.pack(">QIIQ", data_at + len(data), bs, 0, 0)
        data += pages[pfn]
    descs += bytes(data_at - descs_at - len(descs))
    return bytes(head + sub + present + dumped + descs + data)
