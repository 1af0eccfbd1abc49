"""Physical (absolute) storage of an emulated s390x machine.

Storage is one numpy byte array, big-endian like the machine: absolute address 0 is
element 0.  ``np.zeros`` is backed by anonymous zero pages, so a 4 GiB machine costs
only the pages that are written; a dump is mapped (``mapped``), so that the process
grows with the pages read, not with the dump.  ``u64`` and ``u32`` are big-endian views over the
same bytes, for whole tables and batches; nothing is ever copied behind the caller's
back, so every view sees every write.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np

from .errors import InvalidArgument, S390emuError

PAGE_SIZE = 4096
PAGE_SHIFT = 12


class AddressingError(S390emuError):
    """An access outside configured storage (program-interruption code 0x05).

    ``address`` is the first absolute address that does not exist (also readable as
    ``addr``, its older name).
    """

    code = 0x05

    def __init__(self, address: int, size: int = 1):
        self.address = address
        self.size = size
        super().__init__(f"addressing exception: absolute address {address:#x} (+{size}) is outside storage")

    @property
    def addr(self) -> int:
        """The older name of ``address``."""
        return self.address


class ImageError(S390emuError):
    """A raw memory image that cannot be used as storage (missing, unreadable, wrong size)."""


# Linux's mmap flags that Python's mmap module does not name (asm-generic/mman*.h).
_MAP_FIXED = 0x10
_MAP_NORESERVE = 0x4000
_libc = None


def _map_fixed(addr: int, length: int, fd: int, offset: int) -> None:
    """Map ``length`` bytes of ``fd`` from ``offset`` copy-on-write at ``addr``, in place
    of the anonymous pages there (``MAP_FIXED``: the reservation stays one array)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_long)
    got = _libc.mmap(addr, length, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | _MAP_FIXED | _MAP_NORESERVE, fd, offset)
    if got != addr:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _pread_into(fd: int, buf: np.ndarray, offset: int) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (a read returns at most 2 GiB at a time)."""
    view, done = memoryview(buf), 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(f"the file ends at {offset + done:#x}, inside a segment")
        done += n


def _map_file(fd: int, offset: int, size: int) -> np.ndarray:
    """``size`` bytes of the file from ``offset`` (any alignment), copy-on-write and not
    charged against overcommit (``np.memmap`` would be: a 64 GiB image could not open)."""
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(fd, size + offset - start, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
    return np.frombuffer(m, dtype=np.uint8, count=size, offset=offset - start)


def _reserve(size: int) -> np.ndarray:
    """``size`` zero bytes of anonymous memory, not charged against overcommit: a 64 GiB
    dump's storage on a 24 GiB machine costs only the pages that are touched."""
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    return np.frombuffer(m, dtype=np.uint8)


class PhysicalMemory:
    """Absolute storage of ``size`` bytes, a whole number of 4K frames.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.write_u64(0x1000, 0x20)
    >>> hex(mem.read_u64(0x1000)), mem.read(0x1007, 1)
    ('0x20', b' ')
    """

    __slots__ = ("data", "u64", "u32", "view", "size")

    def __init__(self, size: int, *, _data: np.ndarray | None = None):
        if size <= 0 or size % PAGE_SIZE:
            raise InvalidArgument(f"storage size {size:#x} is not a positive multiple of 4K")
        self.size = size
        self.data = np.zeros(size, dtype=np.uint8) if _data is None else _data
        # Views, not copies: a write through any of them is seen by all.
        self.u64 = self.data.view(">u8")
        self.u32 = self.data.view(">u4")
        self.view = memoryview(self.data)   # for struct.unpack_from on hot paths

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, image: bytes | bytearray | memoryview) -> "PhysicalMemory":
        """Storage holding a copy of ``image`` (absolute address 0 = first byte).

        >>> PhysicalMemory.from_bytes(bytes(8192)).size
        8192
        """
        if len(image) == 0 or len(image) % PAGE_SIZE:
            raise ImageError(f"image size {len(image)} is not a positive multiple of 4096")
        return cls(len(image), _data=np.frombuffer(bytes(image), dtype=np.uint8).copy())

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PhysicalMemory":
        """Storage over a raw image file, mapped copy-on-write.

        The file is never written: stores go to private pages of this process.
        Raises ``ImageError`` for a missing, unreadable or wrongly sized file.
        """
        path = Path(path)
        try:
            size = path.stat().st_size
            if size == 0 or size % PAGE_SIZE:
                raise ImageError(f"{path}: size {size} is not a positive multiple of 4096")
            with open(path, "rb") as f:
                data = _map_file(f.fileno(), 0, size)
        except OSError as e:
            raise ImageError(f"{path}: {e.strerror or e}") from None
        return cls(size, _data=data)

    @classmethod
    def mapped(cls, f, size: int, segments) -> "PhysicalMemory":
        """Storage of ``size`` bytes whose ``(paddr, filesz, offset)`` segments are the
        bytes of the open file ``f`` at ``offset``, mapped copy-on-write; the rest reads 0.

        Nothing is read until it is touched, and stores go to private pages (the file
        is never written).  A segment whose file offset is not page-congruent with its
        address cannot be mapped in place and is copied (the process then grows by it);
        a dump that is one segment from address 0 is mapped whole at any offset.
        Raises ``OSError`` (or ``ValueError`` for a size the platform cannot map).
        """
        segs = [(p, n, o) for p, n, o in segments if n]
        if len(segs) == 1 and segs[0][0] == 0 and segs[0][1] >= size:
            return cls(size, _data=_map_file(f.fileno(), segs[0][2], size))
        data = _reserve(size)
        base = data.ctypes.data
        for paddr, filesz, offset in segs:
            end = paddr + filesz
            lo = hi = paddr
            if (offset - paddr) % PAGE_SIZE == 0:
                # Whole pages inside the segment are mapped; its partial first and last
                # pages are copied, so that no byte beyond p_filesz shows through.
                lo = min(-(-paddr // PAGE_SIZE) * PAGE_SIZE, end)
                hi = max(lo, end // PAGE_SIZE * PAGE_SIZE)
                if hi > lo:
                    _map_fixed(base + lo, hi - lo, f.fileno(), offset + lo - paddr)
            for a, b in ((paddr, lo), (hi, end)):
                _pread_into(f.fileno(), data[a:b], offset + a - paddr)
        return cls(size, _data=data)

    def copy(self) -> "PhysicalMemory":
        """An independent copy of the whole storage."""
        return PhysicalMemory(self.size, _data=np.array(self.data, copy=True))

    # -- access -----------------------------------------------------------------------------

    def contains(self, addr: int, length: int = 1) -> bool:
        """Whether ``length`` bytes at ``addr`` all exist (a negative length: no bytes do)."""
        return 0 <= addr and 0 <= length and addr + length <= self.size

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or addr + length > self.size:
            raise AddressingError(max(addr, self.size) if addr >= 0 else addr, length)
        if length < 0:                  # a slice would quietly read or write nothing
            raise InvalidArgument(f"a negative length {length} at {addr:#x}")

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes at absolute ``addr``."""
        self._check(addr, length)
        return self.data[addr:addr + length].tobytes()

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at absolute ``addr``."""
        self._check(addr, len(data))
        self.data[addr:addr + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)

    def fill(self, addr: int, length: int, byte: int) -> None:
        """Set ``length`` bytes at ``addr`` to ``byte`` (e.g. SLUB's 0x6b poison)."""
        self._check(addr, length)
        self.data[addr:addr + length] = byte

    def read_u64(self, addr: int) -> int:
        """The big-endian doubleword at ``addr`` (8-byte aligned, as DAT entries are)."""
        if addr & 7 or addr < 0 or addr + 8 > self.size:
            if addr & 7:
                return int.from_bytes(self.read(addr, 8), "big")
            raise AddressingError(addr, 8)
        return int(self.u64[addr >> 3])

    def write_u64(self, addr: int, value: int) -> None:
        """Store a big-endian doubleword at ``addr``."""
        if addr & 7 or addr < 0 or addr + 8 > self.size:
            if addr & 7:
                return self.write(addr, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big"))
            raise AddressingError(addr, 8)
        self.u64[addr >> 3] = value & 0xFFFF_FFFF_FFFF_FFFF

    def read_u32(self, addr: int) -> int:
        """The big-endian word at ``addr``."""
        if addr & 3:
            return int.from_bytes(self.read(addr, 4), "big")
        self._check(addr, 4)
        return int(self.u32[addr >> 2])

    def write_u32(self, addr: int, value: int) -> None:
        """Store a big-endian word at ``addr``."""
        if addr & 3:
            return self.write(addr, (value & 0xFFFF_FFFF).to_bytes(4, "big"))
        self._check(addr, 4)
        self.u32[addr >> 2] = value & 0xFFFF_FFFF

    def table(self, origin: int, entries: int) -> np.ndarray:
        """A writable ``>u8`` view of ``entries`` doublewords at ``origin`` (8-aligned)."""
        self._check(origin, entries * 8)
        if origin & 7:
            raise InvalidArgument(f"table origin {origin:#x} is not doubleword aligned")
        return self.u64[origin >> 3:(origin >> 3) + entries]

    def digest(self) -> bytes:
        """A 16-byte BLAKE2 digest of the whole storage, for comparing states."""
        import hashlib

        return hashlib.blake2b(self.data, digest_size=16).digest()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"PhysicalMemory({self.size:#x})"
