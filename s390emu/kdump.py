"""kdump-compressed dumps (makedumpfile's diskdump format, and the flattened form QEMU's
``dump-guest-memory`` writes), read through libkdumpfile.

libkdumpfile is the maintained reader of these formats (compressed pages: zlib, lzo,
snappy, zstd; the flattened form reassembled in place).  Its Python binding
``pykdumpfile`` does not build against the libkdumpfile Debian ships (0.5.1: missing
ADDRXLAT_PTE_* symbols), so the library is called through ``ctypes``: the copy drgn's
wheels bundle (``drgn.libs/libkdumpfile-*.so``, 0.5.5, which reads the flattened form),
else the system's (``libkdumpfile.so.10``, which does not).

A compressed page cannot be mapped, so the pages the dump holds (its ``file.pagemap``)
are decompressed once, at open, into a reservation of storage that costs only the
non-zero pages (``memory._reserve``); the process grows with the dump's content, not
with its size.  QEMU leaves the header's ``utsname`` empty, so the architecture is set
(``arch.name=s390x``) before the file is opened.

What such a dump says of its CPUs is less than an ELF core: libkdumpfile gives each
CPU's ``NT_PRSTATUS`` (PSW, GPRs), not its prefix or control registers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import numpy as np

from .elfcore import DumpError
from .memory import PAGE_SIZE, PhysicalMemory, _reserve

KDUMP_SIGNATURE = b"KDUMP   "
FLATTENED_SIGNATURE = b"makedumpfile"
_MACHPHYSADDR = 1               # kdump_addrspace_t KDUMP_MACHPHYSADDR (ADDRXLAT_MACHPHYSADDR)
_NUMBER, _STRING, _BITMAP = 2, 4, 5
_CHUNK = 256                    # pages read per kdump_read


class _Attr(ctypes.Structure):
    """kdump_attr_t: the type, then the value union (a number or a pointer)."""

    _fields_ = [("type", ctypes.c_int), ("val", ctypes.c_uint64)]


_lib = None


def _library() -> ctypes.CDLL:
    """libkdumpfile: drgn's bundled copy, else the system's (``DumpError`` without either)."""
    global _lib
    if _lib is not None:
        return _lib
    candidates = []
    try:
        import drgn
        candidates += sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(drgn.__file__)),
                                                    "drgn.libs", "libkdumpfile-*.so*")))
    except ImportError:
        pass
    system = ctypes.util.find_library("kdumpfile")
    candidates += [system] if system else []
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError:
            continue
    else:
        raise DumpError("reading a kdump-compressed dump needs libkdumpfile: pip install drgn (which "
                        "bundles it) or apt-get install libkdumpfile10")
    vp, P = ctypes.c_void_p, ctypes.POINTER
    lib.kdump_new.restype = vp
    lib.kdump_free.argtypes = [vp]
    lib.kdump_get_err.restype = ctypes.c_char_p
    lib.kdump_get_err.argtypes = [vp]
    lib.kdump_open_fdset.argtypes = [vp, ctypes.c_uint, P(ctypes.c_int)]
    lib.kdump_set_attr.argtypes = [vp, ctypes.c_char_p, P(_Attr)]
    lib.kdump_get_attr.argtypes = [vp, ctypes.c_char_p, P(_Attr)]
    lib.kdump_read.argtypes = [vp, ctypes.c_int, ctypes.c_uint64, vp, P(ctypes.c_size_t)]
    lib.kdump_bmp_find_set.argtypes = [vp, P(ctypes.c_uint64)]
    lib.kdump_bmp_find_clear.argtypes = [vp, P(ctypes.c_uint64)]
    _lib = lib
    return lib


def is_kdump(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a kdump-compressed dump (either form)."""
    return head.startswith(KDUMP_SIGNATURE) or head.startswith(FLATTENED_SIGNATURE)


class KdumpFile:
    """An open kdump-compressed dump: ``format`` (libkdumpfile's name, ``flattened``
    added for QEMU's form), ``max_pfn``, the CPUs' PSWs, and ``storage()``."""

    def __init__(self, path: str | os.PathLike, flattened: bool):
        self.path = str(path)
        lib = self._lib = _library()
        self._ctx = lib.kdump_new()
        arch = ctypes.c_char_p(b"s390x")       # libkdumpfile copies a string attribute's value
        self._set(b"arch.name", _Attr(_STRING, ctypes.cast(arch, ctypes.c_void_p).value))
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise DumpError(f"{self.path}: {e.strerror or e}") from None
        if lib.kdump_open_fdset(self._ctx, 1, (ctypes.c_int * 1)(self._fd)):
            hint = (" (a flattened dump: reassemble it with 'makedumpfile -R out < in', or pip install drgn, "
                    "whose libkdumpfile reads it)" if flattened else "")
            raise DumpError(f"{self.path}: libkdumpfile cannot open it: {self._err()}{hint}")
        self.format = self._string(b"file.format") + ("-flattened" if flattened else "")
        self.max_pfn = self._number(b"max_pfn")
        if self._number(b"arch.page_size") != PAGE_SIZE:
            raise DumpError(f"{self.path}: page size {self._number(b'arch.page_size')}, not 4096")
        self.psws = [(self._number(f"cpu.{i}.reg.pswm".encode(), 0), self._number(f"cpu.{i}.reg.pswa".encode(), 0))
                     for i in range(self._number(b"cpu.number", 0))]

    def _err(self) -> str:
        # one line: libkdumpfile ends some messages with a newline ("Unknown flattened type: 0\n")
        return " ".join((self._lib.kdump_get_err(self._ctx) or b"?").decode(errors="replace").split())

    def _set(self, key: bytes, attr: _Attr) -> None:
        if self._lib.kdump_set_attr(self._ctx, key, ctypes.byref(attr)):
            raise DumpError(f"{self.path}: libkdumpfile: {key.decode()}: {self._err()}")

    def _get(self, key: bytes) -> _Attr | None:
        a = _Attr()
        return a if self._lib.kdump_get_attr(self._ctx, key, ctypes.byref(a)) == 0 else None

    def _number(self, key: bytes, default: int | None = None) -> int:
        a = self._get(key)
        if a is None or a.type != _NUMBER:
            if default is not None:
                return default
            raise DumpError(f"{self.path}: libkdumpfile gives no {key.decode()} ({self._err()})")
        return a.val

    def _string(self, key: bytes) -> str:
        a = self._get(key)
        return ctypes.c_char_p(a.val).value.decode() if a is not None and a.type == _STRING and a.val else "?"

    def runs(self) -> list[tuple[int, int]]:
        """``(first pfn, end pfn)`` of every run of pages the file holds (``file.pagemap``)."""
        a = self._get(b"file.pagemap")
        if a is None or a.type != _BITMAP:
            return [(0, self.max_pfn)]
        out, idx = [], ctypes.c_uint64(0)
        while idx.value < self.max_pfn and self._lib.kdump_bmp_find_set(a.val, ctypes.byref(idx)) == 0:
            lo = idx.value
            if self._lib.kdump_bmp_find_clear(a.val, ctypes.byref(idx)) != 0:
                idx.value = self.max_pfn
            out.append((lo, min(idx.value, self.max_pfn)))
        return out

    def storage(self) -> PhysicalMemory:
        """The dump's storage: every page it holds decompressed, only non-zero ones stored."""
        size = self.max_pfn * PAGE_SIZE
        if size <= 0:
            raise DumpError(f"{self.path}: the dump holds no memory (max_pfn {self.max_pfn})")
        data = _reserve(size)
        buf = np.zeros(_CHUNK * PAGE_SIZE, dtype=np.uint8)
        for lo, hi in self.runs():
            for first in range(lo, hi, _CHUNK):
                length = ctypes.c_size_t(min(_CHUNK, hi - first) * PAGE_SIZE)
                failed = self._lib.kdump_read(self._ctx, _MACHPHYSADDR, first * PAGE_SIZE, buf.ctypes.data,
                                              ctypes.byref(length))
                got = length.value // PAGE_SIZE
                if failed:          # the read stopped at the page it failed on: name that page
                    raise DumpError(f"{self.path}: page {first + got:#x} cannot be read: {self._err()}")
                pages = buf[:got * PAGE_SIZE].reshape(got, PAGE_SIZE)
                for i in np.flatnonzero(pages.any(axis=1)).tolist():      # zero pages stay unstored
                    at = (first + i) * PAGE_SIZE
                    data[at:at + PAGE_SIZE] = pages[i]
        return PhysicalMemory(size, _data=data)

    def close(self) -> None:
        """Release libkdumpfile's context and the file."""
        if self._ctx:
            self._lib.kdump_free(self._ctx)
            self._ctx = None
            os.close(self._fd)
