"""s390x ELF core files as kdump and zgetdump write them: the format, declared once.

Layout written by ``dump.save`` (``reference/ecosystem-and-anchors.md`` §0.4; s390-tools
``zdump/dfo_elf.c``):

* ELF header: ``ELFCLASS64``, ``ELFDATA2MSB``, ``ET_CORE``, ``EM_S390`` (22);
* program header 0 is ``PT_NOTE`` (crash takes phdr[0] as the notes and phdr[1..] as
  memory), then one ``PT_LOAD`` per memory chunk with ``p_paddr == p_vaddr`` = the
  absolute start, ``p_flags`` RWX and ``p_align`` 4096;
* the notes: ``CORE/NT_PRPSINFO``, then per CPU ``CORE/NT_PRSTATUS``,
  ``CORE/NT_FPREGSET``, ``LINUX/NT_S390_TIMER``, ``NT_S390_TODCMP``,
  ``NT_S390_TODPREG``, ``NT_S390_CTRS`` (16 x u64: CR1, CR7 and CR13 are the primary,
  secondary and home ASCEs) and ``NT_S390_PREFIX`` (u32), and last the ``VMCOREINFO``
  text, zgetdump's order;
* each ``PT_LOAD`` starts at a page-aligned file offset; its ``p_filesz`` may stop
  short of its ``p_memsz`` (readers zero-fill the rest).

Reading (``parse``) uses pyelftools for every ELF structure (header, program headers,
notes) and checks what pyelftools does not: program headers and notes inside the file,
loads that neither overlap nor exceed ``max_memory``, the machine and byte order.
Anything wrong raises ``DumpError`` with a one-line message.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

from .errors import S390emuError
from .memory import PAGE_SIZE

EM_S390 = 22
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_RWX = 7
ELF_MAGIC = b"\x7fELF"

NT_PRSTATUS = 1
NT_FPREGSET = 2
NT_PRPSINFO = 3
NT_S390_TIMER = 0x301
NT_S390_TODCMP = 0x302
NT_S390_TODPREG = 0x303
NT_S390_CTRS = 0x304
NT_S390_PREFIX = 0x305
NT_VMCOREINFO = 0

NOTE_NAMES = {
    NT_PRSTATUS: "NT_PRSTATUS", NT_FPREGSET: "NT_FPREGSET", NT_PRPSINFO: "NT_PRPSINFO",
    NT_S390_TIMER: "NT_S390_TIMER", NT_S390_TODCMP: "NT_S390_TODCMP",
    NT_S390_TODPREG: "NT_S390_TODPREG", NT_S390_CTRS: "NT_S390_CTRS",
    NT_S390_PREFIX: "NT_S390_PREFIX",
}

# Elf64_Ehdr, Elf64_Phdr, Elf64_Nhdr, big-endian (only ever used to write).
_EHDR = struct.Struct(">4sBBBBB7sHHIQQQIHHHHHH")
_PHDR = struct.Struct(">IIQQQQQQ")
_NHDR = struct.Struct(">III")
# s390x struct nt_prstatus_64 (336 bytes): pr_pid at 32, psw at 112, gprs, acrs, ...
PRSTATUS_SIZE = 336
PRSTATUS_PID = 32
PRSTATUS_PSW = 112       # pr_reg: s390_regs, the PSW (mask, address) first
FPREGSET_SIZE = 136      # fpc, pad, fprs[16]
PRPSINFO_SIZE = 136      # pr_state .. pr_psargs[80]
PRPSINFO_FNAME = 40

MAX_NOTES = 1 << 24          # refuse note segments larger than this


class DumpError(S390emuError):
    """A dump that cannot be read or written; ``str()`` is one line naming the file."""


class Note(NamedTuple):
    """One ELF note: owner name (``CORE``, ``LINUX``, ``VMCOREINFO``), type, descriptor."""

    name: str
    type: int
    desc: bytes


class Load(NamedTuple):
    """One ``PT_LOAD``: absolute start, size in memory, bytes present in the file, offset."""

    paddr: int
    memsz: int
    filesz: int
    offset: int


# -- writing ---------------------------------------------------------------------------------

def note_bytes(note: Note) -> bytes:
    """A note as it lies in the file: header, padded name, padded descriptor."""
    name = note.name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return _NHDR.pack(len(name), len(note.desc), note.type) + pad(name) + pad(note.desc)


def cpu_notes(cpu: int, prefix: int, control_registers: tuple[int, ...]) -> list[Note]:
    """The notes zgetdump writes for one CPU (PSW, GPRs, FPRs and timers are zero here)."""
    prstatus = bytearray(PRSTATUS_SIZE)
    struct.pack_into(">I", prstatus, PRSTATUS_PID, cpu + 1)
    crs = struct.pack(">16Q", *control_registers)
    return [
        Note("CORE", NT_PRSTATUS, bytes(prstatus)),
        Note("CORE", NT_FPREGSET, bytes(FPREGSET_SIZE)),
        Note("LINUX", NT_S390_TIMER, bytes(8)),
        Note("LINUX", NT_S390_TODCMP, bytes(8)),
        Note("LINUX", NT_S390_TODPREG, bytes(4)),
        Note("LINUX", NT_S390_CTRS, crs),
        Note("LINUX", NT_S390_PREFIX, struct.pack(">I", prefix)),
    ]


def prpsinfo() -> Note:
    """The process-status note zgetdump writes first (the "vmlinux" task)."""
    desc = bytearray(PRPSINFO_SIZE)
    desc[1:2] = b"R"
    desc[PRPSINFO_FNAME:PRPSINFO_FNAME + 7] = b"vmlinux"
    return Note("CORE", NT_PRPSINFO, bytes(desc))


def header(notes: list[Note], chunks: list[tuple[int, int, int]]) -> tuple[bytes, list[Load], int, int]:
    """ELF header, program headers (``PT_NOTE``, then one ``PT_LOAD`` per ``(start,
    filesz, memsz)`` chunk) and notes: ``(bytes, loads, data_start, file_size)``, where
    the chunks' data goes from the page-aligned ``data_start`` on, in order."""
    note_data = b"".join(note_bytes(n) for n in notes)
    phnum = 1 + len(chunks)
    hdr_end = _EHDR.size + phnum * _PHDR.size
    data_start = -(-(hdr_end + len(note_data)) // PAGE_SIZE) * PAGE_SIZE
    loads, offset = [], data_start
    for start, filesz, memsz in chunks:
        loads.append(Load(start, memsz, filesz, offset))
        offset += filesz
    ident_pad = bytes(7)
    ehdr = _EHDR.pack(ELF_MAGIC, 2, 2, 1, 0, 0, ident_pad, ET_CORE, EM_S390, 1, 0, _EHDR.size,
                      0, 0, _EHDR.size, _PHDR.size, phnum, 0, 0, 0)
    phdrs = [_PHDR.pack(PT_NOTE, 0, hdr_end, 0, 0, len(note_data), len(note_data), 4)]
    phdrs += [_PHDR.pack(PT_LOAD, PF_RWX, l.offset, l.paddr, l.paddr, l.filesz, l.memsz, PAGE_SIZE)
              for l in loads]
    return ehdr + b"".join(phdrs) + note_data, loads, data_start, offset


# -- reading ---------------------------------------------------------------------------------

def parse(path: Path, f, max_memory: int) -> tuple[list[Load], list[Note], int, int]:
    """Headers and notes through pyelftools, validated: ``(loads, notes, mem_size, file_size)``;
    ``f`` at any position (pyelftools seeks to what it reads)."""
    from elftools.common.exceptions import ELFError
    from elftools.construct import ConstructError
    from elftools.elf.elffile import ELFFile

    file_size = os.fstat(f.fileno()).st_size
    if file_size < _EHDR.size:
        raise DumpError(f"{path}: truncated ELF header ({file_size} of 64 bytes)")
    try:
        elf = ELFFile(f)
        h = elf.header
        if elf.elfclass != 64:
            raise DumpError(f"{path}: ELFCLASS32 file; s390x dumps are ELFCLASS64")
        if elf.little_endian:
            raise DumpError(f"{path}: little-endian ELF; s390x dumps are big-endian (ELFDATA2MSB)")
        if h["e_machine"] not in ("EM_S390", EM_S390):
            raise DumpError(f"{path}: machine {h['e_machine']}, not EM_S390 (an s390x dump)")
        if h["e_type"] not in ("ET_CORE", ET_CORE):
            raise DumpError(f"{path}: ELF type {h['e_type']}, not ET_CORE (a core dump)")
        phnum, phoff, phentsize = h["e_phnum"], h["e_phoff"], h["e_phentsize"]
        if phnum == 0:
            raise DumpError(f"{path}: no program headers")
        if phentsize != 56:
            raise DumpError(f"{path}: e_phentsize {phentsize}, expected 56")
        if phoff + phnum * phentsize > file_size:
            raise DumpError(f"{path}: program headers at {phoff:#x} (+{phnum}x56) lie beyond the "
                            f"end of the file ({file_size:#x})")
        loads: list[Load] = []
        notes: list[Note] = []
        for i in range(phnum):
            seg = elf.get_segment(i)
            ptype = seg["p_type"]
            off, filesz, memsz = seg["p_offset"], seg["p_filesz"], seg["p_memsz"]
            if ptype in ("PT_LOAD", "PT_NOTE") and off + filesz > file_size:
                raise DumpError(f"{path}: segment {i} ({ptype}) data at {off:#x} (+{filesz:#x}) lies "
                                f"beyond the end of the file ({file_size:#x})")
            if ptype == "PT_NOTE":
                if filesz > MAX_NOTES:
                    raise DumpError(f"{path}: note segment of {filesz:#x} bytes is too large")
                notes += _segment_notes(path, elf, seg, i)
            elif ptype == "PT_LOAD":
                paddr = seg["p_paddr"]
                if filesz > memsz:
                    raise DumpError(f"{path}: segment {i}: p_filesz {filesz:#x} > p_memsz {memsz:#x}")
                if paddr + memsz > max_memory:
                    raise DumpError(f"{path}: segment {i}: memory {paddr:#x}+{memsz:#x} exceeds "
                                    f"the {max_memory:#x}-byte limit")
                if memsz:
                    loads.append(Load(paddr, memsz, filesz, off))
    except DumpError:
        raise
    except (ELFError, ConstructError, ValueError, struct.error, UnicodeError, KeyError,
            OverflowError, TypeError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DumpError(f"{path}: malformed ELF: {msg}") from None
    except OSError as e:
        raise DumpError(f"{path}: {e.strerror or e}") from None
    if not loads:
        raise DumpError(f"{path}: no PT_LOAD segments (no memory)")
    ordered = sorted(loads)
    for a, b in zip(ordered, ordered[1:]):
        if a.paddr + a.memsz > b.paddr:
            raise DumpError(f"{path}: PT_LOAD segments overlap: {a.paddr:#x}+{a.memsz:#x} "
                            f"and {b.paddr:#x}+{b.memsz:#x}")
    end = max(l.paddr + l.memsz for l in loads)
    mem_size = -(-end // PAGE_SIZE) * PAGE_SIZE
    return loads, notes, mem_size, file_size


def _segment_notes(path: Path, elf, seg, i: int) -> list[Note]:
    """The notes of segment ``i``; sizes are checked (pyelftools' Elf_Nhdr) before parsing."""
    from elftools.common.utils import struct_parse

    start, end = seg["p_offset"], seg["p_offset"] + seg["p_filesz"]
    nhdr = elf.structs.Elf_Nhdr
    offset = start
    while offset + _NHDR.size < end:      # the loop pyelftools' iter_notes runs
        h = struct_parse(nhdr, elf.stream, stream_pos=offset)
        namesz, descsz = h["n_namesz"], h["n_descsz"]
        body = offset + _NHDR.size + -(-namesz // 4) * 4
        if body > end or body + descsz > end:
            raise DumpError(f"{path}: note at {offset:#x} (namesz {namesz}, descsz {descsz}) runs "
                            f"past the end of note segment {i}")
        offset = body + -(-descsz // 4) * 4
    out = []
    for note in seg.iter_notes():
        ntype = note["n_type"]
        if isinstance(ntype, str):
            from elftools.elf.enums import ENUM_CORE_NOTE_N_TYPE
            ntype = ENUM_CORE_NOTE_N_TYPE[ntype]
        out.append(Note(note["n_name"] or "", ntype, bytes(note["n_descdata"])))
    return out
