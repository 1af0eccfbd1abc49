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
        assert (Level.SEGMENT in r.crst and len(r.crst[Level.SEGMENT]) == 1) is followed, kw
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
