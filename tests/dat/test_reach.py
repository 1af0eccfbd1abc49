"""``dat.reachable_tables``: which entries the walk follows, each rule by the smallest
table image that needs it, beside its neighbour (the checks' reachability and ``attach``'s
owner record rest on it, so a rule dropped here is a finding lost there).

Images: 1 MiB of storage, a segment table at 0x10000 and a region-third table at
0x20000, every entry invalid (0x20) but the one under test.
"""

from __future__ import annotations

import numpy as np

from dat import reachable_tables
from dat.entries import Level
from s390emu.memory import PhysicalMemory

SEG, R3 = 0x10000, 0x20000
ASCE_SEG = SEG | 0x3                 #: segment-table ASCE, TL 3
ASCE_R3 = R3 | 0x4 | 0x3             #: region-third ASCE, TL 3
PRIVATE = 0x100


def image(ste=None, rtte=None):
    mem = PhysicalMemory(1 << 20)
    mem.table(SEG, 2048)[:] = 0x20
    mem.table(R3, 2048)[:] = 0x20
    if ste is not None:
        mem.write_u64(SEG + 8 * 3, ste)
    if rtte is not None:
        mem.write_u64(R3, rtte)
    return mem


def pts(r):
    return [hex(x) for x in r.page_tables]


def test_a_real_space_asce_reaches_nothing_and_says_so_in_uint64():
    r = reachable_tables(image(ste=0x30800), ASCE_SEG | 0x20)
    assert r.crst == {} and pts(r) == [] and list(r.pt_parents) == []
    assert r.page_tables.dtype == np.uint64 and r.pt_parents.dtype == np.uint64
    assert r.tables() == []


def test_a_valid_ste_is_followed_with_its_low_bits_dropped_and_its_parent_given():
    r = reachable_tables(image(ste=0x30801), ASCE_SEG)
    assert pts(r) == ["0x30800"] and [hex(x) for x in r.pt_parents] == [hex(SEG + 24)]
    assert r.page_tables.dtype == np.uint64
    assert r.tables() == [("SEGMENT", SEG, 0x4000), ("PT", 0x30800, 0x800)]
    assert pts(reachable_tables(image(ste=0x30820), ASCE_SEG)) == []          # invalid


def test_a_common_segment_is_not_followed_from_a_private_space_only():
    assert pts(reachable_tables(image(ste=0x30811), ASCE_SEG)) == ["0x30800"]
    assert pts(reachable_tables(image(ste=0x30811), ASCE_SEG | PRIVATE)) == []
    assert pts(reachable_tables(image(ste=0x30801), ASCE_SEG | PRIVATE)) == ["0x30800"]


def test_a_1m_frame_is_no_page_table_with_edat1_and_is_one_without():
    assert pts(reachable_tables(image(ste=0x30C00), ASCE_SEG)) == []
    assert pts(reachable_tables(image(ste=0x30C00), ASCE_SEG, edat1=False)) == ["0x30800"]


def test_a_2g_frame_is_no_segment_table_with_edat2_and_is_one_without_either_facility():
    rtte = SEG | 0x400 | 0x4 | 0x3
    for kw, followed in (({}, False), ({"edat2": False}, True), ({"edat1": False}, True)):
        r = reachable_tables(image(ste=0x30800, rtte=rtte), ASCE_R3, **kw)
        assert (Level.SEGMENT in r.crst and r.crst[Level.SEGMENT].tolist() == [SEG]) is followed, kw
        assert pts(r) == (["0x30800"] if followed else [])


def test_a_private_space_does_not_follow_a_common_region_with_edat2():
    rtte = SEG | 0x10 | 0x4 | 0x3
    assert pts(reachable_tables(image(ste=0x30800, rtte=rtte), ASCE_R3)) == ["0x30800"]
    assert pts(reachable_tables(image(ste=0x30800, rtte=rtte), ASCE_R3 | PRIVATE)) == []
    assert pts(reachable_tables(image(ste=0x30800, rtte=rtte), ASCE_R3 | PRIVATE, edat2=False)) == ["0x30800"]


def test_the_asce_table_length_bounds_the_indices_read():
    # An STE at index 600: TL 0 admits indices 0..511 (the first 4K page) only.
    mem = image()
    mem.write_u64(SEG + 8 * 600, 0x30800)
    assert pts(reachable_tables(mem, SEG | 0x3)) == ["0x30800"]
    assert pts(reachable_tables(mem, SEG | 0x0)) == []


def test_the_asce_table_length_admits_its_last_quarter():
    mem = image()
    mem.write_u64(SEG + 8 * 0x7FF, 0x30800)
    mem.write_u64(SEG + 8 * 600, 0x31000)
    assert pts(reachable_tables(mem, SEG | 0x3)) == ["0x31000", "0x30800"]
    assert pts(reachable_tables(mem, SEG | 0x1)) == ["0x31000"]


def test_an_entry_in_the_last_doubleword_of_storage_is_read():
    mem = PhysicalMemory(1 << 20)
    top = (1 << 20) - 0x1000                    # a segment table of TL 0: its STE 0x1FF is last
    mem.table(top, 512)[:] = 0x20
    mem.write_u64((1 << 20) - 8, 0x30800)
    r = reachable_tables(mem, top | 0x0)
    assert pts(r) == ["0x30800"] and [hex(x) for x in r.pt_parents] == [hex((1 << 20) - 8)]


R2 = 0x40000
ASCE_R2 = R2 | 0x8 | 0x3                     #: region-second ASCE, TL 3


def test_each_region_entrys_tf_and_tl_bound_the_next_tables_indices():
    # R2TE 0 -> R3T with TF 1, TL 2: its entries 0x200..0x5FF are read, 0x1FF and 0x600 are not;
    # each designates a segment table of its own (TF 2, TL 2: only STEs 0x400..0x5FF read).
    mem = image()
    mem.table(R2, 2048)[:] = 0x20
    mem.write_u64(R2, R3 | 0x40 | 0x8 | 0x2)
    for n, i in enumerate((0x1FF, 0x200, 0x5FF, 0x600)):
        st = 0x50000 + 0x4000 * n
        mem.table(st, 2048)[:] = 0x20
        mem.write_u64(R3 + 8 * i, st | 0x80 | 0x4 | 0x2)
        mem.write_u64(st + 8 * 0x3FF, 0x34000 + 0x800 * n)      # below TF 2: not followed
        mem.write_u64(st + 8 * 0x400, 0x30000 + 0x800 * n)
        mem.write_u64(st + 8 * 0x5FF, 0x38000 + 0x800 * n)
        mem.write_u64(st + 8 * 0x600, 0x3C000 + 0x800 * n)      # beyond TL 2: not followed
    r = reachable_tables(mem, ASCE_R2)
    assert [hex(x) for x in r.crst[Level.REGION2]] == [hex(R2)]
    assert [hex(x) for x in r.crst[Level.REGION3]] == [hex(R3)]
    assert [hex(x) for x in r.crst[Level.SEGMENT]] == ["0x54000", "0x58000"]
    assert pts(r) == ["0x30800", "0x38800", "0x31000", "0x39000"]
    assert r.tables() == [("REGION2", R2, 0x4000), ("REGION3", R3, 0x4000), ("SEGMENT", 0x54000, 0x4000),
                          ("SEGMENT", 0x58000, 0x4000), ("PT", 0x30800, 0x800), ("PT", 0x38800, 0x800),
                          ("PT", 0x31000, 0x800), ("PT", 0x39000, 0x800)]
