"""s390x memory dumps: ELF64 core files as kdump and zgetdump write them, and raw images.

The ELF layout written and read is ``elfcore``'s (zgetdump's order of notes, one
``PT_LOAD`` per run of memory).  A run of at least ``zero_run`` all-zero bytes ends a
chunk: the chunk's ``p_memsz`` still covers the run but its ``p_filesz`` stops before
it (readers zero-fill), and the next chunk begins at the next non-zero page.  Memory is
therefore contiguous from 0 to the end of the last chunk, exactly as large as the
machine's.  Anything wrong raises ``DumpError`` with a one-line message.  A file that
does not start with the ELF magic is a raw image: absolute address 0 is its first byte.

>>> import tempfile, os
>>> from s390emu.machine import Machine
>>> d = tempfile.mkdtemp()
>>> info = save(os.path.join(d, "vmcore"), Machine(8 << 20, ncpus=2))
>>> d = load(os.path.join(d, "vmcore"))
>>> d.info.format, len(d.info.cpus), d.vmcoreinfo["PAGESIZE"], d.mem.size == 8 << 20, d.machine.nr_cpus
('elf', 2, '4096', True, 2)
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import elfcore, kdump
from .elfcore import (ELF_MAGIC, NOTE_NAMES, NT_FPREGSET, NT_PRPSINFO, NT_PRSTATUS, NT_S390_CTRS,
                      NT_S390_PREFIX, NT_S390_TIMER, NT_S390_TODCMP, NT_S390_TODPREG, NT_VMCOREINFO,
                      PRSTATUS_PSW, DumpError, Load, Note, cpu_notes, prpsinfo)
from .machine import NR_CPUS_MAX, VMCOREINFO, Machine
from .output import path_kind, refused_kind
from .memory import PAGE_SIZE, AddressingError, ImageError, PhysicalMemory
from .vmcoreinfo import LayoutError, parse, read_vmcoreinfo, stored_text

__all__ = ("DumpError", "CpuInfo", "Note", "Load", "DumpInfo", "Dump", "save", "load", "read_info",
           "cpu_notes", "NT_PRSTATUS", "NT_FPREGSET", "NT_PRPSINFO", "NT_S390_TIMER",
           "NT_S390_TODCMP", "NT_S390_TODPREG", "NT_S390_CTRS", "NT_S390_PREFIX",
           "NT_VMCOREINFO")

ZERO_RUN = 1 << 20           # zero runs at least this long are not written
MAX_MEMORY = 1 << 46         # refuse dumps that claim more: s390's MAX_PHYSMEM_BITS, 64 TiB


# The PSW's address-space control (bits 16-17 of the mask): the space DAT translates in.
PSW_ASC = {0: "primary", 1: "access-register", 2: "secondary", 3: "home"}


class CpuInfo(NamedTuple):
    """One CPU of a dump: its number, prefix, the three ASCE control registers, and its
    PSW (mask and address, from NT_PRSTATUS; 0 where the dump does not say)."""

    cpu: int
    prefix: int
    cr1: int        # primary ASCE
    cr7: int        # secondary ASCE
    cr13: int       # home ASCE
    psw_mask: int = 0
    psw_addr: int = 0
    has_crs: bool = True        # False: the dump holds no control registers (kdump-compressed)

    @classmethod
    def of(cls, cpu: int, prefix: int, control_registers: tuple[int, ...], psw: tuple[int, int] = (0, 0)) -> "CpuInfo":
        """CPU ``cpu`` with its prefix, its 16 control registers and its PSW."""
        return cls(cpu, prefix, control_registers[1], control_registers[7], control_registers[13], *psw)

    @property
    def dat_on(self) -> bool:
        """Whether the PSW has DAT on (bit 5): the CPU translated its addresses."""
        return bool(self.psw_mask >> 58 & 1)

    @property
    def asc(self) -> str:
        """The address space the PSW selects (``primary``, ``secondary``, ``home`` or
        ``access-register``): where the CPU was translating when it stopped.

        >>> CpuInfo(0, 0, 1, 7, 13, 0x0704C00180000000).asc
        'home'
        """
        return PSW_ASC[self.psw_mask >> 46 & 3]

    @property
    def problem_state(self) -> bool:
        """Whether the PSW is in problem state (bit 15): user mode."""
        return bool(self.psw_mask >> 48 & 1)

    @classmethod
    def of_machine(cls, machine: Machine) -> list["CpuInfo"]:
        """Every CPU of ``machine``, from its lowcore save areas."""
        return [cls.of(cpu, machine.prefix(cpu), machine.control_registers(cpu))
                for cpu in range(machine.nr_cpus)]


@dataclass
class DumpInfo:
    """What a dump holds besides the memory bytes (``zgetdump -i``)."""

    path: str
    format: str                         # "elf", "raw", "kdump" or "kdump-flattened"
    file_size: int
    mem_size: int
    loads: list[Load] = field(default_factory=list)
    cpus: list[CpuInfo] = field(default_factory=list)
    control_registers: list[tuple[int, ...]] = field(default_factory=list)   # per CPU, CR0-15
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    vmcoreinfo_source: str = ""         # "note", "storage" (the lowcore's pointer) or "" (none)

    def cpu(self, n: int) -> CpuInfo:
        """CPU ``n`` (``DumpError`` when the dump has no such CPU)."""
        for c in self.cpus:
            if c.cpu == n:
                return c
        raise DumpError(f"{self.path}: no CPU {n} (the dump has {len(self.cpus)})")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: addresses as ``"0x..."`` strings."""
        return {
            "path": self.path,
            "format": self.format,
            "architecture": "s390x",
            "file_size": self.file_size,
            "memory": {"start": "0x0", "end": f"{self.mem_size:#x}", "size": self.mem_size},
            "loads": [{"paddr": f"{l.paddr:#x}", "memsz": f"{l.memsz:#x}",
                       "filesz": f"{l.filesz:#x}", "offset": f"{l.offset:#x}"} for l in self.loads],
            "cpus": [{"cpu": c.cpu, "prefix": f"{c.prefix:#x}", "cr1": f"{c.cr1:#x}",
                      "cr7": f"{c.cr7:#x}", "cr13": f"{c.cr13:#x}",
                      "psw": {"mask": f"{c.psw_mask:#018x}", "addr": f"{c.psw_addr:#018x}", "asc": c.asc}}
                     for c in self.cpus],
            "vmcoreinfo": dict(self.vmcoreinfo),
            "vmcoreinfo_source": self.vmcoreinfo_source or None,
            "notes": [{"name": n.name, "type": NOTE_NAMES.get(n.type, f"{n.type:#x}"),
                       "size": len(n.desc)} for n in self.notes],
        }


@dataclass
class Dump:
    """A dump read into storage: ``mem``, what the file holds besides (``info``, whose
    ``vmcoreinfo`` is the note's text, else the one stored in ``mem``), and the s390emu
    ``Machine`` over ``mem`` when that VMCOREINFO names one (else None)."""

    mem: PhysicalMemory
    info: DumpInfo
    machine: Machine | None = None

    @property
    def vmcoreinfo(self) -> dict[str, str]:
        """The dump's VMCOREINFO (``info.vmcoreinfo``)."""
        return self.info.vmcoreinfo


# -- writing ---------------------------------------------------------------------------------

def _machine_notes(source: Machine | PhysicalMemory) -> list[Note]:
    mem = source.mem if isinstance(source, Machine) else source
    machine = source if isinstance(source, Machine) else _attach(mem, read_vmcoreinfo(mem))
    notes = [prpsinfo()]
    if machine is not None:
        for cpu in range(machine.nr_cpus):
            notes += cpu_notes(cpu, machine.prefix(cpu), machine.control_registers(cpu))
    # The text the kernel keeps in memory is the note's text (kdump copies it).
    raw = stored_text(mem) or (stored_text(mem, VMCOREINFO) if machine is not None else b"")
    if raw:
        notes.append(Note("VMCOREINFO", NT_VMCOREINFO, raw))
    return notes


def _chunks(mem: PhysicalMemory, zero_run: int) -> list[tuple[int, int, int]]:
    """``(start, filesz, memsz)`` chunks: data runs split at zero runs >= ``zero_run``."""
    npages = mem.size // PAGE_SIZE
    nonzero = mem.data.reshape(npages, PAGE_SIZE).any(axis=1)
    idx = np.flatnonzero(nonzero)
    if len(idx) == 0:
        return [(0, 0, mem.size)]
    min_gap = max(1, zero_run // PAGE_SIZE)
    gaps = np.flatnonzero(np.diff(idx) > min_gap)       # a run of >= min_gap zero pages
    starts = np.concatenate(([idx[0]], idx[gaps + 1]))
    ends = np.concatenate((idx[gaps] + 1, [idx[-1] + 1]))
    if starts[0] <= min_gap:
        starts[0] = 0                                     # a short leading zero run is written
    out = []
    if starts[0] > 0:
        out.append((0, 0, int(starts[0]) * PAGE_SIZE))
    for i, (s, e) in enumerate(zip(starts, ends)):
        nxt = int(starts[i + 1]) if i + 1 < len(starts) else npages
        out.append((int(s) * PAGE_SIZE, int(e - s) * PAGE_SIZE, (nxt - int(s)) * PAGE_SIZE))
    return out


def _atomic_write(path: Path, write, force: bool) -> None:
    """Write through a temporary file in the same directory, fsync, rename into place."""
    path = Path(path)
    refused = refused_kind(path)
    if refused is not None:         # renaming over a device node or a fifo would replace it
        raise DumpError(refused)
    if os.path.lexists(path) and not force:
        raise DumpError(f"{path}: exists (use --force to overwrite)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as e:
        raise DumpError(f"{path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)         # fails if someone created ``path`` meanwhile
            os.unlink(tmp)
        try:
            dfd = os.open(path.parent or ".", os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except FileExistsError:
        os.unlink(tmp)
        raise DumpError(f"{path}: exists (use --force to overwrite)") from None
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DumpError(f"{path}: {e.strerror or e}") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path: str | os.PathLike, source: Machine | PhysicalMemory, *, force: bool = False,
         notes: list[Note] | None = None, zero_run: int = ZERO_RUN) -> DumpInfo:
    """Write ``source``'s storage as an s390x ELF core dump at ``path``, atomically.

    The CPU notes and VMCOREINFO come from the machine's bytes (lowcore save areas and
    the VMCOREINFO page) unless ``notes`` is given.  Refuses to replace an existing
    file unless ``force``.  Returns what ``read_info`` would report.

    >>> import tempfile, os
    >>> from s390emu.memory import PhysicalMemory
    >>> p = os.path.join(tempfile.mkdtemp(), "core")
    >>> save(p, PhysicalMemory(1 << 20)).loads
    [Load(paddr=0, memsz=1048576, filesz=0, offset=4096)]
    >>> save(p, PhysicalMemory(1 << 20))
    Traceback (most recent call last):
    ...
    s390emu.elfcore.DumpError: ...: exists (use --force to overwrite)
    """
    mem = source.mem if isinstance(source, Machine) else source
    if notes is None:
        notes = _machine_notes(source)
    chunks = _chunks(mem, zero_run)
    header, loads, data_start, offset = elfcore.header(notes, chunks)

    def write(f):
        f.write(header)
        f.write(bytes(data_start - len(header)))
        for l in loads:
            if l.filesz:
                f.write(memoryview(mem.data[l.paddr:l.paddr + l.filesz]))

    _atomic_write(Path(path), write, force)
    try:
        return _info_from(str(path), "elf", offset, mem.size, loads, notes)
    except DumpError:           # caller-supplied notes a reader would reject: still written
        return DumpInfo(str(path), "elf", offset, mem.size, loads, notes=notes)


def _info_from(path: str, fmt: str, file_size: int, mem_size: int, loads: list[Load],
               notes: list[Note]) -> DumpInfo:
    info = DumpInfo(path, fmt, file_size, mem_size, loads, notes=notes)
    for n in notes:
        if n.name == "VMCOREINFO" and n.type == NT_VMCOREINFO:
            info.vmcoreinfo = parse(n.desc)
            info.vmcoreinfo_source = "note"
    _cpus_from_notes(info)
    return info


def _cpus_from_notes(info: DumpInfo) -> None:
    """Group per-CPU notes as crash does: each NT_PRSTATUS starts the next CPU."""
    cpus: list[dict[str, Any]] = []
    for n in info.notes:
        if n.type == NT_PRSTATUS and n.name == "CORE":
            psw = struct.unpack_from(">QQ", n.desc, PRSTATUS_PSW) if len(n.desc) >= PRSTATUS_PSW + 16 else (0, 0)
            cpus.append({"prefix": 0, "crs": (0,) * 16, "psw": psw})
        elif not cpus:
            continue
        elif n.type == NT_S390_PREFIX and n.name in ("LINUX", "CORE"):
            if len(n.desc) != 4:
                raise DumpError(f"{info.path}: NT_S390_PREFIX note of {len(n.desc)} bytes (expected 4)")
            cpus[-1]["prefix"] = struct.unpack(">I", n.desc)[0]
        elif n.type == NT_S390_CTRS and n.name in ("LINUX", "CORE"):
            if len(n.desc) != 128:
                raise DumpError(f"{info.path}: NT_S390_CTRS note of {len(n.desc)} bytes (expected 128)")
            cpus[-1]["crs"] = struct.unpack(">16Q", n.desc)
    info.cpus = [CpuInfo.of(i, c["prefix"], c["crs"], c["psw"]) for i, c in enumerate(cpus)]
    info.control_registers = [tuple(c["crs"]) for c in cpus]


# -- reading ---------------------------------------------------------------------------------

def _open(path: Path):
    kind = path_kind(path)
    if kind is not None and kind != "a directory":      # reading a fifo or a tty would wait forever
        raise DumpError(f"{path}: is {kind}, not a dump file")
    try:
        return open(path, "rb")         # a directory: IsADirectoryError, "Is a directory"
    except OSError as e:
        raise DumpError(f"{path}: {e.strerror or e}") from None


def read_info(path: str | os.PathLike, *, max_memory: int = MAX_MEMORY) -> DumpInfo:
    """What ``path`` holds (format, memory ranges, CPUs, VMCOREINFO) without copying memory.

    Raw images, and ELF cores without a VMCOREINFO note (QEMU's), are mapped copy-on-write
    to find the VMCOREINFO the kernel keeps in storage; kdump-compressed dumps are
    decompressed (their lowcore must be).
    """
    path = Path(path)
    with _open(path) as f:
        head = f.read(16)
        if kdump.is_kdump(head):
            return _kdump_dump(path, head).info      # compressed: the lowcore must be decompressed
        if head[:4] != ELF_MAGIC:
            return _raw_dump(path).info
        loads, notes, mem_size, file_size = elfcore.parse(path, f, max_memory)
        info = _info_from(str(path), "elf", file_size, mem_size, loads, notes)
        if not info.vmcoreinfo:
            try:
                _stored_vmcoreinfo(info, _map(path, f, info))
            except DumpError:       # storage that cannot be mapped: the headers still say what they say
                pass
    return info


def _map(path: Path, f, info: DumpInfo) -> PhysicalMemory:
    """The ELF core's storage, mapped (``PhysicalMemory.mapped``), once the file is seen to
    still hold every segment (a page mapped past its end would fault when touched)."""
    now = os.lseek(f.fileno(), 0, os.SEEK_END)
    for l in info.loads:
        if l.offset + l.filesz > now:
            raise DumpError(f"{path}: segment at {l.offset:#x} is truncated")
    try:
        return PhysicalMemory.mapped(f, info.mem_size, [(l.paddr, l.filesz, l.offset) for l in info.loads])
    except (MemoryError, ValueError, OverflowError, OSError) as e:
        raise DumpError(f"{path}: cannot allocate {info.mem_size:#x} bytes of storage ({e})") from None


def _stored_vmcoreinfo(info: DumpInfo, mem: PhysicalMemory) -> None:
    """Take the VMCOREINFO the kernel keeps in storage, when the file gave none."""
    info.vmcoreinfo = read_vmcoreinfo(mem)
    info.vmcoreinfo_source = "storage" if info.vmcoreinfo else ""


def _raw(path: Path) -> PhysicalMemory:
    try:
        return PhysicalMemory.from_file(path)
    except ImageError as e:
        msg = str(e)
        raise DumpError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _raw_dump(path: Path) -> Dump:
    """A raw image as a ``Dump``: its CPUs are the lowcores' when it holds an s390emu kernel."""
    mem = _raw(path)
    info = DumpInfo(str(path), "raw", mem.size, mem.size, [Load(0, mem.size, mem.size, 0)])
    _stored_vmcoreinfo(info, mem)
    machine = _attach(mem, info.vmcoreinfo)
    # nr_cpus is a word in storage: past NR_CPUS_MAX, lowcore_ptr[] would be read into mm_list
    if machine is not None and 0 < machine.nr_cpus <= NR_CPUS_MAX:
        try:
            info.control_registers = [machine.control_registers(cpu) for cpu in range(machine.nr_cpus)]
            info.cpus = CpuInfo.of_machine(machine)
        except AddressingError:              # a prefix outside storage: no usable CPU state
            info.cpus, info.control_registers = [], []
    return Dump(mem, info, machine)


def load(path: str | os.PathLike, *, max_memory: int = MAX_MEMORY) -> Dump:
    """Open a dump (ELF core or raw image) as storage, mapped copy-on-write: nothing is
    read before it is touched, so a dump of any size opens at once.

    The ``Dump``'s ``machine`` is set when the storage holds an s390emu kernel
    (VMCOREINFO, from the note or else through the lowcore, names one).  Raises
    ``DumpError`` (one line) for anything unreadable.
    """
    path = Path(path)
    with _open(path) as f:
        head = f.read(16)
        if kdump.is_kdump(head):
            return _kdump_dump(path, head)
        if head[:4] != ELF_MAGIC:
            return _raw_dump(path)
        loads, notes, mem_size, file_size = elfcore.parse(path, f, max_memory)
        info = _info_from(str(path), "elf", file_size, mem_size, loads, notes)
        mem = _map(path, f, info)
    if not info.vmcoreinfo:
        _stored_vmcoreinfo(info, mem)
    return Dump(mem, info, _attach(mem, info.vmcoreinfo))


def _kdump_dump(path: Path, head: bytes) -> Dump:
    """A kdump-compressed dump (``kdump``): its storage decompressed, VMCOREINFO from the
    storage (QEMU's carry none in the header), the CPUs' PSWs from their NT_PRSTATUS, and
    each CPU's prefix from the kernel's ``lowcore_ptr[]`` where VMCOREINFO names it; no
    control registers (``CpuInfo.has_crs`` False).  ``head``: the file's first bytes."""
    flattened = head.startswith(kdump.FLATTENED_SIGNATURE)
    k = kdump.KdumpFile(path, flattened)
    try:
        mem = k.storage()
        fmt = "kdump-flattened" if flattened else "kdump"
        info = DumpInfo(str(path), fmt, path.stat().st_size, mem.size, [Load(0, mem.size, 0, 0)])
        _stored_vmcoreinfo(info, mem)
        prefixes = _lowcore_ptrs(mem, info.vmcoreinfo, len(k.psws))
        info.cpus = [CpuInfo(i, prefixes[i], 0, 0, 0, mask, addr, False) for i, (mask, addr) in enumerate(k.psws)]
    finally:
        k.close()
    return Dump(mem, info, _attach(mem, info.vmcoreinfo))


def _lowcore_ptrs(mem: PhysicalMemory, vmcoreinfo: dict[str, str], n: int) -> list[int]:
    """Each CPU's lowcore (its prefix) from ``SYMBOL(lowcore_ptr)``, an array of pointers
    (identity-mapped kernel data; 0 where it is not in storage or VMCOREINFO lacks it)."""
    at = int(vmcoreinfo.get("SYMBOL(lowcore_ptr)", "0"), 16)
    if not at or not mem.contains(at, 8 * n):
        return [0] * n
    prefixes = [mem.read_u64(at + 8 * i) for i in range(n)]
    return [p if p < mem.size else 0 for p in prefixes]


def _attach(mem: PhysicalMemory, vmcoreinfo: dict[str, str]) -> Machine | None:
    """``Machine.attach`` trusting ``vmcoreinfo``, or None when it names no s390emu kernel."""
    try:
        return Machine.attach(mem, vmcoreinfo)
    except LayoutError:
        return None
