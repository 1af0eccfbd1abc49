"""Where a Linux kernel's symbols are, from what a dump offers, as crash and makedumpfile find them.

Three sources, best first:

* ``--vmlinux FILE``: the kernel's ELF symbol table (the debug vmlinux, or any ELF of
  the same build), or a ``System.map`` (``ADDRESS TYPE NAME`` lines);
* VMCOREINFO's ``SYMBOL(name)=hex`` lines;
* kallsyms, decoded from the kernel's own tables in memory: VMCOREINFO names them
  (``SYMBOL(kallsyms_names)``, ``_token_table``, ``_token_index``, ``_offsets``,
  ``_relative_base``, ``_num_syms``, since v6.0).  Without ``CONFIG_KALLSYMS_ALL`` they
  hold only text symbols (Debian's s390x kernels), so data symbols come from the other two.

Addresses are kernel virtual addresses; ``value`` reads the unsigned long stored at one
through the kernel's own tables (``memmap.KernelSpace``).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ..errors import S390emuError
from ..vmcoreinfo import LayoutError
from .memmap import KernelSpace

_KALLSYMS = ("names", "num_syms", "token_table", "token_index", "offsets", "relative_base")


class SymbolFileError(S390emuError):
    """A ``--vmlinux`` file that is neither an s390x ELF with a symbol table nor a System.map."""


def elf_symbols(path: str | Path) -> dict[str, tuple[int, int]]:
    """``{name: (value, size)}`` of an ELF file's ``.symtab`` (big-endian ELF64, s390x).

    Only the section headers, the symbol table and its string table are read (mapped),
    so a 400 MB debug vmlinux costs what its symbols cost."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _symtab(path, m)
    except (struct.error, IndexError, ValueError, OverflowError):      # offsets or sizes beyond the file
        raise SymbolFileError(f"{path}: a damaged ELF file (its headers point beyond its end)") from None
    except OSError as e:
        raise SymbolFileError(f"{path}: {e.strerror or e}") from None


def _symtab(path, m) -> dict[str, tuple[int, int]]:
    """``elf_symbols`` of the mapped file ``m``."""
    if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 2:
        raise SymbolFileError(f"{path}: not a big-endian 64-bit ELF file")
    if struct.unpack_from(">H", m, 18)[0] != 22:                      # EM_S390
        raise SymbolFileError(f"{path}: an ELF file for another machine than s390x")
    shoff, = struct.unpack_from(">Q", m, 40)
    shentsize, shnum = struct.unpack_from(">HH", m, 58)
    sections = [struct.unpack_from(">IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, tuple[int, int]] = {}
    for sh in sections:
        if sh[1] != 2:                                                 # SHT_SYMTAB
            continue
        off, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
        if entsize != 24 or off + size > len(m):                       # Elf64_Sym is 24 bytes
            raise SymbolFileError(f"{path}: a damaged ELF file (a symbol table of {entsize}-byte entries "
                                  f"at {off:#x}, {size:#x} bytes)")
        stroff = sections[link][4]
        for i in range(size // entsize):
            name, _info, _other, _shndx, value, sz = struct.unpack_from(">IBBHQQ", m, off + i * entsize)
            if name:
                end = m.find(b"\0", stroff + name)
                if end < 0:
                    raise SymbolFileError(f"{path}: a damaged ELF file (a symbol name runs past its end)")
                out.setdefault(m[stroff + name:end].decode("ascii", "replace"), (value, sz))
    if not out:
        raise SymbolFileError(f"{path}: the ELF file has no symbol table (stripped)")
    return out


def system_map(path: str | Path) -> dict[str, tuple[int, int]]:
    """``{name: (address, 0)}`` of a ``System.map`` (sizes are not in it)."""
    out: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            out.setdefault(parts[2], (int(parts[0], 16), 0))
        except ValueError:
            raise SymbolFileError(f"{path}:{n}: not a System.map line: {line[:60]!r}") from None
    if not out:
        raise SymbolFileError(f"{path}: no symbols in it (neither an ELF file nor a System.map)")
    return out


def read_symbol_file(path: str | Path) -> dict[str, tuple[int, int]]:
    """The symbols of ``--vmlinux FILE``: an ELF's symbol table, else a System.map's lines."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise SymbolFileError(f"{path}: {e.strerror}") from None
    return elf_symbols(path) if magic == b"\x7fELF" else system_map(path)


def kallsyms_tables(vmcoreinfo: dict[str, str]) -> dict[str, int] | None:
    """``{names, num_syms, token_table, token_index, offsets, relative_base: address}`` of
    the kallsyms tables VMCOREINFO names (v6.0+), or None unless it names all six."""
    if not all(f"SYMBOL(kallsyms_{k})" in vmcoreinfo for k in _KALLSYMS):
        return None
    return {k: int(vmcoreinfo[f"SYMBOL(kallsyms_{k})"], 16) for k in _KALLSYMS}


def kallsyms(kernel: KernelSpace, at: dict[str, int]) -> dict[str, tuple[int, str]]:
    """``{name: (address, type)}``: the kernel's kallsyms table at ``at``
    (``kallsyms_tables``), decoded from memory as ``kernel/kallsyms.c`` does:
    each name is a length (one byte, two when its top bit is set: "big" symbols, v6.1)
    and that many token indexes, its first character the symbol's type; each address is
    ``kallsyms_relative_base + (u32)kallsyms_offsets[i]`` (``CONFIG_KALLSYMS_BASE_RELATIVE``
    without absolute per-CPU symbols, as on s390).  ``LayoutError`` when the tables
    are not mapped or hold no kernel's table."""
    num = int.from_bytes(kernel.read(at["num_syms"], 4), "big")       # kallsyms_num_syms is an int
    if not 0 < num < 1 << 22:
        raise LayoutError(f"kallsyms_num_syms is {num}: no kallsyms table of a kernel")
    base = kernel.read_u64(at["relative_base"])
    offsets = struct.unpack(f">{num}I", kernel.read(at["offsets"], 4 * num))
    index = struct.unpack(">256H", kernel.read(at["token_index"], 512))
    tokens = kernel.read(at["token_table"], at["token_index"] - at["token_table"])
    token = [tokens[i:tokens.index(0, i)].decode("latin-1") for i in index]
    # the names stream has no stored length: read it in pieces as far as num names go,
    # never past kallsyms_token_table, which scripts/kallsyms.c emits after it (with
    # kallsyms_markers between), nor past num names of KSYM_NAME_LEN (512) each
    limit = at["token_table"] - at["names"]
    if not 0 < limit <= num * 514:
        limit = num * 514
    names, pos, out, chunk = b"", 0, {}, 1 << 16

    def end_of_name(pos: int) -> int:
        """Where the name at ``pos`` ends, as far as the bytes read so far tell."""
        if pos >= len(names):
            return pos + 1
        if not names[pos] & 0x80:
            return pos + 1 + names[pos]
        if pos + 1 >= len(names):
            return pos + 2
        return pos + 2 + (names[pos] & 0x7F | names[pos + 1] << 7)

    for i in range(num):
        while end_of_name(pos) > len(names):
            if len(names) >= limit:
                raise LayoutError(f"kallsyms_names ends after {i} of {num} names: no kallsyms table of a kernel")
            names += kernel.read(at["names"] + len(names), min(chunk, limit - len(names)))
        n, pos = names[pos], pos + 1
        if n & 0x80:
            n, pos = (n & 0x7F) | names[pos] << 7, pos + 1
        if not n:                                     # a name holds its type at least
            raise LayoutError(f"kallsyms_names: name {i} of {num} is empty: no kallsyms table of a kernel")
        text = "".join(token[b] for b in names[pos:pos + n])
        pos += n
        out.setdefault(text[1:], (base + offsets[i], text[:1]))
    return out


class KernelSymbols:
    """The kernel's symbols from the sources a storage offers (``--vmlinux`` file first,
    then VMCOREINFO, then kallsyms in memory); ``sources`` names those that gave any
    (the file by its own name: a System.map is not a vmlinux)."""

    def __init__(self, kernel: KernelSpace, vmcoreinfo: dict[str, str], vmlinux: str | Path | None = None):
        self.kernel = kernel
        self.file = read_symbol_file(vmlinux) if vmlinux is not None else {}
        self.vmcoreinfo = {k[7:-1]: int(v, 16) for k, v in vmcoreinfo.items()
                           if k.startswith("SYMBOL(") and _hex(v)}
        tables = kallsyms_tables(vmcoreinfo)
        try:
            self.kallsyms = {n: a for n, (a, _t) in kallsyms(kernel, tables).items()} if tables else {}
        except LayoutError:
            self.kallsyms = {}
        named = ((Path(vmlinux or "").name, self.file), ("VMCOREINFO", self.vmcoreinfo), ("kallsyms", self.kallsyms))
        self.sources = [name for name, table in named if table]

    def address(self, name: str) -> int | None:
        """The address of symbol ``name``, or None when no source has it."""
        if name in self.file:
            return self.file[name][0]
        return self.vmcoreinfo.get(name, self.kallsyms.get(name))

    def size(self, name: str) -> int | None:
        """The symbol's size (only an ELF symbol table records it), or None."""
        size = self.file.get(name, (0, 0))[1]
        return size or None

    def value(self, name: str) -> int | None:
        """The unsigned long stored at symbol ``name`` (a kernel variable), or None when
        the symbol is unknown or its address is not mapped."""
        addr = self.address(name)
        if addr is None:
            return None
        try:
            return self.kernel.read_u64(addr)
        except LayoutError:
            return None


def _hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
