"""Where a command's storage comes from: the built-in demo, a raw image, or a dump."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from ..memory import ImageError, PhysicalMemory
from .common import allocator_version, fail_file

DEMO_HELP = """\b
The built-in demo (s390emu demo prints how it was built):
  ASCEs       the default is the demo process's 5-level ASCE; the
              3-level process's ASCE is printed by `s390emu demo`
  0x1000000   text, 16 read-only pages (--write raises 0x04)
  0x10000000  heap, 64 pages, its page table in an upper 2K half;
              0x10008000 is an unmapped hole (0x11)
  0x20000000  a segment with no page table (0x10)
  0x30000000  a 1 MiB EDAT-1 frame (after a THP collapse)
  0x3fffffff000  the stack page, top of the 3-level (4 TiB) space
  0x40000000000  4-level range (needs the R2 table, 5-level ASCE)
  0x20000000000000  5-level range (needs the R1 table)
"""


@dataclass
class Source:
    """Storage to work on, and the defaults it implies."""

    name: str
    mem: PhysicalMemory
    default_asce: int | None = None
    prefix: int = 0
    demo: object | None = None


SPACES = {"primary": 1, "secondary": 7, "home": 13}


def source_options(f):
    """Add ``--image``/``--dump``/``--demo`` (+ ``--cpu``, ``--space``), passed on as ``source``."""
    @click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
                  help="A raw storage image: absolute address 0 is the first byte; "
                       "its size must be a multiple of 4096.")
    @click.option("--dump", "dump_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="An ELF core dump (or raw image) written by `s390emu dump save` or kdump.")
    @click.option("--cpu", type=click.IntRange(min=0), default=None,
                  help="With --dump: the CPU whose control registers give the ASCE and prefix (default 0).")
    @click.option("--space", type=click.Choice(list(SPACES)), default=None,
                  help="With --dump: primary (CR1), secondary (CR7) or home (CR13); default primary.")
    @click.option("--demo", "demo_version", default=None, metavar="VERSION",
                  help="Build the demo with this allocator version (v515, v64, seed, v66, v67, or "
                       "a version file; default v66). Used when no --image is given.")
    @functools.wraps(f)
    def wrapper(*args, image, dump_file, cpu, space, demo_version, **kwargs):
        if sum(x is not None for x in (image, dump_file, demo_version)) > 1:
            raise click.UsageError("--image, --dump and --demo exclude each other")
        if dump_file is None and (cpu is not None or space is not None):
            raise click.UsageError("--cpu and --space go with --dump")
        return f(*args, source=(image, dump_file, cpu or 0, space or "primary", demo_version), **kwargs)
    return wrapper


def load_source(source: tuple) -> Source:
    """Open what ``source_options`` collected; a bad file exits 1 with one line."""
    image, dump_file, cpu, space, demo_version = source
    if dump_file is not None:
        from .. import dump as D

        try:
            d = D.load(dump_file)
        except D.DumpError as e:
            fail_file(str(e))
        mem, info = d.mem, d.info
        cpus = {c.cpu: c for c in info.cpus}
        if not cpus:                                   # a raw image: no CPU state
            return Source(f"{dump_file}", mem)
        if cpu not in cpus:
            raise click.BadParameter(f"the dump has no CPU {cpu} (it has {len(cpus)})", param_hint="'--cpu'")
        c = cpus[cpu]
        asce = {"primary": c.cr1, "secondary": c.cr7, "home": c.cr13}[space]
        return Source(f"{dump_file}, CPU {cpu} {space}", mem, asce, c.prefix)
    if image is not None:
        try:
            return Source(str(image), PhysicalMemory.from_file(image))
        except ImageError as e:
            fail_file(str(e))
    from pgalloc.demo import build_demo

    version = allocator_version(demo_version or "v66", "'--demo'")
    demo = build_demo(version)
    return Source(f"demo, {version}", demo.machine.mem, demo.asce5, 0, demo)


def dump_or_demo(dump_file: Path | None, version: str | None) -> tuple[object, dict, str]:
    """A dump's storage (``Machine`` or ``PhysicalMemory``), its VMCOREINFO and a name for
    messages; without a dump, the demo built with ``version`` (default v66).  With a dump,
    ``version`` may only be a version file: the patch whose allocator wrote the dump
    (loaded, so that its name in the dump is known); a built-in one is named by the dump."""
    from .. import dump as D
    from ..machine import read_vmcoreinfo

    if dump_file is not None and version is not None:
        if not version.endswith(".py"):
            raise click.UsageError("--dump names its own allocator version: --version goes with --dump "
                                   "only as a version file (the patch that wrote the dump)")
        allocator_version(version, "'--version'")
    if dump_file is None:
        from pgalloc.demo import build_demo

        version = allocator_version(version or "v66", "'--version'")
        machine = build_demo(version).machine
        return machine, read_vmcoreinfo(machine.mem), f"the demo ({version})"
    try:
        d = D.load(dump_file)
    except D.DumpError as e:
        fail_file(str(e))
    return d.machine or d.mem, d.vmcoreinfo, str(dump_file)
