"""VMCOREINFO found in storage as the kernel leaves it, for dumps without the note.

The kernel keeps ``vmcoreinfo_note`` (an ELF note named ``VMCOREINFO``) and stores its
physical address in the absolute lowcore's ``vmcore_info`` doubleword at the unaligned
offset 0xe0c; s390emu images written before kept a word there pointing at the bare
text.  Each test lays the bytes out by hand.
"""

from __future__ import annotations

import struct

from s390emu import dump
from s390emu.machine import VMCOREINFO, Machine
from s390emu.memory import PhysicalMemory
from s390emu.vmcoreinfo import note, read_vmcoreinfo, stored_text

TEXT = b"OSRELEASE=6.1.0-50-s390x\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=1290000\n"


def kernel_storage(at: int = 0x7F_3000, text: bytes = TEXT) -> PhysicalMemory:
    """8 MiB whose absolute lowcore points at a ``VMCOREINFO`` note as Linux's does."""
    mem = PhysicalMemory(8 << 20)
    mem.write(0xE0C, at.to_bytes(8, "big"))
    mem.write(at, note(text))
    return mem


def test_the_kernels_note_is_found_through_the_doubleword_at_0xe0c():
    info = read_vmcoreinfo(kernel_storage())
    assert info == {"OSRELEASE": "6.1.0-50-s390x", "PAGESIZE": "4096", "SYMBOL(swapper_pg_dir)": "1290000"}


def test_the_word_at_0xe0c_alone_is_the_high_half_and_finds_nothing():
    # The kernel's address below 4G leaves the word at 0xe0c zero: a reader of a u32 there
    # would find nothing; a u64 reader at 0xe10 would read the wrong bytes.
    mem = kernel_storage()
    assert mem.read_u32(0xE0C) == 0 and stored_text(mem) == TEXT.rstrip(b"\0")


def test_a_pointer_to_something_else_than_a_vmcoreinfo_note_finds_nothing():
    for bad in (struct.pack(">III", 11, len(TEXT), 1) + b"VMCOREINFO\0\0",     # type 1
                struct.pack(">III", 11, len(TEXT), 0) + b"VMCOREINFX\0\0",     # another name
                struct.pack(">III", 10, len(TEXT), 0) + b"VMCOREINF\0\0\0"):   # namesz
        mem = kernel_storage()
        mem.write(0x7F_3000, bad)
        assert read_vmcoreinfo(mem) == {}


def test_a_note_whose_descsz_runs_past_storage_is_cut_at_its_end():
    mem = kernel_storage(at=(8 << 20) - 64, text=b"PAGESIZE=4096\n")
    mem.write((8 << 20) - 64 + 4, struct.pack(">I", 1 << 20))
    assert read_vmcoreinfo(mem) == {"PAGESIZE": "4096"}


def test_an_s390emu_machine_stores_the_kernels_format():
    m = Machine(8 << 20, ncpus=1)
    assert int.from_bytes(m.mem.read(0xE0C, 8), "big") == VMCOREINFO
    namesz, descsz, ntype = struct.unpack(">III", m.mem.read(VMCOREINFO, 12))
    assert (namesz, ntype, m.mem.read(VMCOREINFO + 12, 12)) == (11, 0, b"VMCOREINFO\0\0")
    assert m.mem.read(VMCOREINFO + 24, descsz).startswith(b"OSRELEASE=")


def test_an_older_s390emu_image_with_a_word_pointing_at_bare_text_still_opens(tmp_path):
    m = Machine(8 << 20, ncpus=2)
    text = stored_text(m.mem)
    m.mem.fill(0xE0C, 8, 0)
    m.mem.fill(VMCOREINFO, 0x800, 0)
    m.mem.write_u32(0xE0C, VMCOREINFO)            # the layout before the kernel's
    m.mem.write(VMCOREINFO, text)
    path = tmp_path / "old.raw"
    path.write_bytes(m.mem.data.tobytes())
    d = dump.load(path)
    assert d.machine is not None and d.machine.swapper_pg_dir == m.swapper_pg_dir
    assert d.vmcoreinfo == read_vmcoreinfo(m.mem) and d.vmcoreinfo["OSRELEASE"]
    assert len(d.info.cpus) == 2


def test_an_elf_dump_without_the_note_takes_the_kernels_from_storage(tmp_path):
    mem = kernel_storage()
    path = tmp_path / "core"
    dump.save(path, mem, notes=[])
    assert dump.load(path).vmcoreinfo["OSRELEASE"] == "6.1.0-50-s390x"


def test_the_note_pads_its_text_to_a_word_and_reads_back_for_every_length():
    """An ELF note's descriptor is padded to 4 bytes; the header is big-endian and unsigned."""
    for text in (b"A", b"AB", b"ABC", b"ABCD", b"ABCDE"):
        n = note(text)
        assert len(n) == 24 + -(-len(text) // 4) * 4, text
        assert n[:12] == struct.pack(">III", 11, len(text), 0) and n[12:24] == b"VMCOREINFO\0\0"
        assert n[24:24 + len(text)] == text and set(n[24 + len(text):]) <= {0}
        mem = kernel_storage(text=text)
        assert stored_text(mem) == text
