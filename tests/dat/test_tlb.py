"""``dat.tlb``: which table-naming TLB entries a CPU may form, and what each purge clears.

Each rule of ``formable`` (module docstring) by the smallest image, compared as the
exact set of entries and the exact byte ranges it says it read (``Kernel.tlb_fill``
reuses an answer while none of those bytes changed, so a range too short is a stale
TLB); ``purge_table``'s dependent entries over three levels; ``naming``'s bounds and
``describe``'s rows.  Tables are built by hand with ``builders``.
"""

from __future__ import annotations

import pytest

from dat.tlb import describe, formable, naming, purge_asce, purge_table

from .builders import (
    DT_R1, DT_R3, DT_ST, PT_HIGH, PT_LOW, R1T, R2T, R3T, SEGMENT_ENTRY_EMPTY, ST, STORAGE, TT_R1,
    TT_R2, TT_R3, asce, empty_image, fill_crst, fill_pt, pte, r3te_large, region_entry, ste,
    ste_large,
)

PT2 = 0x0007_0000                 #: a second page-table frame
FRAME = 0x0060_0000


def seg_image():
    """A segment table whose STE 1 designates a page table with one valid PTE."""
    mem = empty_image()
    fill_crst(mem, ST, SEGMENT_ENTRY_EMPTY)
    mem.write_u64(ST + 8, ste(PT_LOW))
    fill_pt(mem, PT_LOW)
    mem.write_u64(PT_LOW + 8 * 7, pte(FRAME))
    return mem


def test_a_real_space_asce_forms_nothing():
    mem = seg_image()
    read = []
    assert formable(mem, asce(ST, DT_ST, real=True), read=read) == frozenset()
    assert read == []


def test_a_segment_entry_and_the_ptes_of_its_page_table():
    mem = seg_image()
    a = asce(ST, DT_ST)
    read = []
    assert formable(mem, a, read=read) == {(a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert read == [(ST, ST + 0x4000), (PT_LOW, PT_LOW + 0x800)]
    assert formable(mem, a) == formable(mem, a, read=[])


@pytest.mark.parametrize("value", [pte(FRAME, invalid=True), pte(FRAME, bit52=True)])
def test_a_page_table_without_a_usable_pte_forms_only_the_segment_entry(value):
    mem = seg_image()
    mem.write_u64(PT_LOW + 8 * 7, value)
    a = asce(ST, DT_ST)
    assert formable(mem, a) == {(a, ST, PT_LOW, 0)}


def test_the_ptes_of_one_page_table_count_in_its_own_2k_only():
    mem = seg_image()
    mem.write_u64(ST + 8, ste(PT_HIGH))
    fill_pt(mem, PT_HIGH)
    a = asce(ST, DT_ST)
    assert formable(mem, a) == {(a, ST, PT_HIGH, 0)}            # PT_LOW's valid PTE is not PT_HIGH's
    mem.write_u64(PT_HIGH + 8 * 0xFF, pte(FRAME))
    assert formable(mem, a) == {(a, ST, PT_HIGH, 0), (a, PT_HIGH, 0, -1)}


@pytest.mark.parametrize("entry,private,kept", [
    (ste(PT2, invalid=True), False, False),
    (ste(PT2, tt=TT_R3), False, False),                 # the wrong table type
    (ste(PT2, cs=True), False, True),
    (ste(PT2, cs=True), True, False),                   # common segment, private space
    (ste(PT2), True, True),
    (ste(PT2) | 0x3, True, True),                       # bits 62-63: no part of the origin or CS/FC
])
def test_which_segment_entries_are_formed(entry, private, kept):
    mem = seg_image()
    mem.write_u64(ST, entry)                            # before STE 1: a skip ends nothing
    fill_pt(mem, PT2)
    a = asce(ST, DT_ST, private=private)
    assert formable(mem, a) == {(a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)} | ({(a, ST, PT2, 0)} if kept else set())


def test_a_1m_frame_is_no_page_table_with_edat1_and_is_one_without():
    mem = seg_image()
    mem.write_u64(ST, ste_large(0x100000))
    a = asce(ST, DT_ST)
    base = {(a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert formable(mem, a) == base
    # without EDAT-1 the STE designates a page table at the frame's origin
    fill_pt(mem, 0x100000)
    assert formable(mem, a, edat1=False, edat2=False) == base | {(a, ST, 0x100000, 0)}


def test_a_page_table_not_wholly_in_storage_is_not_formed_and_one_ending_at_its_end_is():
    mem = seg_image()
    a = asce(ST, DT_ST)
    mem.write_u64(ST + 8, ste(STORAGE - 0x800))
    fill_pt(mem, STORAGE - 0x800)
    read = []
    assert formable(mem, a, read=read) == {(a, ST, STORAGE - 0x800, 0)}
    assert read == [(ST, ST + 0x4000), (STORAGE - 0x800, STORAGE)]
    mem.write_u64(ST + 8, ste(STORAGE))
    mem.write_u64(ST + 16, ste(PT2))                    # the next STE is still formed
    fill_pt(mem, PT2)
    read = []
    assert formable(mem, a, read=read) == {(a, ST, PT2, 0)}
    assert read == [(ST, ST + 0x4000), (PT2, PT2 + 0x800)]


def test_the_asce_table_length_bounds_the_entries_read():
    mem = seg_image()
    mem.write_u64(ST + 8 * 0x200, ste(PT2))             # in the second 4K: beyond TL 0
    fill_pt(mem, PT2)
    for tl, extra in ((0, set()), (1, {PT2})):
        a = asce(ST, DT_ST, tl)
        read = []
        assert formable(mem, a, read=read) == {(a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)} | {
            (a, ST, p, 0) for p in extra}
        assert read[0] == (ST, ST + 0x1000 * (tl + 1))


def test_a_top_table_not_wholly_in_storage_is_not_read_and_one_ending_at_its_end_is():
    mem = empty_image()
    top = STORAGE - 0x1000
    fill_crst(mem, top - 0x3000, SEGMENT_ENTRY_EMPTY)      # (the 16K ending at the end of storage)
    mem.write_u64(top, ste(PT_LOW))
    mem.write_u64(PT_LOW, pte(FRAME))
    read = []
    assert formable(mem, asce(top, DT_ST, 0), read=read) == {(asce(top, DT_ST, 0), top, PT_LOW, 0),
                                                             (asce(top, DT_ST, 0), PT_LOW, 0, -1)}
    assert read == [(top, STORAGE), (PT_LOW, PT_LOW + 0x800)]
    read = []
    assert formable(mem, asce(top, DT_ST, 1), read=read) == frozenset() and read == []


def region_image():
    """R1T entry 0 -> R2T (TF 1, TL 2) entry 0x200 -> R3T entry 5 -> ST entry 1 -> PT_LOW."""
    mem = seg_image()
    fill_crst(mem, R1T, 0x2C)
    fill_crst(mem, R2T, 0x28)
    fill_crst(mem, R3T, 0x24)
    mem.write_u64(R1T, region_entry(R2T, TT_R1, tf=1, tl=2))
    mem.write_u64(R2T + 8 * 0x200, region_entry(R3T, TT_R2))
    mem.write_u64(R3T + 8 * 5, region_entry(ST, TT_R3))
    return mem


def test_each_region_level_forms_its_entry_and_reads_its_tables_tf_to_tl():
    mem = region_image()
    a = asce(R1T, DT_R1)
    read = []
    assert formable(mem, a, read=read) == {(a, R1T, R2T, 3), (a, R2T, R3T, 2), (a, R3T, ST, 1),
                                          (a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert read == [(R1T, R1T + 0x4000), (R2T + 0x1000, R2T + 0x3000), (R3T, R3T + 0x4000),
                    (ST, ST + 0x4000), (PT_LOW, PT_LOW + 0x800)]


@pytest.mark.parametrize("index", [0x1FF, 0x600])
def test_a_region_entry_outside_its_parents_tf_to_tl_is_not_formed(index):
    mem = region_image()
    mem.write_u64(R2T + 8 * 0x200, 0x28)
    mem.write_u64(R2T + 8 * index, region_entry(R3T, TT_R2))
    a = asce(R1T, DT_R1)
    assert formable(mem, a) == {(a, R1T, R2T, 3)}


def test_the_next_tables_tf_and_tl_come_from_the_entry_that_designates_it():
    mem = region_image()
    mem.write_u64(R2T + 8 * 0x200, region_entry(R3T, TT_R2, tf=3, tl=3))
    mem.write_u64(R3T + 8 * 5, 0x24)
    mem.write_u64(R3T + 8 * 0x600, region_entry(ST, TT_R3, tl=0))
    a = asce(R1T, DT_R1)
    read = []
    assert formable(mem, a, read=read) == {(a, R1T, R2T, 3), (a, R2T, R3T, 2), (a, R3T, ST, 1),
                                          (a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert read[2:4] == [(R3T + 0x3000, R3T + 0x4000), (ST, ST + 0x1000)]


ST2 = 0x0008_0000                  #: a second segment table, every entry empty


@pytest.mark.parametrize("entry,private,edat1,edat2,kept", [
    (r3te_large(0), False, True, True, False),          # a 2G frame designates no table
    (r3te_large(0), False, True, False, True),          # without EDAT-2: a segment table at 0
    (r3te_large(0), False, False, True, True),          # EDAT-2 needs EDAT-1 (as the walker)
    (region_entry(ST2, TT_R3, cr=True), True, True, True, False),   # common region, private space
    (region_entry(ST2, TT_R3, cr=True), False, True, True, True),
    (region_entry(ST2, TT_R3, cr=True), True, True, False, True),   # CR means nothing without EDAT-2
    (region_entry(ST2, TT_R3), True, True, True, True),             # (TL 3: bits 62-63 set)
    (region_entry(ST2, TT_R3, invalid=True), False, True, True, False),
    (region_entry(ST2, TT_R2), False, True, True, False),
])
def test_which_region_third_entries_are_formed(entry, private, edat1, edat2, kept):
    mem = region_image()
    origin = entry & 0xFFFF_FFFF_FFFF_F000
    mem.write_u64(R3T + 8 * 4, entry)                   # before R3TE 5: a skip ends nothing
    fill_crst(mem, origin, SEGMENT_ENTRY_EMPTY)
    a = asce(R1T, DT_R1, private=private)
    got = formable(mem, a, edat1=edat1, edat2=edat2)
    walk = {(a, R1T, R2T, 3), (a, R2T, R3T, 2), (a, R3T, ST, 1), (a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert got == walk | ({(a, R3T, origin, 1)} if kept else set())


def test_both_facilities_are_on_unless_turned_off():
    mem = region_image()
    mem.write_u64(R3T + 8 * 4, r3te_large(0))
    mem.write_u64(ST, ste_large(0x100000))
    fill_crst(mem, 0, SEGMENT_ENTRY_EMPTY)
    fill_pt(mem, 0x100000)
    a = asce(R1T, DT_R1)
    assert formable(mem, a) == formable(mem, a, edat1=True, edat2=True) != formable(mem, a, edat2=False)
    assert formable(mem, a, edat2=False) != formable(mem, a, edat1=False, edat2=False)


def test_a_table_outside_storage_ends_only_its_own_walk():
    mem = region_image()
    mem.write_u64(R1T, region_entry(0x4000_0000, TT_R1))             # R2T beyond storage
    mem.write_u64(R1T + 8, region_entry(R2T, TT_R1, tf=1, tl=2))
    a = asce(R1T, DT_R1)
    read = []
    assert formable(mem, a, read=read) == {(a, R1T, 0x4000_0000, 3), (a, R1T, R2T, 3), (a, R2T, R3T, 2),
                                          (a, R3T, ST, 1), (a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}
    assert read[:2] == [(R1T, R1T + 0x4000), (R2T + 0x1000, R2T + 0x3000)]


def test_a_region3_asce_starts_at_the_region_third_level():
    mem = region_image()
    a = asce(R3T, DT_R3)
    assert formable(mem, a) == {(a, R3T, ST, 1), (a, ST, PT_LOW, 0), (a, PT_LOW, 0, -1)}


# -- purges -------------------------------------------------------------------------------

A, B = asce(R1T, DT_R1), asce(R3T, DT_R3)
ENTRIES = frozenset({(A, R1T, R2T, 3), (A, R2T, R3T, 2), (A, R3T, ST, 1), (A, ST, PT_LOW, 0),
                     (A, PT_LOW, 0, -1), (A, ST, PT_HIGH, 0), (B, R3T, ST, 1), (B, ST, PT2, 0),
                     (B, PT2, 0, -1)})


def test_purge_asce_clears_exactly_the_entries_formed_through_it():
    assert purge_asce(ENTRIES, A) == {e for e in ENTRIES if e[0] == B}
    assert purge_asce(ENTRIES, asce(ST, DT_ST)) == ENTRIES


def test_purge_table_clears_what_designates_it_was_read_from_it_or_from_any_table_below():
    # R3T: the entries designating it, read from it, and from the ST and page tables below
    assert purge_table(ENTRIES, R3T) == {(A, R1T, R2T, 3)}
    assert purge_table(ENTRIES, ST) == {(A, R1T, R2T, 3), (A, R2T, R3T, 2)}
    assert purge_table(ENTRIES, PT_LOW) == ENTRIES - {(A, ST, PT_LOW, 0), (A, PT_LOW, 0, -1)}
    assert purge_table(ENTRIES, PT2) == ENTRIES - {(B, ST, PT2, 0), (B, PT2, 0, -1)}
    assert purge_table(ENTRIES, FRAME) == ENTRIES


def test_purge_table_follows_dependents_down_a_long_chain():
    chain = [(A, 0x1000 * i, 0x1000 * (i + 1), 3) for i in range(1, 8)]
    assert purge_table(frozenset(chain + [(A, 0x8000, 0, -1)]), 0x3000) == {chain[0]}


def test_naming_picks_entries_read_from_or_designating_a_table_in_the_half_open_range():
    assert sorted(naming(ENTRIES, ST, ST + 0x4000)) == sorted(
        [(A, R3T, ST, 1), (A, ST, PT_LOW, 0), (A, ST, PT_HIGH, 0), (B, R3T, ST, 1), (B, ST, PT2, 0)])
    assert sorted(naming(ENTRIES, PT_HIGH, PT_HIGH + 0x800)) == [(A, ST, PT_HIGH, 0)]
    assert naming(ENTRIES, PT_HIGH + 1, PT_HIGH + 0x800) == []
    assert sorted(naming(ENTRIES, PT_LOW, PT_HIGH)) == sorted([(A, ST, PT_LOW, 0), (A, PT_LOW, 0, -1)])
    # a table read at hi itself is not in [lo, hi)
    assert sorted(naming(ENTRIES, R3T, ST)) == sorted([(A, R2T, R3T, 2), (A, R3T, ST, 1), (B, R3T, ST, 1)])


def test_describe_names_the_entry_as_a_trace_row():
    assert [describe(e) for e in [(A, R1T, R2T, 3), (A, R2T, R3T, 2), (A, R3T, ST, 1),
                                  (A, ST, PT_HIGH, 0), (A, PT_LOW, 0, -1)]] == [
        "RFTE 0x10000->0x20000", "RSTE 0x20000->0x30000", "RTTE 0x30000->0x40000",
        "STE 0x40000->0x50800", "PTEs of 0x50000"]
