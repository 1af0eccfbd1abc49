"""The VMCOREINFO text at its edges (s390emu.vmcoreinfo): ``parse`` of what follows the
first NUL and of a value holding ``=``; ``stored_text`` and ``_note_text`` at the end of
storage, with a ``limit``, with ``descsz`` cut or huge, and the older s390emu layout (a
word at 0xe0c pointing at the bare text) at the same edges.  Each layout is built by hand."""

from __future__ import annotations

import struct

import pytest

from s390emu.memory import PhysicalMemory
from s390emu.vmcoreinfo import NOTE_HEADER, note, parse, stored_text

SIZE = 2 * 4096
TEXT = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n"


def with_note(at: int, text: bytes = TEXT, size: int = SIZE) -> PhysicalMemory:
    """Storage whose lowcore doubleword at 0xe0c points at a VMCOREINFO note at ``at``."""
    mem = PhysicalMemory(size)
    mem.write(0xE0C, at.to_bytes(8, "big"))
    mem.write(at, note(text))
    return mem


def with_legacy(at: int, text: bytes, size: int = SIZE) -> PhysicalMemory:
    """Storage in the older s390emu layout: the word at 0xe0c points at the bare text."""
    mem = PhysicalMemory(size)
    mem.write_u32(0xE0C, at)
    mem.write(at, text)
    return mem


def test_parse_stops_at_the_first_nul_and_splits_at_the_first_equals_sign():
    assert parse(b"A=1\n\0B=2\n\0C=3\n") == {"A": "1"}
    assert parse(b"CRASHKERNEL=a=b\nNOEQUALS\n") == {"CRASHKERNEL": "a=b"}


def test_note_text_is_read_up_to_its_first_nul_not_past_descsz():
    mem = with_note(0x1800, b"A=1\n\0B=2\n\0C=3\n")
    assert stored_text(mem) == b"A=1\n"
    mem = with_note(0x1800, b"A=1\n")
    mem.write(0x1800 + NOTE_HEADER + 4, b"B=2\n")         # bytes right after the descriptor
    assert stored_text(mem) == b"A=1\n"


def test_note_text_is_cut_at_limit_and_at_the_end_of_storage():
    mem = with_note(0x1800)
    assert stored_text(mem, limit=5) == TEXT[:5]
    assert stored_text(mem, at=0x1800, limit=9) == TEXT[:9]
    at = SIZE - NOTE_HEADER - 8                              # 8 bytes of text fit
    mem = with_note(at, b"PAGESIZE")
    mem.write(at + 4, struct.pack(">I", 0xFFFFFFFF))         # descsz: as large as a u32 goes
    assert stored_text(mem) == b"PAGESIZE"


def test_a_note_pointer_without_room_for_a_header_or_a_note_finds_nothing():
    mem = PhysicalMemory(SIZE)
    mem.write(0xE0C, (SIZE - 8).to_bytes(8, "big"))         # 8 bytes left: no Elf64_Nhdr fits
    mem.write(SIZE - 8, b"\0\0\0\x0bXXXX")
    assert stored_text(mem) == b""
    assert stored_text(with_note(0x1800), at=0x1000) == b""  # ``at`` where no note lies


def test_storage_smaller_than_two_pages_holds_no_vmcoreinfo():
    small = PhysicalMemory(4096)
    small.write(0xE0C, (0xF00).to_bytes(8, "big"))
    small.write(0xF00, note(b"A=1\n")[:0x100])
    assert stored_text(small) == b""
    assert stored_text(with_note(0x1800, size=0x2000)) == TEXT  # two pages: read


def test_the_legacy_word_finds_the_bare_text_up_to_its_nul_limit_and_storage_end():
    assert stored_text(with_legacy(0x1800, b"A=1\n\0B=2\n\0")) == b"A=1\n"
    assert stored_text(with_legacy(0x1800, TEXT), limit=4) == TEXT[:4]
    assert stored_text(with_legacy(SIZE - 4, b"A=12")) == b"A=12"   # no NUL before the end
    assert stored_text(with_legacy(SIZE - 1, b"Z")) == b"Z"         # the last byte


@pytest.mark.parametrize("word", [0, SIZE, 0xFFFFFFFF])
def test_a_legacy_word_of_zero_or_past_storage_finds_nothing(word):
    mem = PhysicalMemory(SIZE)
    mem.write(0, b"\x07\x05 lowcore bytes\n")               # what address 0 holds is no text
    mem.write_u32(0xE0C, word)
    assert stored_text(mem) == b""
