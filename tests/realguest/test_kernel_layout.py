"""6.1's ptdump markers (s390emu.inspect.kernel_layout) and the symbol sources
(kernel_symbols.KernelSymbols) on the real guest, in process, from each source alone."""

from __future__ import annotations

import pytest

from s390emu.inspect import open_dump
from s390emu.inspect.kernel_layout import markers_6_1, modelled
from s390emu.inspect.kernel_symbols import KernelSymbols, elf_symbols, system_map
from s390emu.inspect.memmap import KernelSpace

from .test_inspection import MARKERS_6_1, _expected_markers


@pytest.fixture(scope="module")
def guest(real_guest):
    st = open_dump(real_guest.elf)
    return st, KernelSpace(st.mem, st.kernel_asce())


def _symbols(real_guest, guest, which):
    st, kernel = guest
    path = None if which is None else real_guest.path(real_guest.truth[which])
    return KernelSymbols(kernel, st.vmcoreinfo, path)


def test_with_the_vmlinux_every_marker_stands_where_the_kernels_variables_say(real_guest, guest):
    marks, unplaced = markers_6_1(_symbols(real_guest, guest, "vmlinux"), guest[0].vmcoreinfo)
    assert unplaced == []
    assert [(name, addr) for addr, name in marks] == _expected_markers(real_guest)
    assert [name for _a, name in marks] == MARKERS_6_1


def test_with_system_map_all_but_the_lowcore_area_which_needs_a_symbol_size(real_guest, guest):
    marks, unplaced = markers_6_1(_symbols(real_guest, guest, "system_map"), guest[0].vmcoreinfo)
    assert unplaced == ["Lowcore Area"]
    assert [(n, a) for a, n in marks] == [m for m in _expected_markers(real_guest) if not m[0].startswith("Lowcore")]


def test_without_a_file_vmcoreinfo_and_kallsyms_place_the_identity_mapping_and_amode31(real_guest, guest):
    st, _kernel = guest
    sym = _symbols(real_guest, guest, None)
    assert sym.sources == ["VMCOREINFO", "kallsyms"]
    marks, unplaced = markers_6_1(sym, st.vmcoreinfo)
    stext = int(st.vmcoreinfo["SYMBOL(_stext)"], 16)
    assert marks == [(0, "Identity Mapping Start"), (stext, "Identity Mapping End"),
                     (int(st.vmcoreinfo["SAMODE31"], 16), "Amode31 Area Start"),
                     (int(st.vmcoreinfo["EAMODE31"], 16), "Amode31 Area End")]
    assert unplaced == ["Kernel Image", "Identity Mapping", "vmemmap Area", "vmalloc Area", "Modules Area",
                        "Lowcore Area", "Real Memory Copy Area"]


def test_amode31_from_the_symbols_when_vmcoreinfo_has_no_samode31(real_guest, guest):
    st, _kernel = guest
    info = {k: v for k, v in st.vmcoreinfo.items() if k not in ("SAMODE31", "EAMODE31")}
    sym = _symbols(real_guest, guest, "vmlinux")
    marks, unplaced = markers_6_1(sym, info)
    assert unplaced == []
    got = {name: addr for addr, name in marks if name.startswith("Amode31")}
    assert got == {"Amode31 Area Start": int(st.vmcoreinfo["SAMODE31"], 16),
                   "Amode31 Area End": int(st.vmcoreinfo["EAMODE31"], 16)}
    assert got["Amode31 Area Start"] == sym.value("__samode31") == 0x1673000


def test_kernel_symbols_takes_the_file_first_then_vmcoreinfo_then_kallsyms(real_guest, guest, tmp_path):
    st, kernel = guest
    smap = system_map(real_guest.path(real_guest.truth["system_map"]))
    fake = tmp_path / "System.map"
    fake.write_text(f"{0x4242:016x} T _stext\n{smap['vmemmap'][0]:016x} D vmemmap\n")
    sym = KernelSymbols(kernel, st.vmcoreinfo, fake)
    assert sym.sources == ["System.map", "VMCOREINFO", "kallsyms"]     # the file by its name
    assert sym.address("_stext") == 0x4242                                    # the file over VMCOREINFO
    assert sym.address("swapper_pg_dir") == int(st.vmcoreinfo["SYMBOL(swapper_pg_dir)"], 16)   # VMCOREINFO
    assert "SYMBOL(do_exit)" not in st.vmcoreinfo and sym.address("do_exit") == smap["do_exit"][0]   # kallsyms
    assert sym.address("no_such_symbol_at_all") is None
    assert sym.size("vmemmap") is None                                        # a System.map has no sizes
    assert sym.value("vmemmap") == real_guest.truth["kernel"]["vmemmap"]
    assert sym.value("no_such_symbol_at_all") is None


def test_kernel_symbols_sizes_and_unmapped_values_come_out_as_none(real_guest, guest, tmp_path):
    st, kernel = guest
    sym = _symbols(real_guest, guest, "vmlinux")
    assert sym.size("lowcore_ptr") == 256 * 8            # lowcore_ptr[NR_CPUS], Debian's NR_CPUS 256
    assert sym.size("_stext") is None                    # a zero-size linker symbol
    fake = tmp_path / "System.map"
    fake.write_text(f"{0x3fe00000000:016x} D unmapped\n")
    assert KernelSymbols(kernel, st.vmcoreinfo, fake).value("unmapped") is None
    bare = KernelSymbols(kernel, {"SYMBOL(_stext)": "zz", "OSRELEASE": "6.1"})
    assert bare.sources == [] and bare.address("_stext") is None


def test_elf_symbols_of_the_vmlinux_equal_its_system_map(real_guest):
    """Our ELF reader against nm's System.map of the same build, for every name the map
    lists once (a local name in several files has several addresses)."""
    elf = elf_symbols(real_guest.path(real_guest.truth["vmlinux"]))
    names = {}
    for line in real_guest.path(real_guest.truth["system_map"]).read_text().splitlines():
        addr, _kind, name = line.split()[:3]
        names.setdefault(name, []).append(int(addr, 16))
    once = {n: a[0] for n, a in names.items() if len(a) == 1}
    assert len(once) > 50000
    wrong = {n: (hex(a), elf.get(n)) for n, a in once.items() if elf.get(n, (None,))[0] != a}
    assert not wrong, list(wrong.items())[:5]


@pytest.mark.parametrize("release,answer", [
    ("6.1", True), ("6.1.0-50-s390x", True), ("6.1-rc1", True), ("6.1.192", True),
    ("6.10", False), ("6.10.1", False), ("6.11.0", False), ("6.12", False), ("5.15.0", False), ("6.0", False),
    ("", False), ("?", False)])
def test_modelled_is_6_1_only(release, answer):
    assert modelled(release) is answer
