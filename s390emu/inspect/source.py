"""Storage to inspect, opened one way whatever it comes from: a dump, a raw image or the
built-in demo.

``open_dump`` reads an ELF dump or a raw image with ``dump.load`` (its CPUs from the
notes, or from the lowcores of an s390emu kernel); ``open_image`` takes a raw image as
bare storage (no CPUs, no VMCOREINFO); ``open_demo`` builds the demo with an allocator
version (``pgalloc.demo``, imported only when asked for: the machine package does not
need the allocator otherwise).  Each gives a ``Storage``: the bytes, the VMCOREINFO,
the CPUs and whatever else is known, so that every command and tool finds an ASCE,
a prefix or the kernel's tables the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dat

from .. import dump as D
from ..errors import InvalidArgument, S390emuError
from ..machine import Machine
from ..memory import PhysicalMemory
from ..vmcoreinfo import LayoutError, read_vmcoreinfo, symbol

# The control register that holds each address space's ASCE.
SPACES = {"primary": 1, "secondary": 7, "home": 13}


class NoSuchCpu(S390emuError):
    """The storage has no CPU of that number; ``reason`` says so without the storage's name."""

    def __init__(self, name: str, reason: str):
        self.reason = reason
        super().__init__(f"{name}: {reason}")


@dataclass
class Storage:
    """Storage to inspect and what is known besides its bytes.

    ``name`` is the file's path, or ``demo, <version>``; ``cpus`` the CPUs whose prefix
    and control registers are known; ``machine`` the s390emu ``Machine`` over ``mem``
    when VMCOREINFO names one; ``info`` a dump's headers and notes; ``demo`` and
    ``version`` the demo and its allocator version when it is the demo.
    """

    name: str
    mem: PhysicalMemory
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    cpus: list[D.CpuInfo] = field(default_factory=list)
    machine: Machine | None = None
    info: D.DumpInfo | None = None
    demo: object | None = None
    version: str | None = None

    def cpu(self, n: int) -> D.CpuInfo:
        """CPU ``n`` (``NoSuchCpu`` when there is none)."""
        if not 0 <= n < len(self.cpus):
            raise NoSuchCpu(self.name, f"no CPU {n} (the {'demo' if self.demo else 'dump'} has {len(self.cpus)})")
        return self.cpus[n]

    def asce(self, cpu: int, space: str) -> int:
        """The ASCE of ``space`` (primary, secondary, home) in CPU ``cpu``'s control registers.

        >>> st = open_demo("v66")
        >>> st.asce(0, "primary") == st.demo.asce5, st.asce(1, "home") == st.machine.kernel_asce
        (True, True)
        """
        if space not in SPACES:
            raise InvalidArgument(f"no address space {space!r} (one of {', '.join(SPACES)})")
        c = self.cpu(cpu)
        if not c.has_crs:
            raise NoSuchCpu(self.name, f"the dump holds no control registers of CPU {cpu} "
                                       f"({self.info.format if self.info else 'no'} format: its PSW only)")
        return getattr(c, f"cr{SPACES[space]}")

    def default_space(self, cpu: int) -> str:
        """The address space CPU ``cpu``'s PSW ASC selects, the default of every ``--space``
        (translate, ptdump, tools/): where the CPU was translating when it stopped.
        Access-register mode counts as primary (ALET 0 designates the primary space) and
        so does a dump whose PSW is not known (mask 0).

        >>> open_demo("v66").default_space(0)
        'primary'
        """
        asc = self.cpu(cpu).asc
        return asc if asc in SPACES else "primary"

    def what(self) -> str:
        """What the storage is and is not, for a message that depends on it (no ASCE to
        start from, no kernel tables).

        >>> from s390emu.memory import PhysicalMemory
        >>> Storage("x.raw", PhysicalMemory(4096)).what()
        'x.raw: a raw image (--image), no CPU state'
        """
        if self.demo is not None:
            return f"the demo ({self.version})"
        if self.info is None:
            text = f"{self.name}: a raw image (--image)"
        elif self.info.format == "raw":
            held = ("an s390emu kernel's lowcores and VMCOREINFO" if self.machine else
                    "VMCOREINFO of no s390emu kernel" if self.vmcoreinfo else "no VMCOREINFO")
            text = f"{self.name}: not an ELF core (no ELF magic), taken as a raw image holding {held}"
        elif self.info.format.startswith("kdump"):
            text = f"{self.name}: a kdump-compressed dump ({self.info.format}), whose CPUs have a PSW but no control registers"
            return text
        else:
            text = f"{self.name}: an ELF core"
        return text + ("" if self.cpus else (", no CPU notes" if self.info and self.info.format == "elf"
                                              else ", no CPU state"))

    @property
    def kernel_root(self) -> int | None:
        """The kernel's top table, ``SYMBOL(swapper_pg_dir)`` (None when VMCOREINFO has none)."""
        if "SYMBOL(swapper_pg_dir)" not in self.vmcoreinfo:
            return None
        return symbol(self.vmcoreinfo, "swapper_pg_dir")

    def kernel_asce(self) -> int:
        """The kernel's ASCE as dump tools find it: ``swapper_pg_dir``, its type from entry
        0's TT (``dat.lenient_asce``); without the symbol, CR13 (the home space, the
        kernel's) of the first CPU that has one.  Raises ``LayoutError`` with neither and
        ``AddressingError`` when the table is outside storage.

        >>> st = open_demo("v66")
        >>> st.kernel_asce() == st.machine.kernel_asce
        True
        """
        root = self.kernel_root
        if root is not None:
            return dat.lenient_asce(self.mem, root)
        for c in self.cpus:
            if c.cr13:
                return c.cr13
        raise LayoutError(f"{self.name}: VMCOREINFO has no SYMBOL(swapper_pg_dir) and no CPU has a CR13")

    @property
    def linux(self) -> bool:
        """Whether the storage is a Linux kernel's that is no s390emu machine (its
        VMCOREINFO names a release that is no s390emu kernel's, even a corrupt one's)."""
        v = self.vmcoreinfo
        return (self.machine is None and "OSRELEASE" in v and "s390emu" not in v["OSRELEASE"]
                and not any(k.startswith("S390EMU_") for k in v))

    def cpu_asces(self) -> list[int]:
        """Every ASCE in a CPU's control registers (CR1, CR7, CR13), each once, in order."""
        return list(dict.fromkeys(a for c in self.cpus for a in (c.cr1, c.cr7, c.cr13) if a))


def open_dump(path: str | os.PathLike) -> Storage:
    """An ELF dump or raw image (``dump.load``); raises ``DumpError`` with one line."""
    d = D.load(path)
    return Storage(str(path), d.mem, d.vmcoreinfo, d.info.cpus, d.machine, d.info)


def open_image(path: str | os.PathLike) -> Storage:
    """A raw image as bare storage (address 0 = its first byte); raises ``ImageError``."""
    return Storage(str(path), PhysicalMemory.from_file(Path(path)))


def open_demo(version: str = "v66") -> Storage:
    """The built-in demo built with allocator ``version`` (a name ``pgalloc`` knows)."""
    from pgalloc.demo import build_demo

    demo = build_demo(version)
    m = demo.machine
    return Storage(f"demo, {version}", m.mem, read_vmcoreinfo(m.mem), D.CpuInfo.of_machine(m), m,
                   demo=demo, version=version)
