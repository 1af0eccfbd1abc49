"""``dat.table_tree`` reads tables as dump tools and the kernel's ptdump do.

Tables are hand-built at named addresses: a region-third table at ``R3T``, a segment
table at ``ST`` and a page table in the upper half of the frame at ``PT``.
"""

from __future__ import annotations

import pytest

from dat import Level, lenient_asce, table_tree
from s390emu import AddressingError
from s390emu.memory import PhysicalMemory

R3T, ST, PT = 0x10000, 0x20000, 0x30800
R3_EMPTY, SEG_EMPTY, PTE_INVALID = 0x24, 0x20, 0x400
FC, PROTECT, NOEXEC = 0x400, 0x200, 0x100


@pytest.fixture
def mem():
    mem = PhysicalMemory(1 << 20)
    mem.table(R3T, 2048)[:] = R3_EMPTY
    mem.table(ST, 2048)[:] = SEG_EMPTY
    mem.table(PT, 256)[:] = PTE_INVALID
    mem.write_u64(R3T, ST | 0x07)                  # R3TE 0 -> ST, TT 01, TL 3
    mem.write_u64(ST + 8 * 3, PT)                  # STE 3 -> PT
    mem.write_u64(PT + 8 * 9, 0x5000 | PROTECT)    # PTE 9 -> a read-only page
    return mem


def test_the_top_table_is_the_asces_type_and_length(mem):
    t = table_tree(mem, R3T | 0x04 | 0x03)
    assert (t.level, t.name, t.origin, t.base, t.span, t.length) == (Level.REGION3, "R3T", R3T, 0, 1 << 31, 2048)
    assert t.valid.nonzero()[0].tolist() == [0] and t.descends[0] and not t.leaf.any()


def test_children_carry_their_virtual_base_down_to_the_page_table(mem):
    pt = table_tree(mem, R3T | 0x07).child(0).child(3)
    assert (pt.level, pt.name, pt.origin, pt.base, pt.span) == (None, "PT", PT, 3 << 20, 4096)
    assert pt.leaf.nonzero()[0].tolist() == [9] and pt.frame(9) == 0x5000


def test_entries_beyond_the_table_length_are_not_valid(mem):
    mem.write_u64(R3T + 8 * 600, ST | 0x07)        # index 600 is in the table's second 4K page
    assert table_tree(mem, R3T | 0x04 | 0x00).valid.nonzero()[0].tolist() == [0]
    assert table_tree(mem, R3T | 0x04 | 0x01).valid.nonzero()[0].tolist() == [0, 600]


def test_a_child_tables_length_comes_from_the_entry_that_designates_it(mem):
    mem.write_u64(ST + 8 * 600, 0x31000)           # STE 600: in the ST's second 4K page
    mem.write_u64(R3T + 8, ST | 0x04 | 0x00)       # R3TE 1 -> the same ST with TL 0
    r3 = table_tree(mem, R3T | 0x07)
    assert r3.child(0).valid.nonzero()[0].tolist() == [3, 600]
    assert r3.child(1).valid.nonzero()[0].tolist() == [3]


def test_a_1m_segment_frame_and_a_2g_region_third_frame_are_leaves(mem):
    mem.write_u64(ST + 8 * 5, 0x300000 | FC | NOEXEC)
    mem.write_u64(R3T + 8 * 2, 0x8000_0000 | FC | 0x04)
    r3 = table_tree(mem, R3T | 0x07)
    st = r3.child(0)
    assert r3.leaf.nonzero()[0].tolist() == [2] and r3.frame(2) == 0x8000_0000
    assert st.leaf.nonzero()[0].tolist() == [5] and st.frame(5) == 0x300000
    assert st.descends.nonzero()[0].tolist() == [3]


def test_fc_means_nothing_above_region_third(mem):
    r2t = 0x40000
    mem.table(r2t, 2048)[:] = 0x28
    mem.write_u64(r2t, R3T | FC | 0x0B)           # R2TE 0 with the FC bit: still a table
    t = table_tree(mem, r2t | 0x08 | 0x03)
    assert t.descends[0] and not t.leaf.any() and t.child(0).name == "R3T"


def test_a_table_outside_storage_reads_nothing(mem):
    mem.write_u64(ST + 8 * 4, mem.size - 0x800)    # a page table that ends where storage does
    mem.write_u64(ST + 8 * 6, mem.size)
    st = table_tree(mem, R3T | 0x07).child(0)
    assert not st.child(4).outside_storage
    gone = st.child(6)
    assert gone.outside_storage and gone.entries is None and not gone.valid.any()
    # the masks of a table that was not read are still boolean, one per entry, all false
    for mask in (gone.valid, gone.leaf, gone.descends):
        assert mask.dtype == bool and mask.shape == (256,) and not mask.any()


def test_a_table_that_starts_inside_storage_and_ends_beyond_it_reads_nothing(mem):
    mem.write_u64(R3T + 8, (mem.size - 0x1000) | 0x07)   # a 16K segment table over the last 4K
    t = table_tree(mem, R3T | 0x07).child(1)
    assert t.outside_storage and t.entries is None and t.valid.shape == (2048,)


def test_asking_a_leaf_for_a_table_or_a_table_for_a_frame_is_misuse(mem):
    from dat import InvalidArgument

    st = table_tree(mem, R3T | 0x07).child(0)
    with pytest.raises(InvalidArgument, match=r"^ST 0x20000 entry 0x0 designates no table$"):
        st.child(0)                                # an invalid entry
    with pytest.raises(InvalidArgument, match=r"^ST 0x20000 entry 0x3 maps no frame$"):
        st.frame(3)                                # a page table, not a frame
    with pytest.raises(InvalidArgument):
        st.child(3).child(9)                       # a page: page tables designate no tables


def test_lenient_asce_takes_the_type_from_entry_0(mem):
    assert lenient_asce(mem, R3T) == R3T | 0x04 | 0x03
    with pytest.raises(AddressingError):
        lenient_asce(mem, mem.size)
