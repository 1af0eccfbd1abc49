"""What the inspection library gives, field by field and line by line, through its public
functions (``s390emu.inspect``) on the smallest inputs that decide each part of it.

* ``page_table_frames`` of a small v6.6 state, every frame's dict compared whole (with
  and without the CRST frames), against what was done to make the state: one half
  allocated and one pending RCU in a listed page, one page with a deferred half
  (PG_active), the region-third and segment tables; and its layout errors in full.
* ``bit_names``, ``owners`` and the fragment map: the SVG of a hand-made list of frames
  (every state, listed, PG_active, one and two owners, none, a CRST frame, two rows) is
  ``golden/fragmap.svg`` byte for byte; its cells are also read back as XML.
* ``ptdump_lines`` with a marker inside a run (the kernel notices it at the next entry),
  sizes in every unit, ``markers`` and ``runs``, and the table tree as DOT
  (``golden/pttree.dot``).
* ``Storage.what`` for each kind of storage, and the one-line misuse messages.
"""

from __future__ import annotations

import xml.dom.minidom
from pathlib import Path

import pytest

from s390emu import InvalidArgument, LayoutError, dump
from s390emu import structs as S
from s390emu.inspect import (first_table_outside, fragmap_svg, markers, open_demo, open_dump, open_image, page_table_frames,
                             ptdump_lines, runs, table_tree_dot)
from s390emu.inspect.pagetables import bit_names, owners
from s390emu.memory import PhysicalMemory
from s390emu.vmcoreinfo import note, read_vmcoreinfo

pgalloc = pytest.importorskip("pgalloc")
from pgalloc import Kernel, mm as MM  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"
LRU = S.page.fields["lru"]


# -- page_table_frames ---------------------------------------------------------------------------

def _build():
    """v6.6: mm ``a`` maps one MiB (page table T0, the lower half of page X); T1, X's upper
    half, was allocated and freed by RCU (pending, X listed); mm ``b`` maps two MiB (page
    Z, both halves); its page Y has T2 allocated and T3 deferred (PG_active, unlisted)."""
    k = Kernel("v66", mem_size=8 << 20)
    a, b = MM.mm_alloc(k), MM.mm_alloc(k)
    MM.map_range(k, a, 0x100000, 0x101000)
    st_a = MM.segment_table(k, a, 0x100000)
    t0 = k.mem.read_u64(st_a + 8 * 1) & ~0x7FF
    t1 = k.page_table_alloc(a)
    assert t1 == t0 + 0x800
    k.page_table_free_rcu(k.tlb_gather_mmu(a), t1)
    MM.map_range(k, b, 0x100000, 0x201000)
    st_b = MM.segment_table(k, b, 0x100000)
    z0, z1 = (k.mem.read_u64(st_b + 8 * i) & ~0x7FF for i in (1, 2))
    assert z1 == z0 + 0x800
    t2, t3 = k.page_table_alloc(b), k.page_table_alloc(b)
    k.pte_free_defer(b, t3)
    return k, a, b, st_a, t0, t2, z0


@pytest.fixture(scope="module")
def small():
    return _build()


def test_page_table_frames_gives_each_frame_whole(small):
    k, a, b, st_a, t0, t2, z0 = small
    x, y, z = (k.mem_map.virt_to_page(t) for t in (t0, t2, z0))
    got = page_table_frames(k.mem, read_vmcoreinfo(k.mem))
    aa, ab = MM.asce(k, a), MM.asce(k, b)
    want = [
        {"frame": t0, "page": x, "byte": 0x21, "refcount": 1, "active": False, "listed": True, "list_mm": a,
         "halves": [{"A": True, "H": False, "P": False, "reached_by": a, "asces": [aa]},
                    {"A": False, "H": False, "P": True, "reached_by": 0, "asces": []}],
         "crst_mm": 0, "crst_asces": [], "crst": False},
        {"frame": z0, "page": z, "byte": 0x03, "refcount": 1, "active": False, "listed": False, "list_mm": 0,
         "halves": [{"A": True, "H": False, "P": False, "reached_by": b, "asces": [ab]},
                    {"A": True, "H": False, "P": False, "reached_by": b, "asces": [ab]}],
         "crst_mm": 0, "crst_asces": [], "crst": False},
        {"frame": t2, "page": y, "byte": 0x01, "refcount": 1, "active": True, "listed": False, "list_mm": 0,
         "halves": [{"A": True, "H": False, "P": False, "reached_by": 0, "asces": []},
                    {"A": False, "H": False, "P": False, "reached_by": 0, "asces": []}],
         "crst_mm": 0, "crst_asces": [], "crst": False},
    ]
    assert got == sorted(want, key=lambda f: f["frame"])


def test_a_page_table_page_a_walk_uses_as_a_crst_table_is_reached_and_storage_bounds_the_frames():
    k, a, b, st_a, t0, t2, z0 = _build()
    r3_b = MM.asce(k, b) & ~0xFFF
    k.mem.write_u64(r3_b + 8 * 5, t2 | 0x07)                 # R3TE 5 -> "segment table" at Y
    k.mem.write_u64(r3_b + 8 * 6, k.mem.size | 0x07)         # R3TE 6 -> beyond storage
    got = {f["frame"]: f for f in page_table_frames(k.mem, read_vmcoreinfo(k.mem), crst=True)}
    # Y's frame is reached by b's walk (as a segment table): its lower 2K names b
    assert got[t2]["halves"][0]["reached_by"] == b and got[t2]["crst_mm"] == 0 and got[t0]["crst_mm"] == 0
    assert max(got) < k.mem.size
    # a corrupt pgtable_list link ends the list, as crash reads lists
    x = k.mem_map.virt_to_page(t0)
    k.mem.write_u64(x + LRU, k.mem.size + 0x100)
    assert page_table_frames(k.mem, read_vmcoreinfo(k.mem))[0]["frame"] == t0


def test_a_corrupt_mm_list_ends_the_live_mms():
    from s390emu.inspect import live_mms
    from s390emu.vmcoreinfo import number
    k, a, b, *_ = _build()
    v = read_vmcoreinfo(k.mem)
    assert live_mms(k.mem, v) == [a, b]
    k.mem.write_u64(b + number(v, "OFFSET(mm_struct.mmlist)"), k.mem.size + 0x100)
    assert live_mms(k.mem, v) == [a, b]        # read as crash reads lists: the bad link ends it


def test_a_release_whose_pg_active_is_unknown_gives_active_none(small):
    # v6.10 and later publish no PG_lru + 1 rule: without NUMBER(PG_active), "active" is unknown
    v = {key: val for key, val in read_vmcoreinfo(small[0].mem).items() if key not in ("NUMBER(PG_active)",)}
    v["OSRELEASE"] = "6.10.0"
    frames = page_table_frames(small[0].mem, v)
    assert len(frames) == 3 and [f["active"] for f in frames] == [None, None, None]


def test_an_aligned_flags_offset_is_accepted(small):
    v = dict(read_vmcoreinfo(small[0].mem), **{"OFFSET(page.flags)": "8"})
    assert len(page_table_frames(small[0].mem, v)) == 3


def test_with_crst_the_region_and_segment_tables_frames_come_too(small):
    k, a, b, st_a, t0, t2, z0 = small
    got = page_table_frames(k.mem, read_vmcoreinfo(k.mem), crst=True)
    r3 = {m: MM.asce(k, m) & ~0xFFF for m in (a, b)}
    crst = {f["frame"]: f for f in got if f["crst_mm"]}
    st_b = MM.segment_table(k, b, 0x100000)
    want = {t + q * 0x1000: m for t, m in ((r3[a], a), (r3[b], b), (st_a, a), (st_b, b)) for q in range(4)}
    assert {fr: f["crst_mm"] for fr, f in crst.items()} == want
    for f in crst.values():
        assert f["byte"] == 0 and all(h["reached_by"] == 0 for h in f["halves"])
        assert owners(f) == [f["crst_mm"]]
    assert [f["frame"] for f in got] == sorted(f["frame"] for f in got)
    assert [f for f in got if not f["crst_mm"]] == page_table_frames(k.mem, read_vmcoreinfo(k.mem))


@pytest.mark.parametrize("key,value,message", [
    ("OFFSET(page.flags)", "4", "VMCOREINFO struct page offsets are not aligned"),
    ("SIZE(page)", "44", "VMCOREINFO SIZE(page)=44 is not a whole number of doublewords"),
    ("OFFSET(page._refcount)", "2", "VMCOREINFO struct page offsets are not aligned"),
    ("OFFSET(page._mapcount)", "2", "VMCOREINFO struct page offsets are not aligned"),
])
def test_a_misaligned_struct_page_layout_is_a_layout_error(small, key, value, message):
    k = small[0]
    v = dict(read_vmcoreinfo(k.mem), **{key: value})
    with pytest.raises(LayoutError) as e:
        page_table_frames(k.mem, v)
    assert str(e.value) == message


def test_a_mem_map_that_does_not_fit_in_storage_is_a_layout_error(small):
    k = small[0]
    v = read_vmcoreinfo(k.mem)
    at = k.mem.size - 64 * (k.mem.size // 4096) + 64             # one struct page too far
    v = dict(v, **{"SYMBOL(mem_map)": f"{at:x}"})
    with pytest.raises(LayoutError) as e:
        page_table_frames(k.mem, v)
    assert str(e.value) == f"mem_map at {at:#x} ({k.mem.size // 4096} pages) does not fit in storage"
    v["SYMBOL(mem_map)"] = f"{at - 64:x}"                          # ending at the end of storage: read
    page_table_frames(k.mem, v)


@pytest.mark.parametrize("byte,names", [(0, "-"), (0x01, "A0"), (0x02, "A1"), (0x3F, "A0 A1 H0 H1 P0 P1"),
                                        (0x21, "A0 P1"), (0xC0, "b6 b7")])
def test_bit_names_names_each_set_bit_low_to_high(byte, names):
    assert bit_names(byte) == names


def test_owners_are_the_mms_of_either_half_and_of_the_crst_table_sorted():
    half = lambda mm: {"A": True, "H": False, "P": False, "reached_by": mm}    # noqa: E731
    assert owners({"halves": [half(0x30), half(0x10)], "crst_mm": 0}) == [0x10, 0x30]
    assert owners({"halves": [half(0x10), half(0x10)], "crst_mm": 0x20}) == [0x10, 0x20]
    assert owners({"halves": [half(0), half(0)], "crst_mm": 0}) == []


# -- the fragment map --------------------------------------------------------------------------------

def _frame(frame, byte, halves, *, listed=False, active=False, crst_mm=0):
    return {"frame": frame, "page": 0, "byte": byte, "refcount": 1, "active": active, "listed": listed,
            "list_mm": 0, "crst_mm": crst_mm, "crst_asces": [], "crst": bool(crst_mm) and not byte,
            "halves": [{"A": a, "H": h, "P": p, "reached_by": mm, "asces": []} for a, h, p, mm in halves]}


FRAMES = [
    _frame(0x10000, 0x21, [(True, False, False, 0x1000), (False, False, True, 0)], listed=True),
    _frame(0x11000, 0x01, [(True, False, False, 0x1000), (False, False, False, 0x2000)], active=True),
    _frame(0x12000, 0x2A, [(False, False, False, 0), (False, True, True, 0)]),
    _frame(0x20000, 0x00, [(True, False, False, 0), (True, False, False, 0)], crst_mm=0x3000),
]


def test_the_fragment_map_of_each_kind_of_frame_is_the_golden_svg():
    assert fragmap_svg(FRAMES, title="a <small> map", columns=3) == (GOLDEN / "fragmap.svg").read_text()


def test_the_fragment_map_is_16_cells_wide_and_as_high_as_its_rows():
    free = _frame(0x10000, 0x00, [(False, False, False, 0)] * 2)
    doc = xml.dom.minidom.parseString(fragmap_svg([free] * 17))
    assert (doc.documentElement.getAttribute("width"), doc.documentElement.getAttribute("height")) == ("1792", "326")
    doc = xml.dom.minidom.parseString(fragmap_svg([free]))
    assert (doc.documentElement.getAttribute("width"), doc.documentElement.getAttribute("height")) == ("733", "226")


def test_the_fragment_maps_cells_say_each_halfs_state():
    doc = xml.dom.minidom.parseString(fragmap_svg(FRAMES, columns=3))
    fills = [r.getAttribute("fill") for r in doc.getElementsByTagName("rect")]
    green, orange, purple, grey, blue = "#4caf50", "#ff9800", "#9c27b0", "#e0e0e0", "#90caf9"
    assert fills[1:3] == [green, orange] and fills[4:6] == [green, grey]
    assert fills[7:9] == [grey, purple] and fills[10:12] == [blue, blue]
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text")]
    assert texts[:2] == ["page-table frames", "4 frames; left/right = lower/upper 2K half"]
    assert "mm 0x1000,0x2000" in texts and "ACTIVE" in texts and "no owner" in texts and "mm 0x3000" in texts
    assert texts[-6:] == ["allocated", "pending (RCU)", "deferred (pte_free_defer)", "free", "CRST table",
                          "on pgtable_list"]


# -- ptdump ---------------------------------------------------------------------------------------

def _segment_image():
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20
    mem.write_u64(0x10000 + 8 * 1, 0x20800)              # STE 1: the upper half of frame 0x20000
    mem.table(0x20800, 256)[:] = 0x400
    mem.write_u64(0x20800 + 8 * 2, 0x5000 | 0x200)       # one RO page
    mem.write_u64(0x10000 + 8 * 3, 0x300000 | 0x400)     # STE 3: a 1M frame
    mem.write_u64(0x10000 + 8 * 4, 0x20000)              # STE 4: the lower half
    mem.table(0x20000, 256)[:] = 0x400
    return mem


def test_a_marker_inside_a_run_ends_it_at_the_next_entry():
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20
    lines = list(ptdump_lines(mem, 0x10003, [(0, "A"), (0x1234567, "M"), (0x80000000, "B")]))
    assert lines == ["---[ A ]---",
                     "0x0000000000000000-0x0000000001300000        19M PMD I",
                     "---[ M ]---",
                     "0x0000000001300000-0x0000000080000000      2029M PMD I",
                     "---[ B ]---"]
    # a marker at an entry boundary, and one at the end
    lines = list(ptdump_lines(mem, 0x10003, [(0, "A"), (0x100000, "M"), (0x80000000, "B")]))
    assert lines[1:4] == ["0x0000000000000000-0x0000000000100000         1M PMD I", "---[ M ]---",
                          "0x0000000000100000-0x0000000080000000      2047M PMD I"]


def test_markers_at_a_runs_start_inside_it_and_at_its_last_entry():
    lines = list(ptdump_lines(_segment_image(), 0x10003,
                              [(0, "S"), (0x100000, "R"), (0x123456, "I"), (0x1FF800, "L"), (0x80000000, "E")]))
    assert lines == [
        "---[ S ]---",
        "0x0000000000000000-0x0000000000100000         1M PMD I",
        "---[ R ]---",
        "0x0000000000100000-0x0000000000102000         8K PTE I",
        "0x0000000000102000-0x0000000000103000         4K PTE RO X",
        "0x0000000000103000-0x0000000000124000       132K PTE I",
        "---[ I ]---",
        "0x0000000000124000-0x0000000000200000       880K PTE I",
        "---[ L ]---",
        "0x0000000000200000-0x0000000000300000         1M PMD I",
        "0x0000000000300000-0x0000000000400000         1M PMD RW X",
        "0x0000000000400000-0x0000000000500000         1M PTE I",
        "0x0000000000500000-0x0000000080000000      2043M PMD I",
        "---[ E ]---",
    ]


def test_ptdump_lines_of_pages_a_1m_frame_and_each_size_unit():
    lines = list(ptdump_lines(_segment_image(), 0x10003))
    assert lines == [
        "---[ Address Space Start ]---",
        "0x0000000000000000-0x0000000000100000         1M PMD I",
        "0x0000000000100000-0x0000000000102000         8K PTE I",
        "0x0000000000102000-0x0000000000103000         4K PTE RO X",
        "0x0000000000103000-0x0000000000200000      1012K PTE I",
        "0x0000000000200000-0x0000000000300000         1M PMD I",
        "0x0000000000300000-0x0000000000400000         1M PMD RW X",
        "0x0000000000400000-0x0000000000500000         1M PTE I",
        "0x0000000000500000-0x0000000080000000      2043M PMD I",
        "---[ Address Space End ]---",
    ]


def test_a_region_first_space_ends_at_2_to_the_64_printed_as_0_in_exabytes():
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x2C
    assert list(ptdump_lines(mem, 0x1000F, [(0, "S")])) == [
        "---[ S ]---", "0x0000000000000000-0x0000000000000000        16E ASCE I"]


def test_a_table_outside_storage_is_one_invalid_run_of_its_level():
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20
    mem.write_u64(0x10000 + 8 * 2, 0x200000)              # a page table beyond storage
    assert list(ptdump_lines(mem, 0x10003, [(0, "S"), (0x280800, "M"), (0x300000, "E")]))[:6] == [
        "---[ S ]---", "0x0000000000000000-0x0000000000200000         2M PMD I",
        "0x0000000000200000-0x0000000000281000       516K PTE I", "---[ M ]---",
        "0x0000000000281000-0x0000000000300000       508K PTE I", "---[ E ]---"]
    assert first_table_outside(mem, 0x10003).origin == 0x200000
    dot = table_tree_dot(mem, 0x10003)
    assert '  t200000 [label="PT 0x200000\\noutside storage", fillcolor="#999999"];' in dot.splitlines()


def test_runs_are_the_lines_as_dicts_without_markers():
    assert runs(_segment_image(), 0x10003)[:3] == [
        {"start": "0x0000000000000000", "end": "0x0000000000100000", "size": 0x100000, "level": "PMD", "prot": "I"},
        {"start": "0x0000000000100000", "end": "0x0000000000102000", "size": 0x2000, "level": "PTE", "prot": "I"},
        {"start": "0x0000000000102000", "end": "0x0000000000103000", "size": 0x1000, "level": "PTE", "prot": "RO X"},
    ]


def test_markers_name_the_kernels_identity_mapping_or_a_user_space():
    mem = PhysicalMemory(1 << 20)
    assert markers(mem, 0x10007, 0x10000) == [(0, "Identity Mapping Start"), (1 << 20, "Identity Mapping End")]
    assert markers(mem, 0x10007, 0x20000) == [(0, "User Address Space Start"), (1 << 42, "User Address Space End")]
    assert markers(mem, 0x10003, None) == [(0, "User Address Space Start"), (1 << 31, "User Address Space End")]


def test_the_table_tree_as_dot_is_the_golden_file():
    assert table_tree_dot(_segment_image(), 0x10003) == (GOLDEN / "pttree.dot").read_text()
    assert table_tree_dot(_segment_image(), 0x10003, title="T").splitlines()[2] == '  label="T"; labelloc=t;'


# -- Storage -------------------------------------------------------------------------------------

def test_what_each_kind_of_storage_is(tmp_path):
    demo = open_demo()
    assert (demo.version, demo.what()) == ("v66", "the demo (v66)")
    raw = tmp_path / "mem.raw"
    raw.write_bytes(demo.mem.data.tobytes())
    assert open_image(raw).what() == f"{raw}: a raw image (--image), no CPU state"
    assert open_dump(raw).what() == (f"{raw}: not an ELF core (no ELF magic), taken as a raw image holding "
                                     "an s390emu kernel's lowcores and VMCOREINFO")
    elf = tmp_path / "vmcore"
    dump.save(elf, demo.machine)
    assert open_dump(elf).what() == f"{elf}: an ELF core"
    bare = tmp_path / "bare.raw"
    bare.write_bytes(bytes(1 << 20))
    assert open_dump(bare).what() == (f"{bare}: not an ELF core (no ELF magic), taken as a raw image holding "
                                      "no VMCOREINFO, no CPU state")
    bare_elf = tmp_path / "bare"
    dump.save(bare_elf, PhysicalMemory(1 << 20))
    assert open_dump(bare_elf).what() == f"{bare_elf}: an ELF core, no CPU notes"
    linux = tmp_path / "linux.raw"                # a Linux kernel's VMCOREINFO note, found through 0xe0c
    mem = PhysicalMemory(1 << 20)
    mem.write(0xE0C, (0x8000).to_bytes(8, "big"))
    mem.write(0x8000, note(b"OSRELEASE=6.1.0-50-s390x\nPAGESIZE=4096\n"))
    linux.write_bytes(mem.data.tobytes())
    assert open_dump(linux).what() == (f"{linux}: not an ELF core (no ELF magic), taken as a raw image holding "
                                       "VMCOREINFO of no s390emu kernel, no CPU state")


def test_the_demos_misuse_messages_name_the_demo_and_the_spaces():
    demo = open_demo("v64")
    with pytest.raises(Exception) as e:
        demo.cpu(5)
    assert e.value.reason == "no CPU 5 (the demo has 2)"
    with pytest.raises(InvalidArgument) as e:
        demo.asce(0, "kernel")
    assert str(e.value) == "no address space 'kernel' (one of primary, secondary, home)"
