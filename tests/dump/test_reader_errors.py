"""Every validation of the dump reader and writer, each by a crafted file and its own message.

``s390emu/dump.py`` raises ``DumpError`` with one line naming the file and what is
wrong; each ``raise`` there has a test here that builds the smallest file reaching it,
from scratch with the ELF layouts (``Elf64_Ehdr``, ``Elf64_Phdr``, ``Elf64_Nhdr``) rather
than by patching a dump ``save`` wrote, and expects the whole message, then that
``s390emu dump info`` exits 1 with exactly that line on stderr.  ``test_corrupt`` checks
the same family by patching good dumps and by fuzzing; this file pins each message and
the boundaries of the checks: a note that ends exactly at its segment's end is read, one
whose descriptor runs 4 bytes past it is refused, also when it is the last 16 bytes of
the segment (where a pre-validation loop stopping 4 bytes early would miss it).
"""

from __future__ import annotations

import struct

import pytest
from click.testing import CliRunner

from s390emu import dump, elfcore
from s390emu.cli import main
from s390emu.memory import PhysicalMemory

PAGE = 4096
EHDR, PHDR, NHDR = 64, 56, 12
PT_LOAD, PT_NOTE, PT_DYNAMIC = 1, 4, 2


def ehdr(phnum: int, *, cls: int = 2, data: int = 2, etype: int = 4, machine: int = 22,
         phoff: int = EHDR, phentsize: int = PHDR) -> bytes:
    """An ``Elf64_Ehdr`` (big-endian unless ``data=1``)."""
    order = ">" if data == 2 else "<"
    ident = b"\x7fELF" + bytes([cls, data, 1, 0]) + bytes(8)
    return ident + struct.pack(order + "HHIQQQIHHHHHH", etype, machine, 1, 0, phoff, 0, 0, EHDR,
                               phentsize, phnum, 0, 0, 0)


def phdr(ptype: int, offset: int, filesz: int, memsz: int | None = None, paddr: int = 0,
         order: str = ">") -> bytes:
    """An ``Elf64_Phdr``: ``p_vaddr == p_paddr``, RWX."""
    memsz = filesz if memsz is None else memsz
    return struct.pack(order + "IIQQQQQQ", ptype, 7, offset, paddr, paddr, filesz, memsz,
                       PAGE if ptype == PT_LOAD else 4)


def note(name: bytes, ntype: int, desc: bytes, *, descsz: int | None = None) -> bytes:
    """An ``Elf64_Nhdr`` with its name (NUL added) and descriptor, each padded to 4 bytes."""
    name += b"\0"
    size = len(desc) if descsz is None else descsz
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack(">III", len(name), size, ntype) + pad(name) + pad(desc)


def core(notes: bytes = b"", loads=((0, PAGE, PAGE),), *, note_filesz: int | None = None,
         **hdr) -> bytes:
    """A core file: phdr 0 the notes (when any), then one PT_LOAD per ``(paddr, filesz,
    memsz)``, the notes right after the headers and each load's data at the next page."""
    phnum = (1 if notes or note_filesz is not None else 0) + len(loads)
    notes_at = EHDR + PHDR * phnum
    data_at = -(-(notes_at + len(notes)) // PAGE) * PAGE
    phdrs, offset = [], data_at
    if phnum > len(loads):
        phdrs.append(phdr(PT_NOTE, notes_at, len(notes) if note_filesz is None else note_filesz))
    for paddr, filesz, memsz in loads:
        phdrs.append(phdr(PT_LOAD, offset, filesz, memsz, paddr))
        offset += filesz
    head = ehdr(phnum, **hdr) + b"".join(phdrs) + notes
    return head + bytes(offset - len(head))


PRSTATUS = note(b"CORE", dump.NT_PRSTATUS, bytes(336))


def fails_with(tmp_path, data: bytes, message: str, name: str = "bad") -> None:
    """``read_info`` and ``load`` raise ``message`` (the path put in front); ``dump info``
    exits 1 with it as its only line."""
    path = tmp_path / name
    path.write_bytes(data)
    want = f"{path}: {message}"
    for read in (dump.read_info, dump.load):
        with pytest.raises(dump.DumpError) as e:
            read(path)
        assert str(e.value) == want
    r = CliRunner().invoke(main, ["dump", "info", str(path)])
    assert (r.exit_code, r.stderr) == (1, f"s390emu: {want}\n"), r.output


def test_the_crafted_core_without_faults_loads(tmp_path):
    (tmp_path / "ok").write_bytes(core(PRSTATUS + note(b"LINUX", dump.NT_S390_PREFIX, b"\0\1\0\0")))
    info = dump.load(tmp_path / "ok").info
    assert (info.mem_size, [tuple(c) for c in info.cpus]) == (PAGE, [(0, 0x10000, 0, 0, 0, 0, 0, True)])


# -- the file itself --------------------------------------------------------------------------

def test_a_missing_file(tmp_path):
    path = tmp_path / "missing"
    with pytest.raises(dump.DumpError, match=r"^.*/missing: No such file or directory$"):
        dump.read_info(path)
    r = CliRunner().invoke(main, ["dump", "info", str(path)])
    assert (r.exit_code, r.stderr) == (1, f"s390emu: {path}: No such file or directory\n")


def test_a_directory(tmp_path):
    with pytest.raises(dump.DumpError) as e:
        dump.load(tmp_path)
    assert str(e.value) == f"{tmp_path}: Is a directory"


def test_a_raw_image_that_is_not_whole_pages(tmp_path):
    fails_with(tmp_path, bytes(100), "size 100 is not a positive multiple of 4096")


def test_a_truncated_elf_header(tmp_path):
    fails_with(tmp_path, core()[:40], "truncated ELF header (40 of 64 bytes)")


# -- the ELF header ---------------------------------------------------------------------------

def test_elfclass32(tmp_path):
    fails_with(tmp_path, core(cls=1), "ELFCLASS32 file; s390x dumps are ELFCLASS64")


def test_little_endian(tmp_path):
    data = ehdr(1, data=1) + phdr(PT_LOAD, PAGE, PAGE, order="<")
    fails_with(tmp_path, data + bytes(2 * PAGE - len(data)),
               "little-endian ELF; s390x dumps are big-endian (ELFDATA2MSB)")


def test_a_bad_class_byte_is_malformed_elf(tmp_path):
    fails_with(tmp_path, core(cls=9), "malformed ELF: Invalid EI_CLASS b'\\t'")


def test_another_machine(tmp_path):
    fails_with(tmp_path, core(machine=62), "machine EM_X86_64, not EM_S390 (an s390x dump)")


def test_not_a_core_file(tmp_path):
    fails_with(tmp_path, core(etype=2), "ELF type ET_EXEC, not ET_CORE (a core dump)")


def test_no_program_headers(tmp_path):
    fails_with(tmp_path, core(loads=()) + bytes(PAGE), "no program headers")


def test_a_wrong_program_header_size(tmp_path):
    fails_with(tmp_path, core(phentsize=32), "e_phentsize 32, expected 56")


def test_program_headers_beyond_the_end_of_the_file(tmp_path):
    data = core(phoff=2 * PAGE - PHDR + 8)
    fails_with(tmp_path, data, f"program headers at {2 * PAGE - PHDR + 8:#x} (+1x56) lie beyond the "
                               f"end of the file ({len(data):#x})")


# -- program headers --------------------------------------------------------------------------

def test_load_data_beyond_the_end_of_the_file(tmp_path):
    data = core()[:PAGE + 8]
    fails_with(tmp_path, data, f"segment 0 (PT_LOAD) data at 0x1000 (+0x1000) lies beyond the end "
                               f"of the file ({PAGE + 8:#x})")


def test_load_data_ending_exactly_at_the_end_of_the_file_is_read(tmp_path):
    data = core(loads=((0, PAGE, PAGE), (PAGE, 8, PAGE)))
    (tmp_path / "ok").write_bytes(data)
    assert dump.read_info(tmp_path / "ok").mem_size == 2 * PAGE


def test_note_data_beyond_the_end_of_the_file(tmp_path):
    data = core(PRSTATUS, note_filesz=3 * PAGE)
    fails_with(tmp_path, data, f"segment 0 (PT_NOTE) data at 0xb0 (+{3 * PAGE:#x}) lies beyond the "
                               f"end of the file ({len(data):#x})")


def test_a_note_segment_over_16_mib(tmp_path):
    size = elfcore.MAX_NOTES + 4
    path = tmp_path / "bad"
    with open(path, "wb") as f:            # sparse: the size check comes before any parsing
        f.write(core(PRSTATUS, note_filesz=size))
        f.truncate(EHDR + 2 * PHDR + size)
    data = path.read_bytes()
    fails_with(tmp_path, data, f"note segment of {size:#x} bytes is too large")


def test_filesz_larger_than_memsz(tmp_path):
    fails_with(tmp_path, core(loads=((0, 2 * PAGE, PAGE),)), "segment 0: p_filesz 0x2000 > p_memsz 0x1000")


def test_memory_beyond_the_limit(tmp_path):
    top = dump.MAX_MEMORY
    fails_with(tmp_path, core(loads=((0, PAGE, PAGE), (top, 0, PAGE))),
               f"segment 1: memory {top:#x}+0x1000 exceeds the {top:#x}-byte limit")


def test_memory_ending_exactly_at_the_limit_is_accepted_by_read_info(tmp_path):
    (tmp_path / "ok").write_bytes(core(loads=((0, PAGE, PAGE), (dump.MAX_MEMORY - PAGE, 0, PAGE))))
    assert dump.read_info(tmp_path / "ok").mem_size == dump.MAX_MEMORY


def test_no_pt_load(tmp_path):
    data = ehdr(1) + phdr(PT_DYNAMIC, 0, 0)
    fails_with(tmp_path, data, "no PT_LOAD segments (no memory)")


def test_only_empty_pt_loads_are_no_memory(tmp_path):
    fails_with(tmp_path, core(loads=((0, 0, 0),)), "no PT_LOAD segments (no memory)")


def test_overlapping_loads(tmp_path):
    fails_with(tmp_path, core(loads=((PAGE, PAGE, PAGE), (0, PAGE, 2 * PAGE))),
               "PT_LOAD segments overlap: 0x0+0x2000 and 0x1000+0x1000")


def test_adjacent_loads_do_not_overlap(tmp_path):
    (tmp_path / "ok").write_bytes(core(loads=((PAGE, PAGE, PAGE), (0, PAGE, PAGE))))
    assert dump.read_info(tmp_path / "ok").mem_size == 2 * PAGE


def test_storage_that_cannot_be_allocated(tmp_path):
    # read_info needs no storage; load asks for it (the limit raised so that it gets there).
    path = tmp_path / "bad"
    path.write_bytes(core(loads=((0, PAGE, PAGE), (PAGE, 0, 1 << 62))))
    assert dump.read_info(path, max_memory=1 << 63).mem_size == (1 << 62) + PAGE
    with pytest.raises(dump.DumpError) as e:
        dump.load(path, max_memory=1 << 63)
    assert str(e.value).startswith(f"{path}: cannot allocate {(1 << 62) + PAGE:#x} bytes of storage (")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cut", [PAGE // 2, 1])
def test_a_file_that_shrinks_while_it_is_read(tmp_path, monkeypatch, cut):
    # The size check sees the whole file; the data is gone when load reads it (a dump
    # truncated under the reader): fstat reports the size the file had.
    import os
    from types import SimpleNamespace

    path = tmp_path / "bad"
    data = core(loads=((0, PAGE, PAGE), (PAGE, PAGE, PAGE)))
    path.write_bytes(data[:-cut])
    real_fstat = os.fstat
    monkeypatch.setattr(dump.os, "fstat", lambda fd: SimpleNamespace(st_size=len(data))
                        if real_fstat(fd).st_size == len(data) - cut else real_fstat(fd))
    with pytest.raises(dump.DumpError) as e:
        dump.load(path)
    assert str(e.value) == f"{path}: segment at {2 * PAGE:#x} is truncated"


# -- notes ------------------------------------------------------------------------------------

#: where the note after PRSTATUS starts in ``core(PRSTATUS + note)`` (one PT_LOAD)
LAST_NOTE = EHDR + 2 * PHDR + len(PRSTATUS)


def test_a_note_ending_exactly_at_the_segment_end_is_read(tmp_path):
    last = note(b"LINUX", dump.NT_S390_PREFIX, b"\0\2\0\0")
    (tmp_path / "ok").write_bytes(core(PRSTATUS + last))
    info = dump.read_info(tmp_path / "ok")
    assert [(n.name, n.type, n.desc) for n in info.notes][-1] == ("LINUX", dump.NT_S390_PREFIX, b"\0\2\0\0")
    assert info.cpus[0].prefix == 0x20000


def test_a_last_note_without_a_descriptor_ending_at_the_segment_end_is_read(tmp_path):
    (tmp_path / "ok").write_bytes(core(PRSTATUS + note(b"LINUX", 0x99, b"")))
    assert [(n.name, n.type, n.desc) for n in dump.read_info(tmp_path / "ok").notes][-1] == ("LINUX", 0x99, b"")


def test_the_last_12_bytes_of_a_note_segment_are_not_a_note(tmp_path):
    # pyelftools' iter_notes (and so the check before it) reads a header only where more
    # than its 12 bytes are left: a trailing header, whatever it claims, is padding.
    (tmp_path / "ok").write_bytes(core(PRSTATUS + struct.pack(">III", 64, 1 << 20, 1)))
    info = dump.read_info(tmp_path / "ok")
    assert [(n.name, n.type) for n in info.notes] == [("CORE", dump.NT_PRSTATUS)]


def test_a_note_segment_of_exactly_the_limit_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(elfcore, "MAX_NOTES", len(PRSTATUS))
    (tmp_path / "ok").write_bytes(core(PRSTATUS))
    assert len(dump.read_info(tmp_path / "ok").notes) == 1
    monkeypatch.setattr(elfcore, "MAX_NOTES", len(PRSTATUS) - 1)
    fails_with(tmp_path, core(PRSTATUS), f"note segment of {len(PRSTATUS):#x} bytes is too large")


def test_the_notes_of_every_note_segment_are_read(tmp_path):
    prefix = note(b"LINUX", dump.NT_S390_PREFIX, b"\0\3\0\0")
    notes_at = EHDR + 3 * PHDR
    head = (ehdr(3) + phdr(PT_NOTE, notes_at, len(PRSTATUS)) + phdr(PT_NOTE, notes_at + len(PRSTATUS), len(prefix))
            + phdr(PT_LOAD, PAGE, PAGE) + PRSTATUS + prefix)
    (tmp_path / "ok").write_bytes(head + bytes(2 * PAGE - len(head)))
    info = dump.read_info(tmp_path / "ok")
    assert [(n.name, n.type) for n in info.notes] == [("CORE", dump.NT_PRSTATUS), ("LINUX", dump.NT_S390_PREFIX)]
    assert info.cpus[0].prefix == 0x30000


@pytest.mark.parametrize("error,message", [
    (ValueError(), "malformed ELF: ValueError"),                  # no message: its type names it
    (KeyError("e_type"), "malformed ELF: 'e_type'"),
    (OSError(5, "Input/output error"), "Input/output error"),      # strerror, not "[Errno 5] ..."
    (OSError("a read failed"), "a read failed"),
])
def test_what_pyelftools_raises_is_one_line(tmp_path, monkeypatch, error, message):
    import elftools.elf.elffile

    def refuse(_f):
        raise error
    monkeypatch.setattr(elftools.elf.elffile, "ELFFile", refuse)
    (tmp_path / "bad").write_bytes(core(PRSTATUS))
    with pytest.raises(dump.DumpError) as e:
        dump.read_info(tmp_path / "bad")
    assert str(e.value) == f"{tmp_path / 'bad'}: {message}"


@pytest.mark.parametrize("extra,psw", [(16, (0x8000000000000001, 0xFFFFFFFFFFFFFFFE)), (15, (0, 0))])
def test_a_prstatus_holds_the_psw_only_when_it_is_long_enough(tmp_path, extra, psw):
    desc = bytearray(dump.PRSTATUS_PSW + extra)
    if extra >= 16:
        struct.pack_into(">QQ", desc, dump.PRSTATUS_PSW, *psw)   # read unsigned, top bits set
    else:
        desc[dump.PRSTATUS_PSW:] = b"\xff" * extra             # a PSW cut short: not read
    (tmp_path / "ok").write_bytes(core(note(b"CORE", dump.NT_PRSTATUS, bytes(desc))))
    info = dump.read_info(tmp_path / "ok")
    assert [(c.psw_mask, c.psw_addr) for c in info.cpus] == [psw]
    assert info.control_registers == [(0,) * 16]                  # no NT_S390_CTRS: 16 zeros


def test_a_note_whose_descriptor_runs_4_bytes_past_the_segment_end(tmp_path):
    last = note(b"LINUX", dump.NT_S390_PREFIX, b"\0\2\0\0", descsz=8)
    data = core(PRSTATUS + last)
    fails_with(tmp_path, data, f"note at {LAST_NOTE:#x} (namesz 6, descsz 8) runs past the "
                               f"end of note segment 0")


def test_a_last_16_byte_note_whose_descriptor_runs_past_the_segment_end(tmp_path):
    # Header (12) + a 4-byte name, the descriptor claimed but outside: the note starts
    # 16 bytes before the segment's end.
    last = note(b"ABC", 0x99, b"", descsz=4)
    assert len(last) == 16
    data = core(PRSTATUS + last)
    fails_with(tmp_path, data, f"note at {LAST_NOTE:#x} (namesz 4, descsz 4) runs past the "
                               f"end of note segment 0")


def test_a_note_whose_name_runs_past_the_segment_end(tmp_path):
    hdr = struct.pack(">III", 64, 0, 1) + b"CORE"
    data = core(PRSTATUS + hdr)
    fails_with(tmp_path, data, f"note at {LAST_NOTE:#x} (namesz 64, descsz 0) runs past the "
                               f"end of note segment 0")


def test_a_prefix_note_of_the_wrong_length_is_a_dump_error_not_a_struct_error(tmp_path):
    data = core(PRSTATUS + note(b"LINUX", dump.NT_S390_PREFIX, bytes(8)))
    fails_with(tmp_path, data, "NT_S390_PREFIX note of 8 bytes (expected 4)")


def test_a_control_register_note_of_the_wrong_length(tmp_path):
    data = core(PRSTATUS + note(b"LINUX", dump.NT_S390_CTRS, bytes(64)))
    fails_with(tmp_path, data, "NT_S390_CTRS note of 64 bytes (expected 128)")


def test_cpu_notes_before_any_prstatus_are_ignored(tmp_path):
    # crash starts a CPU at each NT_PRSTATUS; a stray note before the first belongs to none.
    (tmp_path / "ok").write_bytes(core(note(b"LINUX", dump.NT_S390_PREFIX, bytes(8)) + PRSTATUS))
    assert [tuple(c) for c in dump.read_info(tmp_path / "ok").cpus] == [(0, 0, 0, 0, 0, 0, 0, True)]


def test_asking_for_a_cpu_the_dump_does_not_have(tmp_path):
    (tmp_path / "ok").write_bytes(core(PRSTATUS))
    info = dump.read_info(tmp_path / "ok")
    with pytest.raises(dump.DumpError) as e:
        info.cpu(5)
    assert str(e.value) == f"{tmp_path / 'ok'}: no CPU 5 (the dump has 1)"


# -- the writer -------------------------------------------------------------------------------

def test_save_refuses_an_existing_file_without_force(tmp_path):
    path = tmp_path / "vmcore"
    path.write_bytes(b"keep")
    with pytest.raises(dump.DumpError) as e:
        dump.save(path, PhysicalMemory(1 << 20))
    assert str(e.value) == f"{path}: exists (use --force to overwrite)"
    assert path.read_bytes() == b"keep"
    dump.save(path, PhysicalMemory(1 << 20), force=True)
    assert path.read_bytes()[:4] == b"\x7fELF"


def test_save_refuses_a_directory(tmp_path):
    with pytest.raises(dump.DumpError) as e:
        dump.save(tmp_path, PhysicalMemory(1 << 20), force=True)
    assert str(e.value) == f"{tmp_path}: is a directory (only a regular file is written or replaced)"


def test_save_into_a_missing_directory(tmp_path):
    path = tmp_path / "no" / "vmcore"
    with pytest.raises(dump.DumpError) as e:
        dump.save(path, PhysicalMemory(1 << 20))
    assert str(e.value) == f"{path}: No such file or directory"
    r = CliRunner().invoke(main, ["dump", "save", str(path)])
    assert (r.exit_code, r.stderr) == (1, f"s390emu: {path}: No such file or directory\n"), r.output


def test_dump_save_refuses_an_existing_file_with_exit_1(tmp_path):
    path = tmp_path / "vmcore"
    path.write_bytes(b"keep")
    r = CliRunner().invoke(main, ["dump", "save", str(path)])
    assert (r.exit_code, r.stderr) == (1, f"s390emu: {path}: exists (use --force to overwrite)\n")
    assert path.read_bytes() == b"keep"


# --- _atomic_write: the temporary file, the syncs, and each failure's clean-up ----------
# The write callback is where the bytes go to the file: an error raised there is what a
# full disk or a bug in a writer raises, without fault injection below the file API.

def _watch_fsync(monkeypatch) -> list[str]:
    """Every path ``os.fsync`` is called on (via /proc/self/fd), in order."""
    import os

    synced, real = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    return synced


@pytest.mark.parametrize("force", [False, True])
def test_atomic_write_goes_through_a_hidden_temporary_beside_the_file_then_syncs_the_directory(
        tmp_path, monkeypatch, force):
    import re

    out = tmp_path / "out.dump"
    if force:
        out.write_bytes(b"old")
    synced = _watch_fsync(monkeypatch)
    during = []

    def write(f):
        during.extend(sorted(p.name for p in tmp_path.iterdir() if p.name != "out.dump"))
        f.write(b"data")

    dump._atomic_write(out, write, force)
    assert len(during) == 1 and re.fullmatch(r"\.out\.dump\.[^/.]+\.tmp", during[0]), during
    assert out.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dump"]      # the temporary is gone
    assert synced == [str(tmp_path / during[0]), str(tmp_path)]           # the data, then the rename


@pytest.mark.parametrize("error, line", [(OSError(28, "No space left on device"), "No space left on device"),
                                         (OSError("no strerror"), "no strerror")])
def test_atomic_write_an_os_error_while_writing_is_one_line_and_leaves_nothing(tmp_path, error, line):
    out = tmp_path / "out.dump"

    def write(f):
        f.write(b"part")
        raise error

    with pytest.raises(dump.DumpError) as e:
        dump._atomic_write(out, write, False)
    assert str(e.value) == f"{out}: {line}"
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_any_other_error_propagates_unchanged_and_leaves_nothing(tmp_path):
    out = tmp_path / "out.dump"
    bug = ValueError("a writer's bug")

    def write(f):
        raise bug

    with pytest.raises(ValueError) as e:
        dump._atomic_write(out, write, False)
    assert e.value is bug and list(tmp_path.iterdir()) == []


def test_atomic_write_a_file_created_meanwhile_is_kept_and_refused_in_one_line(tmp_path):
    """The race between the existence check and ``os.link``: the other file wins."""
    out = tmp_path / "out.dump"

    def write(f):
        out.write_bytes(b"theirs")
        f.write(b"ours")

    with pytest.raises(dump.DumpError) as e:
        dump._atomic_write(out, write, False)
    assert str(e.value) == f"{out}: exists (use --force to overwrite)"
    assert out.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["out.dump"]
