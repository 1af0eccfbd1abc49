"""The machine package's exceptions: one root, the address under one name.

Every error ``s390emu`` raises is an ``S390emuError``; one that concerns a place in
storage carries it as ``address`` (an absolute address, or a ``struct page`` or
``list_head`` pointer, which are the same thing under the identity mapping).  The
classes themselves live next to what raises them (``AddressingError`` in ``memory``,
``FrameError`` in ``frames``, ...); ``s390emu`` exports them all.

Misuse of the API (an argument no machine could have) raises ``InvalidArgument``.  It
is also a ``ValueError``, so that code written when these were plain ``ValueError``\\ s
still catches them.
"""

from __future__ import annotations


class S390emuError(Exception):
    """The root of the machine package's errors; ``address`` is where, or None.

    >>> from s390emu import AddressingError, PhysicalMemory
    >>> try:
    ...     PhysicalMemory(1 << 20).read_u64(1 << 20)
    ... except S390emuError as e:
    ...     hex(e.address)
    '0x100000'
    """

    address: int | None = None


class InvalidArgument(S390emuError, ValueError):
    """An argument the API cannot accept (a machine of 0 CPUs, a misaligned table)."""
