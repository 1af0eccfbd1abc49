"""Corrupt dumps exit 1 with one line naming the problem, never a traceback.

Each named corruption is made by patching one field of a good dump at its ELF offset
(Elf64_Ehdr, Elf64_Phdr[i] at 64 + 56 * i, the first note at phdr[0].p_offset), then
fed to ``dump.load`` (must raise ``DumpError``) and to ``s390emu dump info`` and
``s390emu ptdump --dump`` (exit 1, one line on stderr).  A hypothesis fuzz test then
mutates the header, program headers and notes of a good dump at random, 1,000 files
per run.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from s390emu import dump
from s390emu.cli import main
from s390emu.machine import Machine

PH = 64                 # first program header
P_OFFSET, P_PADDR, P_FILESZ, P_MEMSZ = 8, 24, 32, 40


def _machine() -> Machine:
    """A small machine whose dump has two PT_LOADs (data after a 2 MiB zero run)."""
    m = Machine(4 << 20, ncpus=2)
    m.mem.write(0x3FF000, b"the end")
    return m


@pytest.fixture(scope="module")
def good() -> bytes:
    d = Path(tempfile.mkdtemp())
    dump.save(d / "good", _machine())
    return (d / "good").read_bytes()


def _with_notes(notes) -> bytes:
    d = Path(tempfile.mkdtemp())
    dump.save(d / "notes", _machine(), notes=notes)
    return (d / "notes").read_bytes()


def patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def note_offset(data: bytes) -> int:
    return struct.unpack_from(">Q", data, PH + P_OFFSET)[0]


CORRUPTIONS = {
    "truncated header": (lambda d: d[:40], "truncated ELF header"),
    "program headers beyond the file": (lambda d: patch(d, 56, ">H", 4000), "beyond the end of the file"),
    "program header offset beyond the file": (lambda d: patch(d, 32, ">Q", 1 << 40), "beyond the end of the file"),
    "load data beyond the file": (lambda d: d[:len(d) // 2], "beyond the end of the file"),
    "overlapping loads": (lambda d: patch(d, PH + 2 * 56 + P_PADDR, ">Q", 0), "overlap"),
    "huge p_memsz": (lambda d: patch(d, PH + 56 + P_MEMSZ, ">Q", 0xFFFF_FFFF_FFFF_0000), "limit"),
    "p_filesz larger than p_memsz": (lambda d: patch(d, PH + 56 + P_MEMSZ, ">Q", 0x1000), "p_filesz"),
    "note descsz past the segment": (lambda d: patch(d, note_offset(d) + 4, ">I", 0x7FFF_0000), "note"),
    "note namesz past the segment": (lambda d: patch(d, note_offset(d), ">I", 0x7FFF_0000), "note"),
    "control-register note of the wrong size": (lambda d: _with_notes([
        dump.Note("CORE", dump.NT_PRSTATUS, bytes(336)), dump.Note("LINUX", dump.NT_S390_CTRS, bytes(8))]),
        "NT_S390_CTRS"),
    "wrong machine": (lambda d: patch(d, 18, ">H", 62), "not EM_S390"),
    "little-endian": (lambda d: patch(d, 5, "B", 1), ""),
    "32-bit class": (lambda d: patch(d, 4, "B", 1), ""),
    "bad class byte": (lambda d: patch(d, 4, "B", 9), "malformed ELF"),
    "not a core file": (lambda d: patch(d, 16, ">H", 2), "ET_CORE"),
    "no program headers": (lambda d: patch(d, 56, ">H", 0), "no program headers"),
    "bad e_phentsize": (lambda d: patch(d, 54, ">H", 12), "e_phentsize"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corrupt_dump_raises_one_line_dump_error(good, tmp_path, name):
    make, words = CORRUPTIONS[name]
    path = tmp_path / "bad"
    path.write_bytes(make(good))
    with pytest.raises(dump.DumpError) as e:
        dump.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and words in msg


@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("command", [["dump", "info"], ["ptdump", "--dump"]])
def test_a_corrupt_dump_exits_1_with_one_line(good, tmp_path, name, command):
    path = tmp_path / "bad"
    path.write_bytes(CORRUPTIONS[name][0](good))
    r = CliRunner().invoke(main, [*command, str(path)])
    assert r.exit_code == 1, (r.output, r.exception)
    assert isinstance(r.exception, SystemExit)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("s390emu: ")
    assert "Traceback" not in r.stderr


def test_a_missing_file_and_a_directory_exit_1(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        r = CliRunner().invoke(main, ["dump", "info", str(path)])
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output


def test_an_empty_file_is_not_a_raw_image(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(dump.DumpError, match="multiple of 4096"):
        dump.load(tmp_path / "empty")


# -- fuzz -----------------------------------------------------------------------------------

_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="s390emu-fuzz-"))
_GOOD: list[bytes] = []


def _good() -> bytes:
    if not _GOOD:
        dump.save(_FUZZ_DIR / "good", _machine())
        _GOOD.append((_FUZZ_DIR / "good").read_bytes())
    return _GOOD[0]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(_good())
    head = note_offset(bytes(data)) + struct.unpack_from(">Q", data, PH + P_FILESZ)[0]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "u64", "u32", "u16"]))
        size = {"byte": 1, "u64": 8, "u32": 4, "u16": 2}[kind]
        at = draw(st.integers(0, head - size))
        top = 2**(8 * size) - 1
        value = draw(st.one_of(st.sampled_from([0, 1, 0xFF & top, 0x7FFF_FFFF & top, top]),
                               st.integers(0, top)))
        data[at:at + size] = value.to_bytes(size, "big")
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_fuzz_mutated_dumps_load_or_fail_with_one_line(data):
    path = _FUZZ_DIR / "fuzz"
    path.write_bytes(data)
    try:
        info = dump.load(path, max_memory=64 << 20).info
    except dump.DumpError as e:
        assert "\n" not in str(e)
        return
    assert info.mem_size <= 64 << 20
