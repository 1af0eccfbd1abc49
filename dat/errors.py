"""The DAT package's exceptions: one root, the address under one name.

``DatError`` is the root of everything ``dat`` raises.  ``TranslationException``
(``walker``) is the architecture's program interruption for the virtual ``address``
it was raised for; ``InvalidArgument`` is misuse of the API (an access type that does
not exist), and is also a ``ValueError`` so that code that caught the ``ValueError``
raised before still does.  ``dat`` imports nothing of the project but
``s390emu.memory``, so its root is its own, not ``s390emu.S390emuError``.
"""

from __future__ import annotations


class DatError(Exception):
    """The root of the DAT package's errors; ``address`` is the virtual address, or None."""

    address: int | None = None


class InvalidArgument(DatError, ValueError):
    """An argument the walker cannot accept (``access="exec"``).

    >>> from s390emu.memory import PhysicalMemory
    >>> import dat
    >>> dat.translate(PhysicalMemory(1 << 20), 0x10003, 0, access="exec")
    Traceback (most recent call last):
    ...
    dat.errors.InvalidArgument: access must be one of read, write, fetch, lra, not 'exec'
    """
