"""``memmap.struct_pages`` in process on the real guest: every struct page
tools/real_guest.py read through drgn (truth.json's ``struct_pages``: address, flags,
_refcount, _mapcount) is where and what ours says, found through SPARSEMEM_EXTREME's
section roots and the vmemmap, each doubleword translated through the kernel's ASCE.
"""

from __future__ import annotations

import numpy as np
import pytest

from s390emu.inspect import open_dump
from s390emu.inspect.memmap import KernelSpace, struct_pages
from s390emu.memory import PAGE_SIZE
from s390emu.vmcoreinfo import number


@pytest.fixture(scope="module")
def st(real_guest):
    return open_dump(real_guest.elf)


@pytest.fixture(scope="module")
def kernel(st):
    return KernelSpace(st.mem, st.kernel_asce())


def test_every_recorded_struct_page_is_found_with_its_fields(real_guest, st, kernel):
    v = st.vmcoreinfo
    sp = struct_pages(st.mem, v, kernel)
    assert (sp.layout, sp.size) == ("sparsemem-extreme", number(v, "SIZE(page)"))
    nr = st.mem.size // PAGE_SIZE
    assert sp.words.shape == (nr, sp.size // 4) and len(sp.address) == len(sp.present) == nr
    assert sp.present.all()                        # every frame of the guest has a struct page
    vmemmap = real_guest.truth["kernel"]["vmemmap"]
    assert np.array_equal(sp.address, vmemmap + np.arange(nr, dtype=np.uint64) * np.uint64(sp.size))
    off = {f: number(v, f"OFFSET(page.{f})") for f in ("flags", "_refcount", "_mapcount")}
    for frame, page in real_guest.truth["struct_pages"].items():
        pfn = int(frame, 16) >> 12
        assert int(sp.address[pfn]) == page["page"] and sp.pfn_of(page["page"]) == pfn, frame
        assert sp.u64(pfn, off["flags"]) == page["flags"], frame
        assert int(sp.words[pfn, off["_refcount"] // 4]) == page["refcount"], frame
        assert int(sp.words[pfn, off["_mapcount"] // 4]) == page["mapcount"], frame
        # and the same bytes read one by one through the kernel's space
        assert kernel.read(page["page"], sp.size) == sp.words[pfn].tobytes(), frame
    assert sp.pfn_of(int(sp.address[-1]) + sp.size) is None and sp.pfn_of(vmemmap + 8) is None


def test_kernel_space_reads_across_a_page_boundary_and_big_endian(real_guest, st, kernel):
    page = real_guest.truth["kernel"]["vmemmap"] + 0x1000        # a vmemmap page boundary
    data = kernel.read(page - 3, 6)
    real = kernel.absolute([page - 0x1000, page])[0]
    assert data == st.mem.read(int(real[0]) + 0xFFD, 3) + st.mem.read(int(real[1]), 3)
    assert kernel.read_u64(page - 4) == int.from_bytes(kernel.read(page - 4, 8), "big")
    assert kernel.read(page + 5, 0) == b""
