"""``check_linux`` and ``kernel_mms`` in process on the real guest (tests/realguest/
test_inspection.py runs ``s390emu check`` as a subprocess, which a mutation run cannot map
to these functions): the mms drgn finds equal the ones tools/real_guest.py recorded, the
live guest is clean, and each invariant is named with every field of its finding when one
byte of the kernel's bytes is changed (in the copy-on-write storage, never in the file).
"""

from __future__ import annotations

import sys

import pytest

import dat
from pgalloc.checks import fmt, legal_byte
from pgalloc.registry import VERSIONS, rules_for_release
from s390emu.inspect import open_dump
from s390emu import structs as S
from s390emu.inspect.linuxcheck import Mm, _Pages, check_linux
from s390emu.inspect.vmlinux import VmlinuxError, _list, kernel_mms
from s390emu.inspect.memmap import KernelSpace, page_table_rule, pg_active, struct_pages
from s390emu.vmcoreinfo import number

from .test_inspection import user_process


@pytest.fixture
def st(real_guest):
    return open_dump(real_guest.elf)


@pytest.fixture(scope="module")
def mms(real_guest):
    return kernel_mms(open_dump(real_guest.elf), str(real_guest.path(real_guest.truth["vmlinux"])))


def rules(st):
    return rules_for_release(st.vmcoreinfo["OSRELEASE"])


def page_of(real_guest, frame: int) -> int:
    return real_guest.truth["struct_pages"][hex(frame)]["page"]


def poke(st, real_guest, frame: int, field: str, value: bytes, page: int | None = None) -> None:
    """Write ``value`` at ``field`` (``_refcount``, ``_mapcount``) of ``frame``'s struct page
    (or of the struct page at ``page``, for a frame the recording does not list)."""
    at = (page_of(real_guest, frame) if page is None else page) + number(st.vmcoreinfo, f"OFFSET(page.{field})")
    st.mem.write(dat.translate(st.mem, real_guest.truth["kernel"]["asce"], at).absolute, value)


def test_kernel_mms_are_the_recorded_processes(real_guest, mms):
    expected = {p["mm"]: (p["asce"], f"{p['comm']}[{p['pid']}]",
                          tuple(page_of(real_guest, f) for f in p["pgtable_list"])) for p in real_guest.processes}
    got = {m.address: (m.asce, m.tasks, m.listed) for m in mms}
    assert set(got) == set(expected)
    for mm, (asce, task, listed) in expected.items():
        assert got[mm][0] == asce and task in got[mm][1] and got[mm][2] == listed, hex(mm)


def test_kernel_mms_with_a_file_that_is_no_vmlinux_is_one_line(real_guest, st, tmp_path):
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(VmlinuxError) as e:
        kernel_mms(st, str(bad))
    assert str(e.value).startswith(f"{bad}: drgn cannot read the kernel of {st.name} with it: ")
    assert str(e.value).endswith(" 'struct page'") and "\n" not in str(e.value)    # drgn's words, on one line


def test_kernel_mms_without_drgn_is_one_line(real_guest, st, monkeypatch):
    monkeypatch.setitem(sys.modules, "drgn", None)            # import drgn raises ImportError
    with pytest.raises(VmlinuxError) as e:
        kernel_mms(st, str(real_guest.path(real_guest.truth["vmlinux"])))
    assert str(e.value) == "--vmlinux needs drgn (pip install drgn)"


def test_a_pgtable_list_that_does_not_close_or_leaves_the_kernels_space(real_guest, st):
    kernel = KernelSpace(st.mem, st.kernel_asce())
    proc = user_process(real_guest)
    lru = 8                                       # any offset: the list is read as nodes
    head = page_of(real_guest, proc["pgtable_list"][0]) + lru     # a node on the list, taken as the head
    nodes = _list(kernel, head, lru)
    # the list seen from one of its nodes: the real head (the mm's) shows up as a "page"
    assert len(nodes) == len(proc["pgtable_list"])
    loop = 0x1000                                # a node that points at itself (low core, identity-mapped)
    st.mem.write_u64(loop, loop)
    st.mem.write_u64(loop + 8, loop)
    with pytest.raises(VmlinuxError) as e:
        _list(kernel, loop + 8, lru)
    assert str(e.value) == f"the pgtable_list at {loop + 8:#x} does not close (node {loop:#x})"
    st.mem.write_u64(loop + 8, 0x3FF_FFFF_F000)   # a node in no mapped kernel page
    with pytest.raises(VmlinuxError) as e:
        _list(kernel, loop + 8, lru)
    assert str(e.value).startswith(f"the pgtable_list at {loop + 8:#x}: kernel address 0x3fffffff000 ")


def test_a_pgtable_list_of_exactly_max_listed_pages_is_read(real_guest, st, monkeypatch):
    from s390emu.inspect import vmlinux

    kernel = KernelSpace(st.mem, st.kernel_asce())
    proc = user_process(real_guest)
    head = page_of(real_guest, proc["pgtable_list"][0]) + 8
    n = len(_list(kernel, head, 8))
    monkeypatch.setattr(vmlinux, "MAX_LISTED", n)
    assert len(_list(kernel, head, 8)) == n
    monkeypatch.setattr(vmlinux, "MAX_LISTED", n - 1)
    with pytest.raises(VmlinuxError, match="does not close"):
        _list(kernel, head, 8)


def test_check_linux_on_the_live_guest_is_clean_and_says_what_it_walked(real_guest, st, mms):
    name, why = rules(st)
    c = check_linux(st, name, why, mms)
    assert (c.rules, c.why, c.findings, c.skipped) == (name, why, [], [])
    assert c.asces[0] == real_guest.truth["kernel"]["asce"]
    assert set(c.asces) == {real_guest.truth["kernel"]["asce"]} | {p["asce"] for p in real_guest.processes} \
        | {c["cr"][i] for c in real_guest.cpus for i in (1, 7, 13)}
    assert len(c.asces) == len(set(c.asces))
    tables = set(real_guest.truth["kernel"]["tables"]["pte"])
    for p in real_guest.processes:
        tables |= set(p["tables"]["pte"])
    assert c.page_tables == len(tables)
    # the kernel's page tables in pages the page allocator never marked (memblock, early boot)
    pages = real_guest.truth["struct_pages"]
    early = {t & ~0xFFF for t in real_guest.truth["kernel"]["tables"]["pte"]
             if (pages[hex(t & ~0xFFF)]["mapcount"] & 0xF000_0200) != 0xF000_0000}
    assert c.early_tables == len(early) > 0


def test_check_linux_without_the_mms_skips_the_two_checks_that_need_them(st):
    name, why = rules(st)
    c = check_linux(st, name, why)
    assert c.findings == []
    assert c.skipped == ["list_membership: the mms' pgtable_list needs the kernel's debug info (--vmlinux)",
                         "ownership: which mm owns each table needs the mms (--vmlinux)"]


def test_an_illegal_fragment_byte_is_a_bit_legality_finding(real_guest, st):
    name, why = rules(st)
    proc = user_process(real_guest)
    frame = proc["tables"]["pte"][0] & ~0xFFF
    byte = next(b for b in range(1, 256) if not legal_byte(VERSIONS[name], b) and b != 0x03)
    poke(st, real_guest, frame, "_refcount", bytes([byte]))
    found = [f for f in check_linux(st, name, why).findings if f.invariant == "bit_legality"]
    assert found == [("bit_legality", page_of(real_guest, frame), frame, byte,
                      f"page-table page's byte {fmt(byte)} is illegal under the {name} rules")]


def test_byte_zero_and_both_halves_allocated_are_no_bit_legality_finding(real_guest, st):
    """Byte 0 is a segment table's first page (marked PageTable too), 0x03 a full page."""
    name, why = rules(st)
    proc = user_process(real_guest)
    crst = proc["tables"]["crst"][-1]
    poke(st, real_guest, crst, "_mapcount", (0xFFFF_FDFF).to_bytes(4, "big"))   # PageTable
    poke(st, real_guest, crst, "_refcount", bytes([0]))
    assert [f for f in check_linux(st, name, why).findings if f.invariant == "bit_legality"] == []


@pytest.mark.parametrize("byte, state", [(0x01, "free"), (0x0B, "deferred (H)"), (0x23, "pending (P)")])
def test_a_reached_upper_half_marked_not_allocated_is_a_reachability_finding(real_guest, st, byte, state):
    name, why = rules(st)
    proc = user_process(real_guest)
    pages = real_guest.truth["struct_pages"]
    table = next(t for t in proc["tables"]["pte"] if t & 0x800 and pages[hex(t & ~0xFFF)]["refcount"] >> 24 == 3)
    frame = table & ~0xFFF
    poke(st, real_guest, frame, "_refcount", bytes([byte]))
    found = [f for f in check_linux(st, name, why).findings if f.invariant == "reachability"]
    assert found == [("reachability", page_of(real_guest, frame), frame, byte,
                      f"page table {table:#x} (reached from ASCE {proc['asce']:#x}) lies in the upper 2K half, "
                      f"which byte {fmt(byte)} marks {state}")]


def test_a_reached_lower_half_marked_free_is_a_reachability_finding(real_guest, st):
    name, why = rules(st)
    proc = user_process(real_guest)
    pages = real_guest.truth["struct_pages"]
    table = next(t for t in proc["tables"]["pte"] if not t & 0x800 and pages[hex(t)]["refcount"] >> 24 == 3)
    poke(st, real_guest, table, "_refcount", bytes([0x02]))
    found = [f for f in check_linux(st, name, why).findings if f.invariant == "reachability"]
    assert [f.message for f in found] == [f"page table {table:#x} (reached from ASCE {proc['asce']:#x}) lies in the "
                                          f"lower 2K half, which byte {fmt(0x02)} marks free"]


def test_a_process_table_in_a_page_that_is_no_page_table_page_is_a_reachability_finding(real_guest, st):
    name, why = rules(st)
    proc = user_process(real_guest)
    frame = proc["tables"]["pte"][0] & ~0xFFF
    poke(st, real_guest, frame, "_mapcount", (0xFFFF_FFFF).to_bytes(4, "big"))
    found = [f for f in check_linux(st, name, why).findings if f.invariant == "reachability"]
    tables = sorted(t for t in proc["tables"]["pte"] if t & ~0xFFF == frame)
    assert found == [("reachability", page_of(real_guest, frame), frame, None,
                      f"page table {t:#x} (reached from ASCE {proc['asce']:#x}) lies in a page that is no "
                      f"page-table page") for t in tables]


@pytest.mark.parametrize("quarter", [0, 2])
def test_a_crst_table_in_a_free_buddy_page_is_a_reachability_finding(real_guest, st, quarter):
    """Any of a 16K table's four pages in the buddy allocator is the finding, at that page
    (its struct page the vmemmap's next ones)."""
    name, why = rules(st)
    proc = user_process(real_guest)
    crst = proc["tables"]["crst"][-1]
    buddy = number(st.vmcoreinfo, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)") & 0xFFFF_FFFF
    page = page_of(real_guest, crst) + quarter * number(st.vmcoreinfo, "SIZE(page)")    # the vmemmap is linear
    poke(st, real_guest, crst + quarter * 0x1000, "_mapcount", buddy.to_bytes(4, "big"), page)
    found = [f for f in check_linux(st, name, why).findings if f.invariant == "reachability"]
    assert found == [("reachability", page, crst + quarter * 0x1000, None,
                      f"CRST table {crst:#x} (reached from ASCE {proc['asce']:#x}) lies in a free (buddy) page")]


def test_a_table_reached_from_two_mms_is_an_ownership_finding(real_guest, st, mms):
    name, why = rules(st)
    proc = user_process(real_guest)
    other = Mm(0x1234_5000, proc["asce"])                  # a second mm with the same ASCE
    found = check_linux(st, name, why, mms + [other]).findings
    pages = real_guest.truth["struct_pages"]
    assert found == [("ownership", page_of(real_guest, t & ~0xFFF), t & ~0xFFF, pages[hex(t & ~0xFFF)]["refcount"] >> 24,
                      f"page table {t:#x} is reached from the mms {', '.join(f'{m:#x}' for m in sorted((other.address, proc['mm'])))}")
                     for t in sorted(proc["tables"]["pte"])]


def test_a_listed_page_that_is_no_page_table_page_is_a_list_membership_finding(real_guest, st, mms):
    name, why = rules(st)
    crst = real_guest.truth["kernel"]["tables"]["crst"][0]          # swapper_pg_dir: no PageTable page
    stray = Mm(0x1234_5000, real_guest.truth["kernel"]["asce"], (), (page_of(real_guest, crst), 0x3FF_0000_0040))
    found = [f for f in check_linux(st, name, why, mms + [stray]).findings if f.invariant == "list_membership"]
    assert found == [("list_membership", page_of(real_guest, crst), crst, None,
                      f"on the pgtable_list of mm {stray.address:#x} but no page-table page"),
                     ("list_membership", 0x3FF_0000_0040, 0, None,
                      f"on the pgtable_list of mm {stray.address:#x} but no page-table page")]


def test_a_listed_page_with_both_halves_allocated_is_a_list_membership_finding(real_guest, st, mms):
    name, why = rules(st)
    proc = user_process(real_guest)
    frame = proc["pgtable_list"][0]
    poke(st, real_guest, frame, "_refcount", bytes([0x03]))
    found = check_linux(st, name, why, mms).findings
    assert found == [("list_membership", page_of(real_guest, frame), frame, 0x03,
                      f"on the pgtable_list of mm {proc['mm']:#x} with byte {fmt(0x03)}")]


def test_the_rules_pg_active_is_read_from_the_real_struct_pages(real_guest, st):
    """``_Pages.test_flag``, what a version's ``listed`` asks: PG_active of the page's flags
    (6.1: NUMBER(PG_lru) + 1), False for any other flag, an unknown bit or no struct page."""
    v = st.vmcoreinfo
    sp = struct_pages(st.mem, v, KernelSpace(st.mem, st.kernel_asce()))
    bit = pg_active(v)
    assert bit == number(v, "NUMBER(PG_lru)") + 1
    pages = _Pages(sp, number(v, "OFFSET(page.flags)"), bit)
    seen = set()
    for frame, page in real_guest.truth["struct_pages"].items():
        active = bool(page["flags"] >> bit & 1)
        assert pages.test_flag(page["page"], S.PG_active) is active, frame
        seen.add(active)
        assert pages.test_flag(page["page"], S.PG_active + 1) is False
    assert seen == {True, False} or seen == {False}
    some = next(iter(real_guest.truth["struct_pages"].values()))["page"]
    assert _Pages(sp, number(v, "OFFSET(page.flags)"), None).test_flag(some, S.PG_active) is False
    assert pages.test_flag(some + 8, S.PG_active) is False       # no struct page there
    # a page whose PG_active is set reads True, whichever word of flags it is in
    frame = int(next(iter(real_guest.truth["struct_pages"])), 16)
    flags = real_guest.truth["struct_pages"][hex(frame)]["flags"] | 1 << bit
    poke(st, real_guest, frame, "flags", flags.to_bytes(8, "big"))
    sp = struct_pages(st.mem, v, KernelSpace(st.mem, st.kernel_asce()))
    assert _Pages(sp, number(v, "OFFSET(page.flags)"), bit).test_flag(page_of(real_guest, frame), S.PG_active) is True


def test_a_table_in_a_frame_whose_struct_page_is_not_mapped_is_a_reachability_finding(real_guest, st):
    """The vmemmap entry that maps the table's struct page made invalid: the frame has no
    struct page any more, which the finding says, with no page and no byte."""
    name, why = rules(st)
    proc = user_process(real_guest)
    table = min(proc["tables"]["pte"])
    frame = table & ~0xFFF
    step = dat.translate(st.mem, real_guest.truth["kernel"]["asce"], page_of(real_guest, frame)).path[-1]
    st.mem.write_u64(step.entry_addr, step.entry | (0x400 if step.level == "PTE" else 0x20))   # the I bit
    found = [f for f in check_linux(st, name, why).findings if f.frame == frame]
    assert found and all(f[:4] == ("reachability", 0, frame, None) for f in found)
    assert found[0].message == (f"page table {table:#x} (reached from ASCE {proc['asce']:#x}) lies in a frame "
                                "with no struct page")


def test_an_ownership_finding_names_the_byte_only_of_a_page_table_page(real_guest, st):
    """Two mms with the kernel's ASCE: each table it reaches is an ownership finding, whose
    byte is the fragment byte where the frame is a PageTable page, and None where it is one
    of the early kernel tables memblock gave (no PageTable page)."""
    name, why = rules(st)
    kernel = real_guest.truth["kernel"]["asce"]
    found = check_linux(st, name, why, [Mm(0x1234_5000, kernel), Mm(0x2234_5000, kernel)]).findings
    is_table = page_table_rule(st.vmcoreinfo)[1]
    pages = real_guest.truth["struct_pages"]
    bytes_ = {f.frame: f.byte for f in found if f.invariant == "ownership"}
    assert bytes_ and None in bytes_.values() and set(bytes_.values()) - {None}
    for frame, byte in bytes_.items():
        page = pages[hex(frame)]
        assert byte == (page["refcount"] >> 24 if is_table([page["mapcount"]])[0] else None), hex(frame)
    # the two mms, and not the walks of the kernel's own ASCE (which name no mm)
    assert {f.message.split(" is ")[1] for f in found if f.invariant == "ownership"} == \
        {"reached from the mms 0x12345000, 0x22345000"}


def test_without_the_buddy_mapcount_value_the_buddy_check_is_not_made(real_guest, st):
    name, why = rules(st)
    proc = user_process(real_guest)
    crst = proc["tables"]["crst"][-1]
    buddy = number(st.vmcoreinfo, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)") & 0xFFFF_FFFF
    poke(st, real_guest, crst, "_mapcount", buddy.to_bytes(4, "big"))
    del st.vmcoreinfo["NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"]
    assert check_linux(st, name, why).findings == []


def test_under_the_v66_rules_a_listed_page_with_pg_active_set_is_a_list_membership_finding(real_guest, st, mms):
    """v6.6's listed rule asks the dump's struct page for PG_active (v6.6 takes a page off
    pgtable_list in the deferring free): the 6.1 guest checked under it is clean, and one
    listed page marked PageActive is the finding, with its byte."""
    clean = check_linux(st, "v66", "asked for", mms).findings
    assert [f for f in clean if f.invariant == "list_membership"] == []
    proc = user_process(real_guest)
    frame = proc["pgtable_list"][0]
    page = real_guest.truth["struct_pages"][hex(frame)]
    poke(st, real_guest, frame, "flags", (page["flags"] | 1 << pg_active(st.vmcoreinfo)).to_bytes(8, "big"))
    found = [f for f in check_linux(st, "v66", "asked for", mms).findings if f.invariant == "list_membership"]
    assert found == [("list_membership", page["page"], frame, page["refcount"] >> 24,
                      f"on the pgtable_list of mm {proc['mm']:#x} with byte {fmt(page['refcount'] >> 24)}")]
