"""kdump-compressed files the reader refuses, each with its own one-line ``DumpError``
(crafted files; libkdumpfile comes with drgn, in the test extra; the real guest's kdump dump is read in tests/realguest/test_kdump.py)."""

from __future__ import annotations

import pytest

from s390emu import DumpError, dump, kdump

def test_is_kdump_knows_both_signatures_and_nothing_else():
    assert kdump.is_kdump(b"KDUMP   \0\0\0\0\0\0\0\0")
    assert kdump.is_kdump(b"makedumpfile\0\0\0\0")
    assert not kdump.is_kdump(b"KDUMP  x")
    assert not kdump.is_kdump(b"\x7fELF" + bytes(12))
    assert not kdump.is_kdump(b"makedumpfil")


HINT = ("(a flattened dump: reassemble it with 'makedumpfile -R out < in', or pip install drgn, "
        "whose libkdumpfile reads it)")


@pytest.mark.parametrize("reader", [dump.load, dump.read_info])
@pytest.mark.parametrize("signature, hint", [(b"KDUMP   ", False), (b"makedumpfile", True)])
def test_a_file_libkdumpfile_refuses_is_one_line_and_a_flattened_one_says_how_to_reassemble_it(
        tmp_path, reader, signature, hint):
    p = tmp_path / "bad.dump"
    p.write_bytes(signature + bytes(4096))
    with pytest.raises(DumpError) as e:
        reader(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: libkdumpfile cannot open it: file #0: ")   # libkdumpfile's own words
    assert msg.endswith(HINT) is hint and ("flattened dump" in msg) is hint


def test_a_kdump_file_that_cannot_be_opened_names_the_os_error(tmp_path):
    p = tmp_path / "gone.dump"
    with pytest.raises(DumpError) as e:
        kdump.KdumpFile(p, False)
    assert str(e.value) == f"{p}: No such file or directory"


def test_each_cpus_prefix_comes_from_lowcore_ptr_where_it_is_in_storage():
    """``_lowcore_ptrs``: 0 for every CPU without SYMBOL(lowcore_ptr) or with an array not
    wholly in storage, and 0 for a pointer at or past the end of storage."""
    from s390emu.dump import _lowcore_ptrs
    from s390emu.memory import PhysicalMemory

    mem = PhysicalMemory(1 << 20)
    at = 0x3000
    for i, p in enumerate((0x2000, 0xFF000, 1 << 20, (1 << 20) - 1)):
        mem.write_u64(at + 8 * i, p)
    v = {"SYMBOL(lowcore_ptr)": f"{at:x}"}
    assert _lowcore_ptrs(mem, v, 4) == [0x2000, 0xFF000, 0, (1 << 20) - 1]
    assert _lowcore_ptrs(mem, v, 2) == [0x2000, 0xFF000]
    assert _lowcore_ptrs(mem, {}, 2) == [0, 0]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": "0"}, 2) == [0, 0]
    end = (1 << 20) - 8                                   # one pointer fits, two do not
    mem.write_u64(end, 0x2000)
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{end:x}"}, 1) == [0x2000]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{end:x}"}, 2) == [0, 0]
    assert _lowcore_ptrs(mem, {"SYMBOL(lowcore_ptr)": f"{1 << 20:x}"}, 1) == [0]
