"""kdump-compressed files the reader refuses, each with its own one-line ``DumpError``
(crafted files; libkdumpfile comes with drgn, in the test extra; the real guest's kdump dump is read in tests/realguest/test_kdump.py)."""

from __future__ import annotations

import numpy as np
import pytest

from s390emu import DumpError, dump, kdump

from .diskdump import PAGE, diskdump

def test_is_kdump_knows_both_signatures_and_nothing_else():
    assert kdump.is_kdump(b"KDUMP   \0\0\0\0\0\0\0\0")
    assert kdump.is_kdump(b"makedumpfile\0\0\0\0")
    assert not kdump.is_kdump(b"KDUMP  x")
    assert not kdump.is_kdump(b"\x7fELF" + bytes(12))
    assert not kdump.is_kdump(b"makedumpfil")


HINT = ("(a flattened dump: reassemble it with 'makedumpfile -R out < in', or pip install drgn, "
        "whose libkdumpfile reads it)")


@pytest.mark.parametrize("reader", [dump.load, dump.read_info])
@pytest.mark.parametrize("signature, hint", [(b"KDUMP   ", False), (b"makedumpfile", True)])
def test_a_file_libkdumpfile_refuses_is_one_line_and_a_flattened_one_says_how_to_reassemble_it(
        tmp_path, reader, signature, hint):
    p = tmp_path / "bad.dump"
    p.write_bytes(signature + bytes(4096))
    with pytest.raises(DumpError) as e:
        reader(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: libkdumpfile cannot open it: file #0: ")   # libkdumpfile's own words
    assert msg.endswith(HINT) is hint and ("flattened dump" in msg) is hint
    if not hint:                                   # nothing after libkdumpfile's words
        assert msg == f"{p}: libkdumpfile cannot open it: file #0: Invalid diskdump header content"


def test_a_kdump_file_that_cannot_be_opened_names_the_os_error(tmp_path):
    p = tmp_path / "gone.dump"
    with pytest.raises(DumpError) as e:
        kdump.KdumpFile(p, False)
    assert str(e.value) == f"{p}: No such file or directory"


def test_each_cpus_prefix_comes_from_lowcore_ptr_where_it_is_in_storage():
    """``_lowcore_ptrs``: 0 for every CPU without SYMBOL(lowcore_ptr) or with an array not
    wholly in storage, and 0 for a pointer at or past the end of storage."""
    from s390emu.dump import _lowcore_ptrs
    from s390emu.memory import PhysicalMemory

    mem = PhysicalMemory(1 << 20)
    at = 0x3000
    for i, p in enumerate((0x2000, 0xFF000, 1 << 20, (1 << 20) - 1)):
        mem.write_u64(at + 8 * i, p)
    v = {"SYMBOL(lowcore_ptr)": f"{at:x}"}
    assert _lowcore_ptrs(mem, v, 4) == [0x2000, 0xFF000, 0, (1 << 20) - 1]
    assert _lowcore_ptrs(mem, v, 2) == [0x2000, 0xFF000]
    assert _lowcore_ptrs(mem, {}, 2) == [0, 0]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": "0"}, 2) == [0, 0]
    end = (1 << 20) - 8                                   # one pointer fits, two do not
    mem.write_u64(end, 0x2000)
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{end:x}"}, 1) == [0x2000]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{end:x}"}, 2) == [0, 0]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{1 << 20:x}"}, 1) == [0]


# --- _library(): the CDLL is cached in kdump._lib, so each test loads it afresh ---------

DRGN_LIBS = "drgn.libs"


def _bundled() -> list[str]:
    """drgn's bundled libkdumpfile, found independently of ``kdump._library``."""
    import glob
    import os

    import drgn
    site = os.path.dirname(os.path.dirname(drgn.__file__))
    return sorted(glob.glob(os.path.join(site, DRGN_LIBS, "libkdumpfile-*.so*")))


@pytest.fixture
def fresh_library(monkeypatch):
    """``kdump._lib`` reset (restored after the test), so ``_library()`` loads again."""
    monkeypatch.setattr(kdump, "_lib", None)
    return monkeypatch


def _signatures(lib) -> dict:
    names = ("kdump_new", "kdump_free", "kdump_get_err", "kdump_open_fdset", "kdump_set_attr",
             "kdump_get_attr", "kdump_read", "kdump_bmp_find_set", "kdump_bmp_find_clear")
    return {n: (getattr(lib, n).restype, getattr(lib, n).argtypes and tuple(getattr(lib, n).argtypes))
            for n in names}


def test_library_loads_drgns_copy_once_with_every_signature_declared(fresh_library):
    import ctypes

    bundled = _bundled()
    assert bundled, "drgn (the test extra) bundles libkdumpfile"
    lib = kdump._library()
    assert lib._name == bundled[0]
    assert kdump._lib is lib and kdump._library() is lib          # cached: loaded once
    vp, P, i = ctypes.c_void_p, ctypes.POINTER, ctypes.c_int
    assert _signatures(lib) == {
        "kdump_new": (vp, None),
        "kdump_free": (i, (vp,)),
        "kdump_get_err": (ctypes.c_char_p, (vp,)),
        "kdump_open_fdset": (i, (vp, ctypes.c_uint, P(ctypes.c_int))),
        "kdump_set_attr": (i, (vp, ctypes.c_char_p, P(kdump._Attr))),
        "kdump_get_attr": (i, (vp, ctypes.c_char_p, P(kdump._Attr))),
        "kdump_read": (i, (vp, ctypes.c_int, ctypes.c_uint64, vp, P(ctypes.c_size_t))),
        "kdump_bmp_find_set": (i, (vp, P(ctypes.c_uint64))),
        "kdump_bmp_find_clear": (i, (vp, P(ctypes.c_uint64))),
    }


def test_library_freshly_loaded_reads_a_refused_files_error_through_its_declared_types(fresh_library, tmp_path):
    p = tmp_path / "bad.dump"
    p.write_bytes(b"KDUMP   " + bytes(4096))
    with pytest.raises(DumpError) as e:
        kdump.KdumpFile(p, False)
    assert str(e.value).startswith(f"{p}: libkdumpfile cannot open it: file #0: ")


def _no_drgn(monkeypatch, system):
    """drgn not importable, and ``find_library`` answering ``system`` for kdumpfile only."""
    import ctypes.util
    import sys

    monkeypatch.setitem(sys.modules, "drgn", None)                # import drgn: ImportError
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: system if name == "kdumpfile" else None)


def test_library_without_drgn_loads_the_system_copy(fresh_library):
    system = _bundled()[0]                  # stands in for the system's libkdumpfile.so.10
    _no_drgn(fresh_library, system)
    lib = kdump._library()
    assert lib._name == system and kdump._lib is lib


def test_library_without_any_copy_says_how_to_get_one(fresh_library):
    _no_drgn(fresh_library, None)
    with pytest.raises(DumpError) as e:
        kdump._library()
    assert str(e.value) == ("reading a kdump-compressed dump needs libkdumpfile: pip install drgn (which "
                            "bundles it) or apt-get install libkdumpfile10")
    assert kdump._lib is None


def test_library_a_copy_that_fails_to_load_falls_through_to_the_next(fresh_library, tmp_path):
    """A bundled candidate that does not load (not an ELF) is skipped: for the next bundled
    one, which comes before the system's (here a path that does not exist), and, when it is
    the only one, for the system's."""
    import glob

    bundled = _bundled()[0]
    broken = tmp_path / "libkdumpfile-0.so"
    broken.write_bytes(b"not an ELF")
    real_glob = glob.glob
    fresh_library.setattr(glob, "glob", lambda pattern: [str(broken)] + real_glob(pattern))
    import ctypes.util
    fresh_library.setattr(ctypes.util, "find_library", lambda name: "/nonexistent/libkdumpfile.so.10")
    lib = kdump._library()
    assert lib._name == bundled             # the broken one skipped, drgn's before the system's
    kdump._lib = None
    fresh_library.setattr(glob, "glob", lambda pattern: [str(broken)])
    fresh_library.setattr(ctypes.util, "find_library", lambda name: bundled if name == "kdumpfile" else None)
    assert kdump._library()._name == bundled


# --- crafted diskdump files (tests/dump/diskdump.py): the pages libkdumpfile reads -------

def _page(byte: int) -> bytes:
    return bytes([byte]) * PAGE


#: runs (0,2) with a zero page, (5,7), one of 270 pages (two reads of at most 256), and the
#: last page of storage (a run that ends at max_pfn: no clear bit after it)
CRAFTED = {0: _page(1), 1: bytes(PAGE), 5: _page(2), 6: _page(3), **{p: _page(p % 251 + 1) for p in range(10, 280)},
           299: _page(9)}


def _open(tmp_path, pages=CRAFTED, max_pfn=300, **kw):
    p = tmp_path / "crafted.dump"
    p.write_bytes(diskdump(pages, max_pfn, **kw))
    return p, kdump.KdumpFile(p, False)


def test_a_crafted_diskdumps_runs_are_its_bitmaps_and_its_storage_its_pages(tmp_path):
    p, k = _open(tmp_path)
    try:
        assert (k.format, k.max_pfn, k.psws) == ("diskdump", 300, [])      # no notes: no CPUs
        assert k._string(b"arch.name") == "s390x"         # set before the file was opened
        assert k.runs() == [(0, 2), (5, 7), (10, 280), (299, 300)]
        mem = k.storage()
    finally:
        k.close()
    want = np.zeros(300 * PAGE, dtype=np.uint8)
    for pfn, data in CRAFTED.items():
        want[pfn * PAGE:(pfn + 1) * PAGE] = np.frombuffer(data, dtype=np.uint8)
    assert mem.size == 300 * PAGE and np.array_equal(mem.data, want)
    d = dump.load(p)
    assert (d.info.format, d.info.cpus, d.info.mem_size) == ("kdump", [], 300 * PAGE)
    assert np.array_equal(d.mem.data, want)


def test_without_a_pagemap_every_pfn_is_read(tmp_path, monkeypatch):
    """A libkdumpfile without ``file.pagemap`` (or one of another type): one run over
    every pfn, and the storage is the same when every page is in the file."""
    full = {pfn: _page(pfn + 1) for pfn in range(20)}
    p, k = _open(tmp_path, full, 20)
    own = k._get
    try:
        for fake in (None, kdump._Attr(kdump._NUMBER, 0)):
            monkeypatch.setattr(k, "_get", lambda key, fake=fake: fake if key == b"file.pagemap" else own(key))
            assert k.runs() == [(0, 20)]
        mem = k.storage()
    finally:
        k.close()
    assert all(mem.data[pfn * PAGE:(pfn + 1) * PAGE].tobytes() == full[pfn] for pfn in range(20))


def _storage_error(k) -> str:
    """The one-line ``DumpError`` of ``k.storage()`` (``k`` closed after)."""
    try:
        with pytest.raises(DumpError) as e:
            k.storage()
    finally:
        k.close()
    return str(e.value)


@pytest.mark.parametrize("bad", [5, 6, 12, 10 + 256])
def test_a_page_that_cannot_be_read_is_one_line_naming_it_also_inside_a_read(tmp_path, bad):
    """First page of a run, inside a run, inside and at the start of the second read of a
    long run: libkdumpfile stops a read at the page it fails on, and that page is named."""
    pages = {pfn: v for pfn, v in CRAFTED.items() if pfn != bad}
    p, k = _open(tmp_path, pages, unreadable=(bad,))
    assert _storage_error(k) == f"{p}: page {bad:#x} cannot be read: Decompresion failed: incorrect header check"


def test_a_diskdump_with_another_page_size_is_refused_in_one_line(tmp_path):
    p = tmp_path / "8k.dump"
    p.write_bytes(diskdump({0: _page(1) * 2}, 4, block_size=2 * PAGE))
    with pytest.raises(DumpError) as e:
        kdump.KdumpFile(p, False)
    assert str(e.value) == f"{p}: page size 8192, not 4096"


def test_a_diskdump_of_no_pages_holds_no_memory(tmp_path):
    p, k = _open(tmp_path, {}, 0)
    assert (k.max_pfn, k.runs()) == (0, [])
    assert _storage_error(k) == f"{p}: the dump holds no memory (max_pfn 0)"


def test_attributes_libkdumpfile_lacks_or_refuses_are_named_in_one_line(tmp_path):
    p, k = _open(tmp_path, {0: _page(1)}, 4)
    try:
        assert k._number(b"no.such.key", 7) == 7 and k._number(b"max_pfn", 7) == 4
        # cpu.number without CPU notes: libkdumpfile fails with "no data" but fills in the
        # type (number) and leaves the value: the default, not that value
        assert k._number(b"cpu.number", 7) == 7
        with pytest.raises(DumpError) as e:
            k._number(b"no.such.key")
        assert str(e.value) == f"{p}: libkdumpfile gives no no.such.key (No such key)"
        with pytest.raises(DumpError) as e:
            k._number(b"file.format")                     # a string, not a number
        assert str(e.value).startswith(f"{p}: libkdumpfile gives no file.format (")
        assert k._string(b"no.such.key") == "?" and k._string(b"file.format") == "diskdump"
        with pytest.raises(DumpError) as e:
            k._set(b"max_pfn", kdump._Attr(kdump._STRING, 0))
        assert str(e.value) == f"{p}: libkdumpfile: max_pfn: Type mismatch"
    finally:
        k.close()


def test_a_diskdump_of_an_s390emu_kernels_storage_loads_with_its_machine(tmp_path):
    """s390emu writes no kdump dumps, but one of its kernel's storage (crafted here) is an
    s390emu kernel's dump like any other: the Machine is attached over the dump's storage."""
    from s390emu.machine import Machine
    from s390emu.vmcoreinfo import read_vmcoreinfo

    m = Machine(8 << 20, ncpus=2)
    pages = m.mem.data.reshape(-1, PAGE)
    p = tmp_path / "s390emu.dump"
    p.write_bytes(diskdump({pfn: pages[pfn].tobytes() for pfn in np.flatnonzero(pages.any(axis=1)).tolist()},
                           len(pages)))
    d = dump.load(p)
    assert np.array_equal(d.mem.data, m.mem.data)
    assert d.info.vmcoreinfo == read_vmcoreinfo(m.mem) and d.info.vmcoreinfo_source == "storage"
    assert d.machine is not None and d.machine.mem is d.mem
    assert (d.machine.swapper_pg_dir, d.machine.nr_cpus) == (m.swapper_pg_dir, 2)
    assert dump.read_info(p) == d.info
