"""``pagetables.storage_frames`` in process on the real guest (``s390emu pages`` runs it in
a subprocess in tests/realguest/test_inspection.py): the frames of every recorded process's
page tables with drgn's fragment byte, its CRST tables with ``crst``, the lists with the
mms, and 6.1's segment-table pages told apart only where the rules have fragments.
"""

from __future__ import annotations

import pytest

from s390emu.inspect import open_dump
from s390emu.inspect.memmap import KernelSpace
from s390emu.inspect.pagetables import page_table_frames, storage_frames
from s390emu.inspect.vmlinux import kernel_mms


@pytest.fixture(scope="module")
def st(real_guest):
    return open_dump(real_guest.elf)


def test_every_recorded_page_table_frame_with_its_byte_and_the_asce_reaching_it(real_guest, st):
    frames = {f["frame"]: f for f in storage_frames(st)}
    pages = real_guest.truth["struct_pages"]
    walked = {c["cr"][i] for c in real_guest.cpus for i in (1, 7, 13)}     # the CPUs' ASCEs (no mms given)
    assert walked & {p["asce"] for p in real_guest.processes}
    for p in real_guest.processes:
        for t in p["tables"]["pte"]:
            f = frames[t & ~0xFFF]
            assert (f["page"], f["byte"]) == (pages[hex(t & ~0xFFF)]["page"], pages[hex(t & ~0xFFF)]["refcount"] >> 24)
            assert (p["asce"] in f["halves"][t >> 11 & 1]["asces"]) == (p["asce"] in walked), hex(t)
            assert f["listed"] is None and f["list_mm"] is None      # no mms given


def test_with_crst_every_recorded_crst_table_is_a_crst_frame(real_guest, st):
    frames = {f["frame"]: f for f in storage_frames(st, crst=True)}
    walked = {c["cr"][i] for c in real_guest.cpus for i in (1, 7, 13)}
    for p in real_guest.processes:
        for t in p["tables"]["crst"] if p["asce"] in walked else ():
            assert frames[t]["crst"] and p["asce"] in frames[t]["crst_asces"], hex(t)
    assert len(frames) > len(storage_frames(st))
    # The segment tables of the processes no CPU runs: their first page is PageTable with
    # byte 0 (pgtable_pmd_page_ctor), a CRST frame that no known ASCE reaches and no mm owns.
    unreached = [frames[t] for p in real_guest.processes if p["asce"] not in walked
                 for t in p["tables"]["crst"] if t in frames]
    assert unreached and all(f["crst"] and f["crst_mm"] == 0 and f["crst_asces"] == [] for f in unreached)


def test_a_segment_tables_page_table_marked_first_page_is_a_page_table_without_fragments(st):
    """Without fragments (v6.7+ rules) a PageTable page with byte 0 is one whole table, so
    fewer frames are CRST frames than under 6.1's rules."""
    with_fragments = {f["frame"] for f in storage_frames(st, crst=True) if f["crst"]}
    without = {f["frame"] for f in storage_frames(st, crst=True, fragments=False) if f["crst"]}
    assert without < with_fragments
    # page_table_frames' default is the fragments of the rules before v6.7
    kernel = st.kernel_asce()
    default = page_table_frames(st.mem, st.vmcoreinfo, crst=True, kernel=KernelSpace(st.mem, kernel),
                                asces=(kernel, *st.cpu_asces()))
    assert {f["frame"] for f in default if f["crst"]} == with_fragments


def test_with_the_mms_every_listed_page_names_its_mm(real_guest, st):
    mms = kernel_mms(st, str(real_guest.path(real_guest.truth["vmlinux"])))
    frames = {f["frame"]: f for f in storage_frames(st, mms=mms)}
    listed = {frame: p["mm"] for p in real_guest.processes for frame in p["pgtable_list"]}
    assert {fr: f["list_mm"] for fr, f in frames.items() if f["listed"]} == listed
    assert all(f["listed"] is False and f["list_mm"] == 0 for fr, f in frames.items() if fr not in listed)


def test_with_crst_and_the_mms_every_4k_of_each_crst_table_names_its_mm(real_guest, st):
    """A region or segment table is 16K: each of its four frames is a CRST frame of the
    process's mm, reached from its ASCE, whose 2K halves hold no page table; the kernel's
    own CRST frames belong to no mm (0)."""
    mms = kernel_mms(st, str(real_guest.path(real_guest.truth["vmlinux"])))
    frames = {f["frame"]: f for f in storage_frames(st, crst=True, mms=mms)}
    for p in real_guest.processes:
        for t in p["tables"]["crst"]:
            for q in range(4):
                f = frames[t + q * 0x1000]
                assert f["crst"] and (f["crst_mm"], set(f["crst_asces"])) == (p["mm"], {p["asce"]}), hex(t)
                assert [(h["reached_by"], h["asces"]) for h in f["halves"]] == [(0, []), (0, [])]
    kernel = [f for f in frames.values() if f["crst"] and st.kernel_asce() in f["crst_asces"]]
    assert kernel and all(f["crst_mm"] == 0 for f in kernel)
