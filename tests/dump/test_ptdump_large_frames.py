"""ptdump of EDAT large frames: a 2G region-third leaf is one ``PUD`` line, a 1M segment
leaf one ``PMD`` line, as ``arch/s390/mm/dump_pagetables.c`` notes ``pud_leaf`` and
``pmd_leaf`` entries at their own level instead of walking below them.

No golden file holds a 2G frame, so the expected lines are written out here, with the
sizes worked by hand (``%9lu`` of the size divided by 1024 while it stays a multiple).
The tables are built with ``tests/dat/builders`` (raw doublewords, not ``dat``'s encoders).
"""

from __future__ import annotations

from s390emu.commands.ptdump import ptdump_lines

from ..dat.builders import (
    DT_R1, DT_R3, R1T, R2T, R3T, REGION1_ENTRY_EMPTY, REGION2_ENTRY_EMPTY, REGION3_ENTRY_EMPTY,
    SEGMENT_ENTRY_EMPTY, ST, TT_R1, TT_R2, TT_R3, asce, empty_image, fill_crst, r3te_large,
    region_entry, ste_large,
)

G2 = 1 << 31
START, END = "---[ Address Space Start ]---", "---[ Address Space End ]---"


def _image():
    """R3T: entry 0 a 2G RO frame, entry 1 a 2G NX frame, entry 2 a segment table whose
    entry 0 is a 1M RW frame; everything else empty."""
    mem = empty_image()
    fill_crst(mem, R3T, REGION3_ENTRY_EMPTY)
    fill_crst(mem, ST, SEGMENT_ENTRY_EMPTY)
    mem.write_u64(R3T + 0, r3te_large(0x8000_0000, protect=True))
    mem.write_u64(R3T + 8, r3te_large(0x1_0000_0000) | 0x100)
    mem.write_u64(R3T + 16, region_entry(ST, TT_R3))
    mem.write_u64(ST, ste_large(0x30_0000))
    return mem


LINES_3 = [
    "0x0000000000000000-0x0000000080000000         2G PUD RO X",
    "0x0000000080000000-0x0000000100000000         2G PUD RW NX",
    "0x0000000100000000-0x0000000100100000         1M PMD RW X",
    "0x0000000100100000-0x0000000180000000      2047M PMD I",
    "0x0000000180000000-0x0000040000000000      4090G PUD I",
]


def test_2g_region_third_frames_are_pud_leaves():
    assert list(ptdump_lines(_image(), asce(R3T, DT_R3))) == [START, *LINES_3, END]


def test_2g_frames_under_a_5_level_asce_are_still_pud_leaves():
    mem = _image()
    fill_crst(mem, R1T, REGION1_ENTRY_EMPTY)
    fill_crst(mem, R2T, REGION2_ENTRY_EMPTY)
    mem.write_u64(R1T, region_entry(R2T, TT_R1))
    mem.write_u64(R2T, region_entry(R3T, TT_R2))
    lines = list(ptdump_lines(mem, asce(R1T, DT_R1)))
    assert lines[:5] == [START, *LINES_3[:4]]
    assert lines[5:] == [
        "0x0000000180000000-0x0000040000000000      4090G PUD I",
        "0x0000040000000000-0x0020000000000000      8188T PGD I",
        "0x0020000000000000-0x0000000000000000     16376P ASCE I",
        END,
    ]


def test_a_run_of_equal_2g_frames_is_one_line():
    mem = _image()
    for i in range(4):
        mem.write_u64(R3T + 8 * i, r3te_large(i * G2, protect=True))
    lines = list(ptdump_lines(mem, asce(R3T, DT_R3)))
    assert lines == [START, "0x0000000000000000-0x0000000200000000         8G PUD RO X",
                     "0x0000000200000000-0x0000040000000000      4088G PUD I", END]
