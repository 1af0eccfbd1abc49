"""The options that say where a command's storage comes from (the built-in demo, a raw
image, or a dump), opened through ``s390emu.inspect.source``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from ..dump import DumpError
from ..inspect import SPACES, Storage, open_dump, open_image
from ..memory import ImageError, PhysicalMemory
from .common import allocator_version, demo_storage, fail_file

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
    """The storage the options chose, and the ASCE and prefix they imply."""

    name: str
    mem: PhysicalMemory
    default_asce: int | None = None
    prefix: int = 0
    what: str = ""              # what the storage is, when it gives no ASCE (Storage.what)


def source_options(f):
    """Add ``--image``/``--dump``/``--demo`` (+ ``--cpu``, ``--space``), passed on as ``source``."""
    @click.option("--image", type=click.Path(path_type=Path),
                  help="A raw storage image: absolute address 0 is the first byte; "
                       "its size must be a multiple of 4096.")
    @click.option("--dump", "dump_file", type=click.Path(path_type=Path),
                  help="An ELF core dump (or raw image) written by `s390emu dump save` or kdump.")
    @click.option("--cpu", type=click.IntRange(min=0), default=None,
                  help="With --dump: the CPU whose control registers give the ASCE and prefix (default 0).")
    @click.option("--space", type=click.Choice(list(SPACES)), default=None,
                  help="With --dump: primary (CR1), secondary (CR7) or home (CR13); default the one the CPU's PSW selects.")
    @click.option("--demo", "demo_version", default=None, metavar="VERSION",
                  help="Build the demo with this allocator version (v515, v64, seed, v66, v67, or "
                       "a version file; default v66). Used when no --image is given.")
    @functools.wraps(f)
    def wrapper(*args, image, dump_file, cpu, space, demo_version, **kwargs):
        if sum(x is not None for x in (image, dump_file, demo_version)) > 1:
            raise click.UsageError("--image, --dump and --demo exclude each other")
        if dump_file is None and (cpu is not None or space is not None):
            raise click.UsageError("--cpu and --space go with --dump")
        return f(*args, source=(image, dump_file, cpu or 0, space, demo_version), **kwargs)
    return wrapper


def load_source(source: tuple) -> Source:
    """Open what ``source_options`` collected; a bad file exits 1 with one line."""
    image, dump_file, cpu, space, demo_version = source
    if dump_file is not None:
        try:
            st = open_dump(dump_file)
        except DumpError as e:
            fail_file(str(e))
        if not st.cpus:                                # a raw image: no CPU state
            return Source(st.name, st.mem, what=st.what())
        if cpu >= len(st.cpus):
            raise click.BadParameter(f"the dump has no CPU {cpu} (it has {len(st.cpus)})", param_hint="'--cpu'")
        if not st.cpu(cpu).has_crs:                    # kdump-compressed: a PSW, no control registers
            return Source(st.name, st.mem, prefix=st.cpu(cpu).prefix, what=st.what())
        space = space or st.default_space(cpu)
        return Source(f"{st.name}, CPU {cpu} {space}", st.mem, st.asce(cpu, space), st.cpu(cpu).prefix)
    if image is not None:
        try:
            st = open_image(image)
        except ImageError as e:
            fail_file(str(e))
        return Source(st.name, st.mem, what=st.what())
    st = demo_storage(demo_version or "v66", "'--demo'")
    return Source(st.name, st.mem, st.demo.asce5)


def dump_or_demo(dump_file: Path | None, version: str | None) -> tuple[Storage, str]:
    """A dump's storage, or without a dump the demo built with ``version`` (default v66),
    and a name for messages.  With a dump, ``version`` may only be a version file: the
    patch whose allocator wrote the dump (loaded, so that its name in the dump is
    known); a built-in one is named by the dump."""
    if dump_file is not None and version is not None:
        if not version.endswith(".py"):
            raise click.UsageError("--dump names its own allocator version: --version goes with --dump "
                                   "only as a version file (the patch that wrote the dump)")
        allocator_version(version, "'--version'")
    if dump_file is None:
        st = demo_storage(version or "v66", "'--version'")
        return st, f"the demo ({st.version})"
    try:
        return open_dump(dump_file), str(dump_file)
    except DumpError as e:
        fail_file(str(e))
