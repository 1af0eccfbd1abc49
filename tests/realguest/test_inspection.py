"""What issue 14 asks of the inspection commands on the real guest.

Expected values come from the fixture (QEMU's gva2gpa, drgn's reading of the kernel), and
the planted faults are made in a copy of the dump: one byte of a struct page changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dat
from s390emu.inspect import open_dump

from .test_translate import differences, s390emu, translate_json

REFCOUNT = 52            # OFFSET(page._refcount) of 6.1's VMCOREINFO; big-endian: its first byte is the top one


def test_dump_info_reads_the_vmcoreinfo_the_kernel_keeps_in_storage(real_guest):
    """QEMU's ELF has no VMCOREINFO note; the kernel's, found through the absolute lowcore's
    vmcore_info, is the one tools/real_guest.py read there (vmcoreinfo.txt)."""
    text = real_guest.path(real_guest.truth["vmcoreinfo"]).read_text()
    expected = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    p = s390emu("dump", "info", "--json", real_guest.elf)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["vmcoreinfo"] == expected
    assert expected["OSRELEASE"] == real_guest.truth["release"]


def test_translate_on_the_kdump_dump_equals_gva2gpa(real_guest):
    """The same state written as kdump-zlib translates like the ELF: every page of every
    process under its ASCE, with CPU 0's prefix (gva2gpa was asked on CPU 0)."""
    dump = real_guest.path(real_guest.truth["dumps"]["kdump-zlib"])
    prefix = hex(real_guest.cpus[0]["prefix"])
    for p in real_guest.processes:
        ours = translate_json("--dump", dump, "--asce", hex(p["asce"]), "--prefix", prefix, *map(hex, p["gva2gpa"]))
        assert not differences(ours, p["gva2gpa"]), (p["pid"], differences(ours, p["gva2gpa"])[:5])


# 6.1's address_markers[] names in the order its ptdump prints them for this guest
# (dump_pagetables.c of Debian's 6.1 source, sorted by address: no KFENCE, no KASAN)
MARKERS_6_1 = ["Identity Mapping Start", "Identity Mapping End", "Kernel Image Start", "Kernel Image End",
               "Identity Mapping Start", "Amode31 Area Start", "Amode31 Area End", "Identity Mapping End",
               "vmemmap Area Start", "vmemmap Area End", "vmalloc Area Start", "vmalloc Area End",
               "Modules Area Start", "Modules Area End", "Lowcore Area Start", "Lowcore Area End",
               "Real Memory Copy Area Start", "Real Memory Copy Area End"]


def _marker_addresses(lines: list[str]) -> list[tuple[str, int]]:
    """(marker name, the address where it stands: the end of the line before it)."""
    out, at = [], 0
    for line in lines:
        if line.startswith("---[ "):
            out.append((line[5:-5], at))
        else:
            at = int(line.split("-")[1].split()[0], 16)
    return out


def _expected_markers(real_guest) -> list[tuple[str, int]]:
    """The markers' addresses from the kernel's System.map (parsed here) and the variables'
    values read straight from storage: the 6.1 kernel image is identity-mapped (va = pa),
    so no walk of ours is involved.  NR_CPUS is Debian's CONFIG_NR_CPUS (256)."""
    st = open_dump(real_guest.elf)
    syms = {}
    for line in real_guest.path(real_guest.truth["system_map"]).read_text().splitlines():
        addr, _kind, name = line.split()[:3]
        syms.setdefault(name, int(addr, 16))

    def val(name):
        return st.mem.read_u64(syms[name])
    info = st.vmcoreinfo
    table = [(0, "Identity Mapping Start"), (syms["_stext"], "Identity Mapping End"),
             (int(info["SAMODE31"], 16), "Amode31 Area Start"), (int(info["EAMODE31"], 16), "Amode31 Area End"),
             (syms["_stext"], "Kernel Image Start"), (syms["_end"], "Kernel Image End"),
             (syms["_end"], "Identity Mapping Start"), (val("high_memory"), "Identity Mapping End"),
             (val("vmemmap"), "vmemmap Area Start"), (val("vmemmap") + val("vmemmap_size"), "vmemmap Area End"),
             (val("VMALLOC_START"), "vmalloc Area Start"), (val("VMALLOC_END"), "vmalloc Area End"),
             (val("MODULES_VADDR"), "Modules Area Start"), (val("MODULES_END"), "Modules Area End"),
             (val("__abs_lowcore"), "Lowcore Area Start"), (val("__abs_lowcore") + 256 * 8192, "Lowcore Area End"),
             (val("__memcpy_real_area"), "Real Memory Copy Area Start"),
             (val("__memcpy_real_area") + 4096, "Real Memory Copy Area End")]
    assert val("vmemmap") == real_guest.truth["kernel"]["vmemmap"]      # drgn's reading
    return [(name, addr) for addr, name in sorted(table, key=lambda m: m[0])]


def test_ptdump_with_the_vmlinux_marks_the_kernels_areas_as_6_1_does(real_guest):
    """No --asce, no --cpu: the kernel's space (SYMBOL(swapper_pg_dir) of the VMCOREINFO the
    kernel keeps in storage), with 6.1's dump_pagetables.c markers at the addresses the
    kernel's variables hold; the debug vmlinux's symbols give them (the ELF symtab)."""
    p = s390emu("ptdump", "--dump", real_guest.elf, "--vmlinux", real_guest.path(real_guest.truth["vmlinux"]))
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    got = _marker_addresses(p.stdout.splitlines())
    assert [n for n, _ in got] == MARKERS_6_1
    assert got == _expected_markers(real_guest)
    assert "User Address Space" not in p.stdout


def test_ptdump_without_symbols_marks_what_vmcoreinfo_places_and_says_what_not(real_guest):
    p = s390emu("ptdump", "--dump", real_guest.elf)
    assert p.returncode == 0, p.stderr
    got = _marker_addresses(p.stdout.splitlines())
    assert [n for n, _ in got] == ["Identity Mapping Start", "Identity Mapping End",
                                   "Amode31 Area Start", "Amode31 Area End"]
    assert set(got) <= set(_expected_markers(real_guest))
    (warning,) = p.stderr.splitlines()
    assert "no address for Kernel Image" in warning and "--vmlinux" in warning
    # a System.map has no symbol sizes: NR_CPUS (lowcore_ptr's length) is unknown
    p = s390emu("ptdump", "--dump", real_guest.elf, "--vmlinux", real_guest.path(real_guest.truth["system_map"]))
    assert p.returncode == 0, p.stderr
    names = [n for n, _ in _marker_addresses(p.stdout.splitlines())]
    assert names == [n for n in MARKERS_6_1 if not n.startswith("Lowcore")]
    smap = Path(real_guest.truth["system_map"]).name
    assert f"no address for Lowcore Area from {smap} + VMCOREINFO + kallsyms" in p.stderr
    # a file that is neither an ELF nor a System.map: one line, exit 1
    bad = s390emu("ptdump", "--dump", real_guest.elf, "--vmlinux", real_guest.path(real_guest.truth["vmcoreinfo"]))
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1 and "--vmlinux" in bad.stderr, bad.stderr


def test_pages_lists_every_reached_page_table_frame_with_its_fragment_byte(real_guest):
    """Every frame of a page table that a process's or the kernel's walk reached after the
    page allocator ran is listed, with the upper byte of _refcount that drgn read."""
    p = s390emu("pages", "--dump", real_guest.elf, "--json")
    assert p.returncode == 0, p.stderr
    listed = {int(f["frame"], 16): f["byte"] for f in json.loads(p.stdout)["frames"]}
    pages = real_guest.truth["struct_pages"]
    for proc in real_guest.processes:
        for table in proc["tables"]["pte"]:
            frame = table & ~0xFFF
            assert listed.get(frame) == pages[hex(frame)]["refcount"] >> 24, (proc["pid"], hex(table))


def plant(real_guest, tmp_path, frame: int, byte: int):
    """A copy of guest.elf whose struct page of ``frame`` has fragment byte ``byte``."""
    st = open_dump(real_guest.elf)
    (load,) = st.info.loads
    page = real_guest.truth["struct_pages"][hex(frame)]["page"]
    absolute = dat.translate(st.mem, real_guest.truth["kernel"]["asce"], page + REFCOUNT).absolute
    copy = tmp_path / "planted.elf"
    shutil.copyfile(real_guest.elf, copy)
    with open(copy, "r+b") as f:
        f.seek(load.offset + absolute - load.paddr)
        f.write(bytes([byte]))
    return copy


def user_process(real_guest) -> dict:
    """The process the CPU in problem state runs: its ASCE is in that CPU's CR1."""
    cr1 = next(c["cr"][1] for c in real_guest.cpus if c["problem_state"])
    return next(p for p in real_guest.processes if p["asce"] == cr1)


def violations(dump, *extra) -> tuple[int, list[dict]]:
    p = s390emu("check", "--dump", dump, "--json", *extra)
    return p.returncode, json.loads(p.stdout)["violations"] if p.stdout else []


def test_check_is_clean_on_the_live_guest(real_guest):
    code, found = violations(real_guest.elf, "--vmlinux", real_guest.path(real_guest.truth["vmlinux"]))
    assert code == 0 and not found, found


def test_check_names_a_reached_table_whose_half_is_marked_free(real_guest, tmp_path):
    """The running process's page table in the upper half of a full frame (byte 0x03):
    A1 cleared, the walk still reaches it."""
    proc = user_process(real_guest)
    pages = real_guest.truth["struct_pages"]
    table = next(t for t in proc["tables"]["pte"] if t & 0x800 and pages[hex(t & ~0xFFF)]["refcount"] >> 24 == 3)
    code, found = violations(plant(real_guest, tmp_path, table & ~0xFFF, 0x01))
    assert code == 4
    assert any(v["invariant"] == "reachability" and int(v["frame"], 16) == table & ~0xFFF for v in found), found


def test_check_names_a_listed_page_with_both_halves_allocated(real_guest, tmp_path):
    """A page on the running process's pgtable_list given byte 0x03: no free half."""
    proc = user_process(real_guest)
    frame = proc["pgtable_list"][0]
    code, found = violations(plant(real_guest, tmp_path, frame, 0x03),
                             "--vmlinux", real_guest.path(real_guest.truth["vmlinux"]))
    assert code == 4
    assert any(v["invariant"] == "list_membership" and int(v["frame"], 16) == frame for v in found), found
