"""The kdump-compressed dump of the real guest read in process (``dump.load``,
``dump.read_info``, ``kdump.KdumpFile``), against the ELF dump QEMU wrote of the same
stopped guest and QEMU's own records (truth.json): the same storage byte for byte, the
same VMCOREINFO, each CPU's PSW and prefix as QEMU gave them.

In process, not through the CLI, so that a mutation run maps these tests to the reader's
functions (tests/realguest/test_inspection.py runs ``s390emu translate`` on it as a
subprocess).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from s390emu import dump, kdump
from s390emu.inspect import open_dump
from s390emu.inspect.source import NoSuchCpu
from s390emu.memory import PAGE_SIZE


@pytest.fixture(scope="module")
def elf(real_guest):
    return dump.load(real_guest.elf)


def _kdump_path(real_guest):
    return real_guest.path(real_guest.truth["dumps"]["kdump-zlib"])


def test_the_kdump_dump_holds_the_elf_dumps_storage_byte_for_byte(real_guest, elf):
    d = dump.load(_kdump_path(real_guest))
    assert d.mem.size == elf.mem.size == real_guest.truth["memory_mb"] << 20
    assert np.array_equal(d.mem.data, elf.mem.data)


def test_the_kdump_dumps_info_says_its_format_cpus_and_vmcoreinfo(real_guest, elf):
    path = _kdump_path(real_guest)
    d = dump.load(path)
    info = d.info
    assert info.path == str(path)
    assert info.format == "kdump-flattened"        # what QEMU's dump-guest-memory writes
    assert info.file_size == path.stat().st_size
    assert info.mem_size == elf.info.mem_size
    assert [(l.paddr, l.memsz, l.filesz, l.offset) for l in info.loads] == [(0, elf.info.mem_size, 0, 0)]
    assert info.vmcoreinfo == elf.info.vmcoreinfo and info.vmcoreinfo["OSRELEASE"] == real_guest.truth["release"]
    assert info.vmcoreinfo_source == "storage"
    # the PSWs as the ELF's NT_PRSTATUS has them (QEMU wrote both at one stop; truth.json's
    # PSW masks were asked separately and CPU 1's condition code differs), prefixes as QEMU gave them
    assert [(c.cpu, c.prefix, c.psw_mask, c.psw_addr) for c in info.cpus] == \
        [(c.cpu, c.prefix, c.psw_mask, c.psw_addr) for c in elf.info.cpus]
    assert [(c.cpu, c.prefix, c.psw_addr) for c in info.cpus] == \
        [(c["index"], c["prefix"], c["psw_addr"]) for c in real_guest.cpus]
    assert all((c.cr1, c.cr7, c.cr13, c.has_crs) == (0, 0, 0, False) for c in info.cpus)
    assert d.machine is None                        # a Linux kernel, not an s390emu one
    # read_info gives the same, without a Dump
    assert dump.read_info(path) == info
    st = open_dump(path)
    with pytest.raises(NoSuchCpu) as e:
        st.asce(0, "primary")
    assert str(e.value) == (f"{path}: the dump holds no control registers of CPU 0 (kdump-flattened format: "
                            "its PSW only)")
    assert st.what() == (f"{path}: a kdump-compressed dump (kdump-flattened), whose CPUs have a PSW "
                                      "but no control registers")


def test_kdumpfile_reports_the_pages_and_cpus_libkdumpfile_reads(real_guest):
    path = _kdump_path(real_guest)
    with open(path, "rb") as f:
        head = f.read(16)
    assert kdump.is_kdump(head) and head.startswith(kdump.FLATTENED_SIGNATURE)
    k = kdump.KdumpFile(path, True)
    try:
        assert k.path == str(path)
        assert k.format == "diskdump-flattened"
        assert k.max_pfn * PAGE_SIZE == real_guest.truth["memory_mb"] << 20
        assert k.psws == [(c.psw_mask, c.psw_addr) for c in dump.read_info(real_guest.elf).cpus]
        runs = k.runs()
        assert runs and all(0 <= lo < hi <= k.max_pfn for lo, hi in runs)
        assert all(a[1] <= b[0] for a, b in zip(runs, runs[1:]))
        assert sum(hi - lo for lo, hi in runs) <= k.max_pfn
    finally:
        k.close()
    k.close()                                       # a second close does nothing
    assert k._ctx is None


def test_the_kdump_storage_stores_only_the_non_zero_pages(real_guest, elf):
    """Zero pages are left to the reservation (they read as zero, never written)."""
    k = kdump.KdumpFile(_kdump_path(real_guest), True)
    try:
        mem = k.storage()
    finally:
        k.close()
    pages = mem.data.reshape(-1, PAGE_SIZE).any(axis=1)
    assert np.array_equal(pages, elf.mem.data.reshape(-1, PAGE_SIZE).any(axis=1))
    assert np.array_equal(mem.data, elf.mem.data)


def reassemble(flattened: bytes) -> bytes:
    """``makedumpfile -R``: the flattened form's records (a 4K header, then ``(offset,
    size)`` big-endian int64 pairs each followed by its bytes, ending at offset -1) written
    at their offsets, which gives the plain diskdump file."""
    assert flattened.startswith(kdump.FLATTENED_SIGNATURE)
    out, pos = bytearray(), 4096
    while True:
        offset, size = struct.unpack(">qq", flattened[pos:pos + 16])
        pos += 16
        if offset < 0:
            return bytes(out)
        out.extend(bytes(max(0, offset + size - len(out))))
        out[offset:offset + size] = flattened[pos:pos + size]
        pos += size


def test_the_reassembled_diskdump_reads_as_kdump_with_the_same_storage(real_guest, elf, tmp_path):
    plain = tmp_path / "guest.diskdump"
    plain.write_bytes(reassemble(_kdump_path(real_guest).read_bytes()))
    assert plain.read_bytes().startswith(kdump.KDUMP_SIGNATURE)
    d = dump.load(plain)
    assert (d.info.format, d.info.file_size) == ("kdump", plain.stat().st_size)
    assert np.array_equal(d.mem.data, elf.mem.data)
    assert d.info.cpus == dump.load(_kdump_path(real_guest)).info.cpus
    k = kdump.KdumpFile(plain, False)
    try:
        assert k.format == "diskdump"
    finally:
        k.close()
