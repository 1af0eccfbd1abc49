"""Every error pgalloc raises, under one root, ``PgallocError``.

Each carries the address it is about as ``address`` (a ``struct page``, a table, a lock
word; ``None`` when there is none), the name the whole project uses (``s390emu`` and
``dat`` too).  ``page`` stays readable as an alias: tests and users read it.

This module imports nothing of the project: every other module may import it.
"""

from __future__ import annotations


class PgallocError(Exception):
    """The root of pgalloc's errors."""

    address: int | None = None

    @property
    def page(self) -> int | None:
        """The old name of ``address`` (the ``struct page`` the error is about)."""
        return self.address

    @page.setter
    def page(self, value: int | None) -> None:
        self.address = value


class Violation(PgallocError):
    """A broken invariant: ``name``, the ``address`` (struct page), a message with the
    bits before/after, and ``step`` (CPU, context, function, label)."""

    def __init__(self, name: str, page: int, message: str, step: str = ""):
        self.name = name
        self.address = page
        self.message = message
        self.step = step
        super().__init__(f"[{name}] page {page:#x}: {message}" + (f" (at {step})" if step else ""))


class BadTable(PgallocError, ValueError):
    """Bad input to the allocator (kernel WARN style): a never-allocated, misaligned or
    another mm's table.  ``name`` (the function), ``address`` (its struct page), a message
    with the bits.  Raised before any byte changes."""

    def __init__(self, name: str, page: int, message: str):
        self.name = name
        self.address = page
        self.message = message
        super().__init__(f"WARNING: {name}: page {page:#x}: {message}")


class MisuseError(PgallocError, RuntimeError):
    """The kernel object used against its own rules: a function started on a busy CPU, a
    callback run before its grace period, a grace period asked for inside a read-side
    section.  (A ``RuntimeError`` too, which is what these were.)"""


class MmError(PgallocError):
    """An mm operation that cannot be done (out of memory, bad range)."""


class StepError(PgallocError, TypeError):
    """A kernel function whose steps do not hold together: a successor that names no
    step of the class (found when the class is created, or, for a step whose successors
    cannot be read from its body, when it returns the label)."""


class VersionError(PgallocError):
    """A version that is neither built in nor a loadable version file."""


class AttachError(PgallocError, ValueError):
    """The storage is not an s390emu machine run by a pgalloc kernel (one-line message)."""
