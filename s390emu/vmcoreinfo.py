"""VMCOREINFO: the ``KEY=value`` text a kernel publishes for dump readers, parsed once.

The text is what kdump copies into the dump's ``VMCOREINFO`` note.  In storage the
kernel keeps it as that ELF note (``vmcoreinfo_note``: an ``Elf64_Nhdr``, the name
``VMCOREINFO``, the text), and the absolute lowcore's ``vmcore_info`` doubleword at
0xe0c (unaligned, ``arch/s390/include/asm/lowcore.h`` from v3.x to v6.x) holds its
physical address (``arch_crash_save_vmcoreinfo``: ``abs_lc->vmcore_info =
paddr_vmcoreinfo_note()``), which is how zgetdump and crash find it in a dump without
the note.  s390emu images written before this followed kept a word at 0xe0c pointing
at the bare text; ``stored_text`` still reads those.
``parse`` reads the text, ``stored_text``/``read_vmcoreinfo`` find it in storage, and
``number``/``symbol`` read one key the way makedumpfile does, raising ``LayoutError``
when the key a decoder needs is missing or malformed.
"""

from __future__ import annotations

from .errors import S390emuError
from .memory import PhysicalMemory
from .structs import lowcore

import struct

VMCOREINFO_MAX = 0x800     # the note's room in an s390emu machine (``machine.VMCOREINFO``)
_TEXT_MAX = 0x1000         # what a reader takes at most: one page, as kdump does
NOTE_NAME = b"VMCOREINFO\0"
NOTE_HEADER = 12 + 12      # Elf64_Nhdr, then the name padded to 4 bytes


class LayoutError(S390emuError, ValueError):
    """VMCOREINFO lacks what decoding a kernel structure needs (``SYMBOL(mem_map)``, ...).

    Also a ``ValueError``: ``Machine.attach`` raised that before, and its callers catch it.
    """


def parse(text: bytes) -> dict[str, str]:
    """The ``KEY=value`` lines of ``text`` (up to its first NUL) as a dict.

    >>> parse(b"OSRELEASE=6.6.0\\nSIZE(page)=64\\n\\0junk")
    {'OSRELEASE': '6.6.0', 'SIZE(page)': '64'}
    """
    out = {}
    for line in text.split(b"\0", 1)[0].decode("ascii", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def note(text: bytes) -> bytes:
    """``text`` as the kernel's ``vmcoreinfo_note`` holds it (an ELF note, type 0).

    >>> note(b"PAGESIZE=4096\\n")[:24]
    b'\\x00\\x00\\x00\\x0b\\x00\\x00\\x00\\x0e\\x00\\x00\\x00\\x00VMCOREINFO\\x00\\x00'
    """
    return (struct.pack(">III", len(NOTE_NAME), len(text), 0) + NOTE_NAME + b"\0"
            + text + bytes(-len(text) % 4))


def _note_text(mem: PhysicalMemory, at: int, limit: int) -> bytes | None:
    """The text of the ``VMCOREINFO`` note at ``at``, or None when none lies there."""
    if not at or not mem.contains(at, NOTE_HEADER):
        return None
    namesz, descsz, ntype = struct.unpack(">III", mem.read(at, 12))
    if namesz != len(NOTE_NAME) or ntype != 0 or mem.read(at + 12, namesz) != NOTE_NAME:
        return None
    descsz = min(descsz, limit, mem.size - at - NOTE_HEADER)
    return mem.read(at + NOTE_HEADER, descsz).split(b"\0", 1)[0]


def stored_text(mem: PhysicalMemory, at: int | None = None, limit: int = _TEXT_MAX) -> bytes:
    """The VMCOREINFO text in storage, at most ``limit`` bytes; ``b""`` when there is none.

    ``at`` is a note's address; by default the one ``lowcore.vmcore_info`` holds, else
    (an older s390emu image) the bare text the word at 0xe0c points at.
    """
    if at is not None:
        return _note_text(mem, at, limit) or b""
    if mem.size < 0x2000:
        return b""
    text = _note_text(mem, int.from_bytes(mem.read(lowcore.vmcore_info, 8), "big"), limit)
    if text is not None:
        return text
    legacy = mem.read_u32(lowcore.vmcore_info)
    if not legacy or not mem.contains(legacy, 1):
        return b""
    return mem.read(legacy, min(limit, mem.size - legacy)).split(b"\0", 1)[0]


def read_vmcoreinfo(mem: PhysicalMemory) -> dict[str, str]:
    """Parse the VMCOREINFO text ``lowcore.vmcore_info`` points at ({} if there is none)."""
    return parse(stored_text(mem))


def number(vmcoreinfo: dict[str, str], key: str, base: int = 10) -> int:
    """The integer value of ``key`` (``SYMBOL(...)`` keys are hex: ``base=16``).

    >>> number({"SIZE(page)": "64"}, "SIZE(page)")
    64
    >>> number({}, "SYMBOL(mem_map)", 16)
    Traceback (most recent call last):
    ...
    s390emu.vmcoreinfo.LayoutError: VMCOREINFO has no usable SYMBOL(mem_map)
    """
    try:
        return int(vmcoreinfo[key], base)
    except (KeyError, ValueError):
        raise LayoutError(f"VMCOREINFO has no usable {key}") from None


def symbol(vmcoreinfo: dict[str, str], name: str) -> int:
    """The address ``SYMBOL(name)`` gives (``LayoutError`` without it)."""
    return number(vmcoreinfo, f"SYMBOL({name})", 16)
