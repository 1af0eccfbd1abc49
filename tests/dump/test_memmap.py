"""struct page of a real kernel, found as makedumpfile finds it (``s390emu.inspect.memmap``).

The storage is laid out by hand as a 6.1 kernel lays it out: a region-third kernel ASCE
whose first segment table maps storage 1:1 with 1 MiB frames, a vmemmap at
0x37200000000 mapped by 4K pages onto scattered frames, and ``mem_section`` as a pointer
to the root array (SPARSEMEM_EXTREME, v4.15+).  Each struct page's ``_refcount`` holds its
own pfn, so a struct page read from the wrong place shows.
"""

from __future__ import annotations

import numpy as np
import pytest

from s390emu.inspect.memmap import KernelSpace, page_table_rule, pg_active, release, struct_pages
from s390emu.memory import PhysicalMemory
from s390emu.vmcoreinfo import LayoutError

SIZE = 16 << 20
NR = SIZE >> 12
R3T, ST_ID, ST_VM, PT_VM = 0x100000, 0x104000, 0x108000, 0x10C000
VMEMMAP = 0x372_0000_0000
MEMMAP_FRAMES = [0x400000 + 0x3000 * i for i in range(NR * 64 // 4096)]     # scattered, not contiguous
ASCE = R3T | 0x04 | 0x03                  # region-third table, TL 3
MS_PTR, ROOTS, ROOT0, MEM_MAP_VAR = 0x300000, 0x301000, 0x302000, 0x300100

VMCOREINFO = {
    "OSRELEASE": "6.1.0-50-s390x", "SIZE(page)": "64", "OFFSET(page.flags)": "0",
    "OFFSET(page._refcount)": "52", "OFFSET(page._mapcount)": "48", "NUMBER(PG_lru)": "4",
    "SYMBOL(mem_section)": f"{MS_PTR:x}", "LENGTH(mem_section)": "2048", "SIZE(mem_section)": "32",
    "OFFSET(mem_section.section_mem_map)": "0", "NUMBER(SECTION_SIZE_BITS)": "28",
    "NUMBER(MAX_PHYSMEM_BITS)": "46",
}


def kernel_storage() -> PhysicalMemory:
    mem = PhysicalMemory(SIZE)
    mem.table(R3T, 2048)[:] = 0x24                             # invalid region-third entries
    mem.write_u64(R3T, ST_ID | 0x04)                            # 0-2G: the identity map
    mem.write_u64(R3T + 8 * (VMEMMAP >> 31), ST_VM | 0x04)      # the vmemmap's 2G
    mem.table(ST_ID, 2048)[:] = 0x20
    for i in range(SIZE >> 20):
        mem.write_u64(ST_ID + 8 * i, (i << 20) | 0x400)          # FC=1: a 1 MiB frame
    mem.table(ST_VM, 2048)[:] = 0x20
    mem.write_u64(ST_VM + 8 * ((VMEMMAP >> 20) & 0x7FF), PT_VM)
    mem.table(PT_VM, 256)[:] = 0x400
    for i, frame in enumerate(MEMMAP_FRAMES):
        mem.write_u64(PT_VM + 8 * i, frame)
    for pfn in range(NR):                                        # _refcount = pfn
        v = VMEMMAP + 64 * pfn
        frame = MEMMAP_FRAMES[(v - VMEMMAP) >> 12]
        mem.write_u32(frame + (v & 0xFFF) + 52, pfn)
        mem.write_u32(frame + (v & 0xFFF) + 48, 0xFFFFFFFF)
    mem.write_u64(MS_PTR, ROOTS)                                 # struct mem_section **mem_section
    mem.write_u64(ROOTS, ROOT0)
    mem.write_u64(ROOT0, VMEMMAP | 0x3)                          # section 0: present, has a mem_map
    mem.write_u64(MEM_MAP_VAR, VMEMMAP)
    return mem


@pytest.fixture(scope="module")
def mem():
    return kernel_storage()


def test_sparsemem_extreme_struct_pages_are_read_through_the_vmemmap(mem):
    sp = struct_pages(mem, VMCOREINFO, KernelSpace(mem, ASCE))
    assert sp.layout == "sparsemem-extreme" and sp.present.all()
    assert sp.words[:, 52 // 4].tolist() == list(range(NR))
    assert sp.address.tolist() == [VMEMMAP + 64 * p for p in range(NR)]
    assert sp.pfn_of(VMEMMAP + 64 * 77) == 77 and sp.pfn_of(VMEMMAP + 64 * 77 + 8) is None


def test_the_root_array_itself_is_tried_when_the_pointer_form_finds_nothing(mem):
    # Before v4.15 mem_section was the root array, not a pointer to it.
    old = mem.copy()
    old.write_u64(MS_PTR, ROOT0)
    old.write_u64(MS_PTR + 8, 0)
    v = {**VMCOREINFO}
    sp = struct_pages(old, v, KernelSpace(old, ASCE))
    assert sp.words[:, 52 // 4].tolist() == list(range(NR))


def test_flatmem_follows_the_mem_map_variable(mem):
    v = {k: val for k, val in VMCOREINFO.items() if "mem_section" not in k and "SECTION" not in k}
    v["SYMBOL(mem_map)"] = f"{MEM_MAP_VAR:x}"
    sp = struct_pages(mem, v, KernelSpace(mem, ASCE))
    assert sp.layout == "flatmem" and sp.words[:, 52 // 4].tolist() == list(range(NR))


def test_struct_pages_behind_an_unmapped_vmemmap_page_are_not_present(mem):
    holed = mem.copy()
    holed.write_u64(PT_VM + 8 * 3, 0x400)                        # invalid PTE: pfns 192-255
    sp = struct_pages(holed, VMCOREINFO, KernelSpace(holed, ASCE))
    assert np.flatnonzero(~sp.present).tolist() == list(range(192, 256))
    assert (sp.words[192:256] == 0).all()


# A 72-byte struct page (a debug build's): some straddle two vmemmap pages, and the
# ninth doubleword exists; each holds its pfn at 52 and 0xA5000000 | pfn at 64 (the ninth).
WIDE = {**VMCOREINFO, "SIZE(page)": "72"}
WIDE_FRAMES = [0x400000 + 0x3000 * i for i in range(NR * 72 // 4096)]


def wide_storage(mem) -> PhysicalMemory:
    wide = mem.copy()
    for i, frame in enumerate(WIDE_FRAMES):
        wide.write_u64(PT_VM + 8 * i, frame)

    def at(va: int) -> int:
        return WIDE_FRAMES[(va - VMEMMAP) >> 12] + (va & 0xFFF)
    for pfn in range(NR):
        v = VMEMMAP + 72 * pfn
        wide.write_u32(at(v + 48), 0xFFFFFFFF)
        wide.write_u32(at(v + 52), pfn)
        wide.write_u32(at(v + 64), 0xA5000000 | pfn)
    return wide


def test_struct_pages_of_any_size_are_read_doubleword_by_doubleword_across_pages(mem):
    sp = struct_pages(wide_storage(mem), WIDE, KernelSpace(wide_storage(mem), ASCE))
    assert sp.size == 72 and sp.present.all()
    assert sp.words[:, 52 // 4].tolist() == list(range(NR))
    assert sp.words[:, 64 // 4].tolist() == [0xA5000000 | p for p in range(NR)]
    assert sp.u64(56, 48) == 0xFFFFFFFF << 32 | 56 and sp.u64(56, 64) >> 32 == 0xA5000038   # pfn 56 straddles


def test_a_vmemmap_page_beyond_storage_leaves_out_only_the_struct_pages_it_holds(mem):
    # LRA translates to a frame beyond storage without an exception: the reader must check.
    # pfn 56's last doubleword is the first of that page, exactly at the end of storage.
    wide = wide_storage(mem)
    wide.write_u64(PT_VM + 8, SIZE)
    sp = struct_pages(wide, WIDE, KernelSpace(wide, ASCE))
    assert np.flatnonzero(~sp.present).tolist() == list(range(56, 114))
    assert sp.words[sp.present, 52 // 4].tolist() == np.flatnonzero(sp.present).tolist()


def test_frames_without_a_mapped_struct_page_are_skipped_chunk_by_chunk(mem):
    from s390emu.inspect.memmap import _copy_out
    address = VMEMMAP + np.uint64(64) * np.arange(NR, dtype=np.uint64)
    mapped = np.arange(NR) >= 64                   # the first chunk maps nothing
    sp = _copy_out(KernelSpace(mem, ASCE), "sparsemem-extreme", 64, address, mapped, chunk=64)
    assert (sp.present == mapped).all()
    assert sp.words[64:, 52 // 4].tolist() == list(range(64, NR)) and not sp.words[:64].any()


def test_a_section_without_a_mem_map_is_no_struct_page(mem):
    bare = mem.copy()
    bare.write_u64(ROOT0, VMEMMAP | 0x1)                         # present, but SECTION_HAS_MEM_MAP clear
    with pytest.raises(LayoutError, match="no present section with a mem_map"):
        struct_pages(bare, VMCOREINFO, KernelSpace(bare, ASCE))


def test_an_unmapped_kernel_address_is_a_one_line_layout_error(mem):
    with pytest.raises(LayoutError, match="0x37300000000 is not mapped"):
        KernelSpace(mem, ASCE).read_u64(VMEMMAP + (1 << 32))


# 16K sections (4 pages each, 1024 of them), SECTION_SIZE_BITS 14: the roots of
# SPARSEMEM_EXTREME hold 128 sections each (4096 / SIZE(mem_section)), so storage takes 8
# roots; and section_mem_map at offset 8, so an entry read from the wrong place shows.
SMALL = {**VMCOREINFO, "NUMBER(SECTION_SIZE_BITS)": "14", "LENGTH(mem_section)": str((1 << 32) // 128),
         "OFFSET(mem_section.section_mem_map)": "8"}
ROOT2, ARRAY = 0x303000, 0x310000


def small_sections(mem) -> PhysicalMemory:
    """``kernel_storage`` with SMALL's sections: roots 0 and 2-7 present, root 1 missing
    (pfns 512-1023 have no struct page), every present section's mem_map the vmemmap."""
    small = mem.copy()
    small.fill(ROOT0, 0x2000, 0)
    for i in range(128):
        small.write_u64(ROOT0 + 32 * i + 8, VMEMMAP | 0x3)
        small.write_u64(ROOT2 + 32 * i + 8, VMEMMAP | 0x3)
    for r, root in enumerate([ROOT0, 0] + [ROOT2] * 6):
        small.write_u64(ROOTS + 8 * r, root)
    return small


def test_sparsemem_extreme_over_many_roots_and_a_missing_one(mem):
    small = small_sections(mem)
    sp = struct_pages(small, SMALL, KernelSpace(small, ASCE))
    absent = np.arange(512, 1024)
    assert sp.layout == "sparsemem-extreme"
    assert np.flatnonzero(~sp.present).tolist() == absent.tolist()
    assert (sp.address[absent] == 0).all() and (sp.words[absent] == 0).all()
    present = np.flatnonzero(sp.present)
    assert sp.words[present, 52 // 4].tolist() == present.tolist()
    assert sp.address.dtype == np.uint64 and sp.address[present].tolist() == (VMEMMAP + 64 * present).tolist()


def test_classic_sparsemem_is_the_array_of_every_section(mem):
    # not SPARSEMEM_EXTREME (LENGTH is every section): mem_section is the array itself
    flat = mem.copy()
    for s in range(1024):
        flat.write_u64(ARRAY + 32 * s + 8, VMEMMAP | 0x3 if s != 5 else 0)
    v = {**SMALL, "LENGTH(mem_section)": str(1 << 32), "SYMBOL(mem_section)": f"{ARRAY:x}"}
    sp = struct_pages(flat, v, KernelSpace(flat, ASCE))
    assert sp.layout == "sparsemem"
    assert np.flatnonzero(~sp.present).tolist() == [20, 21, 22, 23]      # section 5's four pages
    assert sp.words[sp.present, 52 // 4].tolist() == np.flatnonzero(sp.present).tolist()


def test_a_pointer_form_that_reads_unmapped_memory_falls_back_to_the_array_form(mem):
    # mem_section[0]'s first word (with section_mem_map at 8, another field) points at no
    # mapped page: read as the pointer form's root, it faults; the array form is then read
    old = mem.copy()
    old.write_u64(MS_PTR, ROOT0)
    old.fill(ROOT0, 64, 0)
    old.write_u64(ROOT0, VMEMMAP + (1 << 32))
    old.write_u64(ROOT0 + 8, VMEMMAP | 0x3)
    v = {**VMCOREINFO, "OFFSET(mem_section.section_mem_map)": "8"}
    sp = struct_pages(old, v, KernelSpace(old, ASCE))
    assert sp.present.all() and sp.words[:, 52 // 4].tolist() == list(range(NR))


def test_struct_pages_refuses_what_it_cannot_read_in_one_line(mem):
    kernel = KernelSpace(mem, ASCE)
    bare = {k: val for k, val in VMCOREINFO.items() if k != "SYMBOL(mem_section)"}
    for v, kern, message in [
            (bare, kernel, "VMCOREINFO has neither SYMBOL(mem_section) nor SYMBOL(mem_map)"),
            (VMCOREINFO, None, "no kernel ASCE to read the kernel's mem_map through"),
            ({**VMCOREINFO, "SIZE(page)": "0"}, kernel, "VMCOREINFO SIZE(page)=0 is not a whole number of doublewords")]:
        with pytest.raises(LayoutError) as e:
            struct_pages(mem, v, kern)
        assert str(e.value) == message


def test_an_s390emu_machines_mem_map_is_the_array_at_its_symbol():
    from s390emu.machine import Machine
    from s390emu.vmcoreinfo import read_vmcoreinfo

    m = Machine(8 << 20, ncpus=1)
    v = read_vmcoreinfo(m.mem)
    sp = struct_pages(m.mem, v, None, s390emu=True)
    base, nr = int(v["SYMBOL(mem_map)"], 16), (8 << 20) >> 12
    assert (sp.layout, sp.size) == ("s390emu", 64) and sp.present.all()
    assert sp.address.dtype == np.uint64 and sp.address.tolist() == [base + 64 * p for p in range(nr)]


@pytest.mark.parametrize("release,page_type,table", [
    ("5.4.0", 0xFFFFFBFF, True), ("5.4.0", 0xFFFFFDFF, False),            # PG_table 0x400 beside PG_kmemcg
    ("6.1.0-50-s390x", 0xFFFFFDFF, True), ("6.1.0", 0xFFFFFBFF, False),  # 0x200 from v5.11
    ("6.10.3", 0xFFFBFFFF, True), ("6.10.3", 0xFFFFFDFF, False),         # 0x40000 from v6.10
    ("6.12.1", 0xF2000000, True), ("6.12.1", 0xF0000000, False),         # PGTY_table in the top byte
    ("6.1.0", 0x00000000, False),                                         # a mapcount, no type
])
def test_page_table_pages_are_marked_as_each_release_marks_them(release, page_type, table):
    _, test = page_table_rule({"OSRELEASE": release})
    assert bool(test(np.array([page_type], dtype=np.uint32))[0]) is table


def test_a_release_before_page_table_types_is_said_to_have_none():
    with pytest.raises(LayoutError, match="before v4.18"):
        page_table_rule({"OSRELEASE": "4.14.0"})


def test_pg_active_follows_pg_lru_until_v6_10():
    assert pg_active({"OSRELEASE": "6.9.0", "NUMBER(PG_lru)": "4"}) == 5
    assert pg_active({"OSRELEASE": "6.10.0", "NUMBER(PG_lru)": "4"}) is None
    assert pg_active({"NUMBER(PG_active)": "7"}) == 7


def test_release_reads_major_and_minor_of_any_osrelease_form():
    assert release({"OSRELEASE": "6.1.0-50-s390x"}) == (6, 1)
    assert release({"OSRELEASE": "6.1-rc3"}) == (6, 1)
    assert release({"OSRELEASE": "5.10"}) == (5, 10)
    assert release({}) is None
    assert release({"OSRELEASE": "6"}) is None and release({"OSRELEASE": "x.y"}) is None


@pytest.mark.parametrize("vmcoreinfo, desc, table, other", [
    ({"NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)": "-513"}, "PG_table 0x200 (VMCOREINFO)", 0xFFFFFDFF, 0xFFFFFBFF),
    ({"OSRELEASE": "4.18.0"}, "PG_table 0x400 (v4.18-v5.10)", 0xFFFFFBFF, 0xFFFFFDFF),
    ({"OSRELEASE": "5.10.200"}, "PG_table 0x400 (v4.18-v5.10)", 0xFFFFFBFF, 0xFFFFFDFF),
    ({"OSRELEASE": "5.11.0"}, "PG_table 0x200 (v5.11-v6.9)", 0xFFFFFDFF, 0xFFFFFBFF),
    ({"OSRELEASE": "6.9.12"}, "PG_table 0x200 (v5.11-v6.9)", 0xFFFFFDFF, 0xFFFBFFFF),
    ({"OSRELEASE": "6.10.0"}, "PG_table 0x40000 (v6.10-v6.11)", 0xFFFBFFFF, 0xFFFFFDFF),
    ({"OSRELEASE": "6.11.9"}, "PG_table 0x40000 (v6.10-v6.11)", 0xFFFBFFFF, 0xFFFFFFFF),
    ({"OSRELEASE": "6.12.0"}, "page_type top byte 0xf2 (v6.12+)", 0xF2000000, 0xFFFBFFFF),
])
def test_each_releases_page_table_rule_is_described_and_starts_at_its_release(vmcoreinfo, desc, table, other):
    got, test = page_table_rule(vmcoreinfo)
    assert got == desc
    assert test(np.array([table, other], dtype=np.uint32)).tolist() == [True, False]


def test_a_vmcoreinfo_without_a_release_or_the_mapcount_value_says_why_in_one_line():
    with pytest.raises(LayoutError) as e:
        page_table_rule({})
    assert str(e.value) == ("VMCOREINFO has neither NUMBER(PAGE_TABLE_MAPCOUNT_VALUE) nor OSRELEASE: "
                            "which struct pages mark page tables is unknown")
