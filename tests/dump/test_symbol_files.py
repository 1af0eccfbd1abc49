"""``--vmlinux FILE``'s readers (s390emu.inspect.kernel_symbols): an ELF symbol table and a
System.map, built here byte by byte, and every refusal in its own one line."""

from __future__ import annotations

import struct

import pytest

from s390emu.inspect.kernel_symbols import SymbolFileError, elf_symbols, read_symbol_file, system_map


def elf(symbols, *, order="symtab sections strtab", machine=22, ident=b"\x7fELF\x02\x02\x01", entsize=24,
        symtab_size=None, link=2, strtab_cut=0, shoff=None, shoff_delta=0, shnum=3, sym_off=None):
    """A big-endian ELF64 with sections [null, .symtab, .strtab]: the header, then the symbols,
    the section headers and the strings in ``order``; ``symbols``: (name, value, size), a name
    str or bytes; the other arguments damage one field each."""
    names = [n if isinstance(n, bytes) else n.encode() for n, _v, _s in symbols]
    strtab = b"\0" + b"".join(n + b"\0" for n in names)
    strtab = strtab[:len(strtab) - strtab_cut]
    syms, at = [bytes(24)], 1                 # entry 0 is the null symbol
    for n, (_n, v, s) in zip(names, symbols):
        syms.append(struct.pack(">IBBHQQ", at, 0x11, 0, 1, v, s))
        at += len(n) + 1
    symtab = b"".join(syms)
    parts = {"symtab": symtab, "sections": bytes(3 * 64), "strtab": strtab}
    offset, at = {}, 64
    for part in order.split():
        offset[part], at = at, at + len(parts[part])
    shoff = offset["sections"] + shoff_delta if shoff is None else shoff
    head = ident.ljust(16, b"\0") + struct.pack(">HHIQQQIHHHHHH", 2, machine, 1, 0, 0, shoff, 0, 64,
                                                 0, 0, 64, shnum, 2)
    parts["sections"] = b"".join([
        bytes(64),
        struct.pack(">IIQQQQIIQQ", 0, 2, 0, 0, offset["symtab"] if sym_off is None else sym_off,
                    len(symtab) if symtab_size is None else symtab_size, link, 1, 8, entsize),
        struct.pack(">IIQQQQIIQQ", 0, 3, 0, 0, offset["strtab"], len(strtab), 0, 0, 1, 0)])
    return head + b"".join(parts[part] for part in order.split())


SYMS = [("_stext", 0x100000, 0), ("lowcore_ptr", 0x1298eb8, 2048), ("_stext", 0x999, 0), ("vmemmap", 0x12a0000, 8)]


def test_elf_symbols_gives_value_and_size_the_first_of_each_name(tmp_path):
    p = tmp_path / "vmlinux"
    p.write_bytes(elf(SYMS))
    assert elf_symbols(p) == {"_stext": (0x100000, 0), "lowcore_ptr": (0x1298eb8, 2048), "vmemmap": (0x12a0000, 8)}
    assert read_symbol_file(p) == elf_symbols(p)


@pytest.mark.parametrize("content,message", [
    (elf(SYMS, ident=b"\x7fELF\x01\x02\x01"), "not a big-endian 64-bit ELF file"),
    (elf(SYMS, ident=b"\x7fELF\x02\x01\x01"), "not a big-endian 64-bit ELF file"),
    (elf(SYMS, machine=62), "an ELF file for another machine than s390x"),
    (elf([]), "the ELF file has no symbol table (stripped)"),
    (elf(SYMS, entsize=16), "a damaged ELF file (a symbol table of 16-byte entries at 0x40, 0x78 bytes)"),
    (elf(SYMS, symtab_size=0x10000), "a damaged ELF file (a symbol table of 24-byte entries at 0x40, 0x10000 bytes)"),
    (elf(SYMS, shoff_delta=0x1000), "a damaged ELF file (its headers point beyond its end)"),
    (elf(SYMS, link=7), "a damaged ELF file (its headers point beyond its end)"),
    (b"\x7fELF", "a damaged ELF file (its headers point beyond its end)"),
    (b"\x7fELF\x02\x02\x01" + bytes(9) + b"\0\x02\0\x16" + bytes(20), "a damaged ELF file (its headers point beyond its end)"),
])
def test_a_bad_elf_file_is_one_line(tmp_path, content, message):
    p = tmp_path / "vmlinux"
    p.write_bytes(content)
    with pytest.raises(SymbolFileError) as e:
        read_symbol_file(p)
    assert str(e.value) == f"{p}: {message}"


def test_a_symbol_name_running_past_the_end_of_the_file(tmp_path):
    p = tmp_path / "vmlinux"
    p.write_bytes(elf([("x" * 40, 1, 0)], strtab_cut=1))   # the strings are last: the name's NUL cut off
    with pytest.raises(SymbolFileError, match="a symbol name runs past its end"):
        elf_symbols(p)


def test_system_map_gives_addresses_without_sizes_the_first_of_each_name(tmp_path):
    p = tmp_path / "System.map"
    p.write_text("0000000000100000 T _stext\n0000000001298eb8 D lowcore_ptr\nshort line\n"
                 "0000000000000999 t _stext\n000000000133b000 B _end extra words\n")
    assert system_map(p) == {"_stext": (0x100000, 0), "lowcore_ptr": (0x1298eb8, 0), "_end": (0x133b000, 0)}
    assert read_symbol_file(p) == system_map(p)


@pytest.mark.parametrize("content,message", [
    ("0000000000100000 T _stext\nzz T bad\n", ":2: not a System.map line: 'zz T bad'"),
    ("", ": no symbols in it (neither an ELF file nor a System.map)"),
    ("one two\n", ": no symbols in it (neither an ELF file nor a System.map)"),
])
def test_a_bad_system_map_is_one_line(tmp_path, content, message):
    p = tmp_path / "System.map"
    p.write_text(content)
    with pytest.raises(SymbolFileError) as e:
        read_symbol_file(p)
    assert str(e.value) == f"{p}{message}"


def test_an_unreadable_symbol_file_is_one_line(tmp_path):
    with pytest.raises(SymbolFileError) as e:
        read_symbol_file(tmp_path)
    assert str(e.value) == f"{tmp_path}: Is a directory"
    with pytest.raises(SymbolFileError) as e:
        read_symbol_file(tmp_path / "none")
    assert str(e.value) == f"{tmp_path / 'none'}: No such file or directory"


def elf_sections_last(symbols, **damage):
    """The same ELF with the section headers last (a huge ``shoff`` must not wrap to them)."""
    return elf(symbols, order="strtab symtab sections", **damage)


def test_offsets_and_values_are_unsigned_and_names_not_ascii_are_replaced(tmp_path):
    p = tmp_path / "vmlinux"
    syms = [(b"top", (1 << 64) - 1, (1 << 64) - 2), (b"caf\xe9", 0x10, 1)]
    p.write_bytes(elf_sections_last(syms))
    assert elf_symbols(p) == {"top": ((1 << 64) - 1, (1 << 64) - 2), "caf\ufffd": (0x10, 1)}
    for bad in (elf_sections_last(syms, shoff=(1 << 64) - 192), elf_sections_last(syms, shnum=0xFFFF)):
        p.write_bytes(bad)
        with pytest.raises(SymbolFileError, match="its headers point beyond its end"):
            elf_symbols(p)
    p.write_bytes(elf_sections_last(syms, sym_off=(1 << 64) - 72))
    with pytest.raises(SymbolFileError, match=f"24-byte entries at {(1 << 64) - 72:#x}, 0x48 bytes"):
        elf_symbols(p)


def test_a_symbol_table_ending_exactly_at_the_end_of_the_file_is_read(tmp_path):
    p = tmp_path / "vmlinux"
    p.write_bytes(elf([(b"a", 1, 0)], order="sections strtab symtab"))
    assert elf_symbols(p) == {"a": (1, 0)}


def test_elf_symbols_of_a_directory_is_one_line(tmp_path):
    with pytest.raises(SymbolFileError) as e:
        elf_symbols(tmp_path)
    assert str(e.value) == f"{tmp_path}: Is a directory"


def test_system_map_bytes_that_are_not_utf8_are_replaced_and_a_long_bad_line_is_cut(tmp_path):
    p = tmp_path / "System.map"
    p.write_bytes(b"0000000000100000 T caf\xe9\n")
    assert system_map(p) == {"caf\ufffd": (0x100000, 0)}
    bad = "x" * 70 + " T name"
    p.write_text(f"0000000000100000 T _stext\n{bad}\n")
    with pytest.raises(SymbolFileError) as e:
        system_map(p)
    assert str(e.value) == f"{p}:2: not a System.map line: {bad[:60]!r}"
