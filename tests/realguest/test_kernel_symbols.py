"""kallsyms decoded from the real guest's memory against the kernel's own System.map."""

from __future__ import annotations

import pytest

from s390emu.inspect import open_dump
from s390emu.vmcoreinfo import LayoutError
from s390emu.inspect.kernel_symbols import kallsyms, kallsyms_tables
from s390emu.inspect.memmap import KernelSpace


def test_kallsyms_in_memory_equal_system_map(real_guest):
    """Every symbol decoded from the tables VMCOREINFO names has System.map's address and
    type; Debian's 6.1 has no CONFIG_KALLSYMS_ALL, so data symbols (vmemmap,
    MODULES_VADDR ...) are not among them: those need --vmlinux or System.map."""
    st = open_dump(real_guest.elf)
    tables = kallsyms_tables(st.vmcoreinfo)
    assert tables is not None
    syms = kallsyms(KernelSpace(st.mem, st.kernel_asce()), tables)
    system_map = {}
    for line in real_guest.path(real_guest.truth["system_map"]).read_text().splitlines():
        addr, kind, name = line.split()[:3]
        system_map.setdefault(name, (int(addr, 16), kind))
    assert len(syms) > 30000
    wrong = {n: (hex(a), t, system_map.get(n)) for n, (a, t) in syms.items() if system_map.get(n) != (a, t)}
    assert not wrong, list(wrong.items())[:5]
    assert syms["_stext"] == (int(st.vmcoreinfo["SYMBOL(_stext)"], 16), "T")
    assert "vmemmap" not in syms and "vmemmap" in system_map


def test_kallsyms_tables_needs_all_six():
    assert kallsyms_tables({"SYMBOL(kallsyms_names)": "10"}) is None


def test_kallsyms_names_are_read_no_further_than_the_token_table(real_guest):
    """A names stream that does not hold num_syms names within the bytes before
    kallsyms_token_table is no kernel's table: one error, not a read on through memory."""
    st = open_dump(real_guest.elf)
    tables = kallsyms_tables(st.vmcoreinfo)
    kernel = KernelSpace(st.mem, st.kernel_asce())
    with pytest.raises(LayoutError, match="kallsyms_names ends after"):
        kallsyms(kernel, {**tables, "token_table": tables["names"] + 4096})
