"""``include/linux/list.h`` over emulated storage: a ``list_head`` is two pointers.

Nodes and heads are addresses of ``struct list_head`` (16 bytes: next, prev).  As in
the kernel, ``list_del`` poisons the removed node with ``LIST_POISON1/2`` so that a
second ``list_del`` or a walk through a removed node reads garbage, and
``list_del_init`` leaves it pointing at itself so that ``list_empty`` says "unlisted".
"""

from __future__ import annotations

from .errors import S390emuError
from .memory import PhysicalMemory
from .structs import LIST_POISON1, LIST_POISON2


class ListCorruption(S390emuError):
    """``CONFIG_DEBUG_LIST`` found a corrupted list at ``address`` (older name ``addr``)."""

    def __init__(self, address: int, msg: str):
        self.address = address
        super().__init__(f"list corruption at {address:#x}: {msg}")

    @property
    def addr(self) -> int:
        """The older name of ``address``."""
        return self.address


def INIT_LIST_HEAD(mem: PhysicalMemory, head: int) -> None:
    """Make ``head`` an empty list (both pointers to itself)."""
    mem.write_u64(head, head)
    mem.write_u64(head + 8, head)


def list_empty(mem: PhysicalMemory, head: int) -> bool:
    """Whether ``head->next == head``."""
    return mem.read_u64(head) == head


def _add(mem: PhysicalMemory, new: int, prev: int, nxt: int) -> None:
    # __list_add_valid(): the neighbours must point at each other.
    if mem.read_u64(nxt + 8) != prev or mem.read_u64(prev) != nxt:
        raise ListCorruption(new, f"list_add between {prev:#x} and {nxt:#x}, which are not linked")
    if new in (prev, nxt):
        raise ListCorruption(new, "list_add of an entry that is already there (double add)")
    mem.write_u64(nxt + 8, new)
    mem.write_u64(new, nxt)
    mem.write_u64(new + 8, prev)
    mem.write_u64(prev, new)


def list_add(mem: PhysicalMemory, new: int, head: int) -> None:
    """Insert ``new`` right after ``head``."""
    _add(mem, new, head, mem.read_u64(head))


def list_add_tail(mem: PhysicalMemory, new: int, head: int) -> None:
    """Insert ``new`` right before ``head`` (at the tail)."""
    _add(mem, new, mem.read_u64(head + 8), head)


def _unlink(mem: PhysicalMemory, entry: int) -> None:
    nxt, prev = mem.read_u64(entry), mem.read_u64(entry + 8)
    if nxt == LIST_POISON1 or prev == LIST_POISON2:
        raise ListCorruption(entry, "list_del of an entry that was already deleted (LIST_POISON)")
    if not (mem.contains(prev, 16) and mem.contains(nxt, 16)):
        raise ListCorruption(entry, f"list_del with pointers outside storage ({prev:#x}, {nxt:#x})")
    if mem.read_u64(prev) != entry or mem.read_u64(nxt + 8) != entry:
        raise ListCorruption(entry, "list_del of an entry whose neighbours do not point at it")
    mem.write_u64(nxt + 8, prev)
    mem.write_u64(prev, nxt)


def list_del(mem: PhysicalMemory, entry: int) -> None:
    """Unlink ``entry`` and poison it (``LIST_POISON1``/``LIST_POISON2``)."""
    _unlink(mem, entry)
    mem.write_u64(entry, LIST_POISON1)
    mem.write_u64(entry + 8, LIST_POISON2)


def list_del_init(mem: PhysicalMemory, entry: int) -> None:
    """Unlink ``entry`` (if linked) and leave it an empty list."""
    if not list_empty(mem, entry):
        _unlink(mem, entry)
    INIT_LIST_HEAD(mem, entry)


def list_entries(mem: PhysicalMemory, head: int, limit: int = 1 << 20, *, lenient: bool = False) -> list[int]:
    """The node addresses of the list at ``head``, in order.

    Raises ``ListCorruption`` on a broken back pointer, a pointer outside storage or a
    list longer than ``limit`` (a cycle that does not pass through ``head``).

    ``lenient=True`` reads a list the way dump readers do (crash's ``list``): only the
    ``next`` pointers are followed, and the walk ends quietly where the strict one
    would raise: at a head or node outside storage, at a node seen before, or after
    ``limit`` nodes.

    >>> from s390emu.memory import PhysicalMemory
    >>> mem = PhysicalMemory(1 << 20)
    >>> INIT_LIST_HEAD(mem, 0x100); list_add_tail(mem, 0x200, 0x100); list_add_tail(mem, 0x300, 0x100)
    >>> [hex(n) for n in list_entries(mem, 0x100)]
    ['0x200', '0x300']
    >>> mem.write_u64(0x300, 0x200)                       # a cycle that misses the head
    >>> [hex(n) for n in list_entries(mem, 0x100, lenient=True)]
    ['0x200', '0x300']
    """
    if not lenient:
        return _strict_entries(mem, head, limit)
    out: list[int] = []
    if not mem.contains(head, 16):
        return out
    seen = {head}                        # where a cycle that misses head closes
    node = mem.read_u64(head)
    while node != head:
        if node in seen or not mem.contains(node, 16) or len(out) >= limit:
            break
        seen.add(node)
        out.append(node)
        node = mem.read_u64(node)
    return out


def _strict_entries(mem: PhysicalMemory, head: int, limit: int) -> list[int]:
    """``list_entries``' strict walk: every node's back pointer checked.  (The checks
    walk the page-table lists after every step the explorer takes: the hot path.)"""
    out: list[int] = []
    read, contains = mem.read_u64, mem.contains
    prev, node = head, read(head)
    while node != head:
        if not contains(node, 16) or read(node + 8) != prev:
            raise ListCorruption(node, f"broken link after {prev:#x}")
        out.append(node)
        if len(out) > limit:
            raise ListCorruption(head, "list does not end (cycle)")
        prev, node = node, read(node)
    return out
