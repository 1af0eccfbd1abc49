"""drgn, with the guest's debug vmlinux, agrees with QEMU's gva2gpa where it can answer.

drgn 0.3.0 on QEMU's ELF dump needs two things given to it: the VMCOREINFO text (QEMU
writes no VMCOREINFO note; tools/real_guest.py read the kernel's from memory, through the
absolute lowcore's vmcore_info), and storage as *physical* memory: its loader makes
physical segments only when some PT_LOAD has a nonzero p_paddr, and QEMU's one PT_LOAD
starts at p_paddr 0, so page-table reads would fail ("could not find physical memory
segment").  What drgn then walks is its own (libdrgn's s390x page-table walker).
"""

from __future__ import annotations

import re

import drgn                    # the test extra has it: never a skip
import pytest
from drgn.helpers.linux.mm import follow_phys
from drgn.helpers.linux.pid import find_task

from .conftest import real_guest_tool

# drgn fails on the identity map's first pages through init_mm (0 - 0x200000 inclusive on
# 6.1.0-50: their page tables, made in early boot, sit in storage's last pages, and drgn's
# reads run past its end); the bound leaves room, and the test asserts nothing else fails
EARLY_IDENTITY = 4 << 20


@pytest.fixture(scope="module")
def prog(real_guest):
    """drgn over guest.elf with the VMCOREINFO, the debug vmlinux and storage as physical
    memory, opened as tools/real_guest.py opened it (drgn_program)."""
    return real_guest_tool().drgn_program(real_guest.elf, real_guest.path(real_guest.truth["vmlinux"]),
                                          real_guest.path(real_guest.truth["vmcoreinfo"]).read_text())


def follow(mm, va: int):
    try:
        return follow_phys(mm, va).value_()
    except drgn.FaultError as e:
        return e


def test_drgn_sees_the_processes_and_asces_recorded(real_guest, prog):
    """drgn's task list has every recorded process with the same mm and ASCE."""
    for p in real_guest.processes:
        mm = find_task(prog, p["pid"]).mm
        assert (mm.value_(), int(mm.context.asce)) == (p["mm"], p["asce"])


def test_follow_phys_equals_gva2gpa_on_every_page_of_every_process(real_guest, prog):
    """drgn's follow_phys(mm, va) gives QEMU's address on every mapped page of every
    process and faults on every page gva2gpa calls unmapped."""
    for p in real_guest.processes:
        mm = find_task(prog, p["pid"]).mm
        bad = []
        for va, qemu in p["gva2gpa"].items():
            r = follow(mm, va)
            if (qemu is None) != isinstance(r, drgn.FaultError) or qemu is not None and r != qemu:
                bad.append((hex(va), qemu, r))
        assert not bad, (p["pid"], p["comm"], bad[:5])


def test_follow_phys_on_init_mm_where_drgn_can_answer(real_guest, prog):
    """Through init_mm, on the kernel CPU's sample: drgn answers every address above the
    first MiBs, and gives the *real* address where gva2gpa gives the absolute one (the
    two prefix pages: drgn does not apply prefixing).  On the first MiBs of the identity
    map it fails with a missing physical segment: where it answers there, it agrees too."""
    mm = prog["init_mm"].address_of_()
    home = next(c for c in real_guest.cpus if c["space"] == "home")
    pfx = home["prefix"]
    failed, answered = [], 0
    for va, qemu in home["gva2gpa"].items():
        r = follow(mm, va)
        if isinstance(r, drgn.FaultError):
            if qemu is not None:
                assert va < EARLY_IDENTITY and re.search("physical memory segment", str(r)), (hex(va), r)
                failed.append(va)
            continue
        real = qemu ^ pfx if qemu is not None and (qemu < 0x2000 or pfx <= qemu < pfx + 0x2000) else qemu
        assert r == real, (hex(va), hex(qemu), hex(r))
        answered += 1
    assert answered > len(home["gva2gpa"]) // 4
    assert real_guest.truth["kernel"]["lowcore_ptr"][home["index"]] == pfx
