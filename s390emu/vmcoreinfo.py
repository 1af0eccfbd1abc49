"""VMCOREINFO: the ``KEY=value`` text a kernel publishes for dump readers, parsed once.

The text is what kdump copies into the dump's ``VMCOREINFO`` note and what the
absolute lowcore's ``vmcore_info`` word points at in storage (``structs.lowcore``).
``parse`` reads the text, ``stored_text``/``read_vmcoreinfo`` find it in storage, and
``number``/``symbol`` read one key the way makedumpfile does, raising ``LayoutError``
when the key a decoder needs is missing or malformed.
"""

from __future__ import annotations

from .errors import S390emuError
from .memory import PhysicalMemory
from .structs import lowcore

VMCOREINFO_MAX = 0x800     # the text's room in an s390emu machine (``machine.VMCOREINFO``)
_TEXT_MAX = 0x1000         # what a reader takes at most: one page, as kdump does


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


def stored_text(mem: PhysicalMemory, at: int | None = None, limit: int = _TEXT_MAX) -> bytes:
    """The VMCOREINFO text at ``at`` (default: where ``lowcore.vmcore_info`` points), at most
    ``limit`` bytes, up to its first NUL; ``b""`` when there is none."""
    if at is None:
        at = mem.read_u32(lowcore.vmcore_info) if mem.size >= 0x2000 else 0
    if not at or not mem.contains(at, 1):
        return b""
    return mem.read(at, min(limit, mem.size - at)).split(b"\0", 1)[0]


def read_vmcoreinfo(mem: PhysicalMemory) -> dict[str, str]:
    """Parse the VMCOREINFO text ``lowcore.vmcore_info`` points at ({} if there is none)."""
    return parse(stored_text(mem, limit=VMCOREINFO_MAX))


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
