"""What ``dump.save`` returns and writes, and what ``read_info`` / ``load`` give back, field
by field, through the public functions only (``s390emu.dump``; the lead is reworking how
dumps are read and written, the behaviour here is what must stay).

* ``save``'s ``DumpInfo`` is the file's: path, format, size, loads and notes equal what
  ``read_info`` and ``load`` read back.
* The ``PT_LOAD`` segments: data runs split at zero runs of at least ``zero_run`` bytes,
  a short leading zero run written, a long one left as memory without file data, each
  segment's memory reaching to the next one's start.
* The ELF header and the ``PT_NOTE`` program header, every field a reader can see.
* Notes others write: PREFIX and CTRS owned by ``CORE`` as well as ``LINUX``, a prefix and
  control registers with their top bit set (unsigned), VMCOREINFO only under its own
  owner name, a note with an empty owner name.
* Raw images: the one load, and the CPUs of a one-CPU s390emu kernel's lowcore.
"""

from __future__ import annotations

import struct

import pytest

from s390emu import dump, elfcore
from s390emu.dump import Note
from s390emu.machine import LOWCORE_PTR, Machine
from s390emu.memory import PhysicalMemory

PAGE = 4096


def test_save_returns_the_info_read_info_and_load_read_back(tmp_path):
    m = Machine(8 << 20, ncpus=2)
    p = tmp_path / "vmcore"
    info = dump.save(p, m)
    back = dump.read_info(p)
    assert (info.path, info.format, info.file_size, info.mem_size) == (str(p), "elf", p.stat().st_size, 8 << 20)
    assert (info.loads, info.notes) == (back.loads, back.notes)
    assert (back.path, back.format, back.file_size, back.mem_size) == (str(p), "elf", p.stat().st_size, 8 << 20)
    loaded = dump.load(p).info
    assert (loaded.file_size, loaded.loads, loaded.notes) == (back.file_size, back.loads, back.notes)
    assert back.cpus == dump.CpuInfo.of_machine(m)


def _segments(tmp_path, pages, npages=64, **kw):
    mem = PhysicalMemory(npages * PAGE)
    for p in pages:
        mem.write_u64(p * PAGE + 8, 0x1234)
    info = dump.save(tmp_path / f"seg{len(list(tmp_path.iterdir()))}", mem, **kw)
    assert dump.load(info.path).mem.digest() == mem.digest()
    assert all(not (l.paddr | l.filesz | l.memsz) % PAGE for l in info.loads)
    return [(l.paddr // PAGE, l.filesz // PAGE, l.memsz // PAGE) for l in info.loads]


def test_segments_split_at_zero_runs_and_reach_to_the_next_segment(tmp_path):
    z = 4 * PAGE
    assert _segments(tmp_path, [], zero_run=z) == [(0, 0, 64)]
    assert _segments(tmp_path, [2, 3, 10, 60], zero_run=z) == [(0, 4, 10), (10, 1, 50), (60, 1, 4)]
    # a leading zero run of min_gap pages is written; a longer one is not
    assert _segments(tmp_path, [4], zero_run=z) == [(0, 5, 64)]
    assert _segments(tmp_path, [6], zero_run=z) == [(0, 0, 6), (6, 1, 58)]
    # four zero pages split (a run of >= zero_run), three do not
    assert _segments(tmp_path, [0, 5], zero_run=z) == [(0, 1, 5), (5, 1, 59)]
    assert _segments(tmp_path, [0, 4], zero_run=z) == [(0, 5, 64)]
    # zero_run of one page: a single zero page splits
    assert _segments(tmp_path, [0, 2], zero_run=PAGE) == [(0, 1, 2), (2, 1, 62)]


def test_the_elf_header_and_the_note_program_header_field_by_field(tmp_path):
    p = tmp_path / "vmcore"
    info = dump.save(p, PhysicalMemory(1 << 20))
    data = p.read_bytes()
    ehdr = struct.unpack_from(">4sBBBBB7sHHIQQQIHHHHHH", data)
    phnum = 1 + len(info.loads)
    assert ehdr == (b"\x7fELF", 2, 2, 1, 0, 0, bytes(7), 4, 22, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    note = struct.unpack_from(">IIQQQQQQ", data, 64)
    notes_len = sum(len(elfcore.note_bytes(n)) for n in info.notes)
    assert note == (4, 0, 64 + 56 * phnum, 0, 0, notes_len, notes_len, 4)


def _with_notes(tmp_path, notes):
    p = tmp_path / f"notes{len(list(tmp_path.iterdir()))}"
    dump.save(p, PhysicalMemory(1 << 20), notes=notes)
    return dump.read_info(p)


@pytest.mark.parametrize("owner", ["LINUX", "CORE"])
def test_prefix_and_control_register_notes_are_read_under_either_owner_and_unsigned(tmp_path, owner):
    crs = tuple((1 << 63) | n for n in range(16))
    notes = [Note(n.name if n.type not in (dump.NT_S390_PREFIX, dump.NT_S390_CTRS) else owner, n.type, n.desc)
             for n in elfcore.cpu_notes(0, 0x8000_2000, crs)]
    info = _with_notes(tmp_path, notes)
    assert [(c.cpu, c.prefix) for c in info.cpus] == [(0, 0x8000_2000)]
    assert info.control_registers == [crs]


def test_vmcoreinfo_is_read_only_from_a_note_owned_by_vmcoreinfo(tmp_path):
    text = b"OSRELEASE=test\nPAGESIZE=4096\n"
    assert _with_notes(tmp_path, [Note("XEN", elfcore.NT_VMCOREINFO, text)]).vmcoreinfo == {}
    assert _with_notes(tmp_path, [Note("VMCOREINFO", elfcore.NT_VMCOREINFO, text)]).vmcoreinfo == {
        "OSRELEASE": "test", "PAGESIZE": "4096"}


def test_a_note_with_an_empty_owner_name_is_read_with_an_empty_name(tmp_path):
    info = _with_notes(tmp_path, [Note("", 7, b"abcd")])
    assert [(n.name, n.type, n.desc) for n in info.notes] == [("", 7, b"abcd")]


def test_a_raw_image_is_one_load_and_a_one_cpu_kernels_lowcore_gives_its_cpu(tmp_path):
    m = Machine(4 << 20, ncpus=1)
    raw = tmp_path / "mem.raw"
    raw.write_bytes(m.mem.data.tobytes())
    info = dump.read_info(raw)
    assert (info.path, info.format, info.file_size, info.mem_size) == (str(raw), "raw", 4 << 20, 4 << 20)
    assert [(l.paddr, l.memsz, l.filesz, l.offset) for l in info.loads] == [(0, 4 << 20, 4 << 20, 0)]
    assert info.cpus == dump.CpuInfo.of_machine(m) and len(info.cpus) == 1
    assert info.control_registers == [m.control_registers(0)]


def test_notes_a_reader_would_refuse_are_still_written_and_described(tmp_path):
    p = tmp_path / "vmcore"
    bad = [n if n.type != dump.NT_S390_PREFIX else Note(n.name, n.type, b"\x00\x00")   # 2 bytes long
           for n in elfcore.cpu_notes(0, 0x2000, (0,) * 16)]
    info = dump.save(p, PhysicalMemory(1 << 20), notes=bad)
    assert (info.path, info.format, info.file_size, info.mem_size) == (str(p), "elf", p.stat().st_size, 1 << 20)
    assert info.notes == bad and [(l.paddr, l.memsz) for l in info.loads] == [(0, 1 << 20)]
    with pytest.raises(dump.DumpError):
        dump.read_info(p)


def test_what_is_not_a_dump_file_is_refused_in_one_line_naming_it(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(dump.DumpError) as e:
        dump.read_info(fifo)
    assert str(e.value) == f"{fifo}: is a fifo, not a dump file"
    odd = tmp_path / "odd.raw"
    odd.write_bytes(bytes(5000))
    with pytest.raises(dump.DumpError) as e:
        dump.load(odd)
    assert str(e.value) == f"{odd}: size 5000 is not a positive multiple of 4096"
    bare = tmp_path / "bare"
    bare.write_bytes(struct.pack(">4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 2, 1, 0, 0, bytes(7), 4, 22, 1, 0,
                                 0, 0, 0, 64, 56, 0, 0, 0, 0))
    with pytest.raises(dump.DumpError) as e:                        # exactly a header: read, then refused
        dump.read_info(bare)
    assert str(e.value) == f"{bare}: no program headers"


def test_a_raw_image_whose_cpu_prefix_lies_outside_storage_has_no_cpu_state(tmp_path):
    """A lowcore_ptr[] entry past the end of storage: the machine still attaches, the CPUs
    (whose control registers would be read there) are left out, both lists empty."""
    m = Machine(4 << 20, ncpus=2)
    m.mem.write_u32(LOWCORE_PTR + 4, 8 << 20)            # CPU 1's prefix: beyond the 4 MiB
    raw = tmp_path / "mem.raw"
    raw.write_bytes(m.mem.data.tobytes())
    d = dump.load(raw)
    assert d.machine is not None and d.machine.nr_cpus == 2
    assert (d.info.cpus, d.info.control_registers) == ([], [])


@pytest.mark.parametrize("nr_cpus, cpus", [(0, 0), (1, 1), (63, 63), (64, 0), (65, 0)])
def test_a_raw_image_gives_cpus_only_for_a_count_lowcore_ptr_can_hold(tmp_path, nr_cpus, cpus):
    """The ``nr_cpus`` word of storage, 1 to NR_CPUS_MAX (63: lowcore_ptr[] ends below
    mm_list); CPUs never booted have prefix 0."""
    from s390emu.machine import NR_CPUS, NR_CPUS_MAX

    assert NR_CPUS_MAX == 63
    m = Machine(4 << 20, ncpus=1)
    prefix = m.prefix(0)
    m.mem.write_u32(NR_CPUS, nr_cpus)
    raw = tmp_path / "mem.raw"
    raw.write_bytes(m.mem.data.tobytes())
    info = dump.read_info(raw)
    assert len(info.cpus) == len(info.control_registers) == cpus
    assert [c.prefix for c in info.cpus] == ([prefix] + [0] * 62)[:cpus]


# --- where save() takes the CPUs and the VMCOREINFO text from (_machine_notes) -----------

def _vmcoreinfo_notes(info):
    return [n for n in info.notes if n.name == "VMCOREINFO"]


def _saved(tmp_path, name, source):
    p = tmp_path / name
    dump.save(p, source)
    return p


def test_save_of_a_machines_storage_alone_attaches_the_machine_it_holds(tmp_path):
    """Storage (not the Machine) of an s390emu kernel: its CPUs are found through the
    VMCOREINFO it keeps, as for the Machine itself."""
    from s390emu.vmcoreinfo import stored_text

    m = Machine(8 << 20, ncpus=3)
    whole = dump.read_info(_saved(tmp_path, "machine", m))
    alone = dump.read_info(_saved(tmp_path, "storage", m.mem))
    assert alone.cpus == whole.cpus == dump.CpuInfo.of_machine(m) and len(alone.cpus) == 3
    assert alone.control_registers == whole.control_registers
    assert [n.desc for n in _vmcoreinfo_notes(alone)] == [stored_text(m.mem)]


def test_save_of_a_machine_whose_lowcore_pointer_is_lost_takes_the_note_at_its_fixed_address(tmp_path):
    """The Machine knows where its note is (``VMCOREINFO``); storage alone whose pointer
    is lost names no kernel: no CPUs, and no VMCOREINFO note."""
    from s390emu import structs
    from s390emu.machine import VMCOREINFO
    from s390emu.vmcoreinfo import stored_text

    m = Machine(8 << 20, ncpus=2)
    text = stored_text(m.mem)
    assert text and stored_text(m.mem, VMCOREINFO) == text
    m.mem.write(structs.lowcore.vmcore_info, bytes(8))
    assert stored_text(m.mem) == b""
    path = _saved(tmp_path, "machine", m)
    info = dump.read_info(path)
    assert [n.desc for n in _vmcoreinfo_notes(info)] == [text]
    assert (info.vmcoreinfo_source, info.cpus) == ("note", dump.CpuInfo.of_machine(m))
    # the kernel is attached through the note's VMCOREINFO, which storage no longer leads to
    assert dump.load(path).machine.swapper_pg_dir == m.swapper_pg_dir
    alone = dump.read_info(_saved(tmp_path, "storage", m.mem))
    assert (_vmcoreinfo_notes(alone), alone.cpus) == ([], [])


def test_save_of_empty_storage_writes_no_vmcoreinfo_note(tmp_path):
    info = dump.read_info(_saved(tmp_path, "empty", PhysicalMemory(1 << 20)))
    assert (_vmcoreinfo_notes(info), info.vmcoreinfo, info.vmcoreinfo_source, info.cpus) == ([], {}, "", [])
    assert [n.name for n in info.notes] == ["CORE"]     # the PRPSINFO only
