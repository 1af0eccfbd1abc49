"""``s390emu ptdump``: Linux's ``/sys/kernel/debug/kernel_page_tables`` for any ASCE.

The format is ``arch/s390/mm/dump_pagetables.c`` (v6.6, on the generic ptdump walker;
``reference/dat-spec.md`` §5.2): one line per run of equal (level, protection)::

    0x<start, 16 digits>-0x<end, 16 digits> <size %9lu><K|M|G|T|P|E> <LEVEL> <PROT>

LEVEL is the ptdump level of the entry that decides the run, named as the kernel names
them: ``ASCE`` (pgd = region-first), ``PGD`` (p4d = region-second), ``PUD``
(region-third), ``PMD`` (segment), ``PTE``.  PROT is ``I`` for an invalid PTE or an
empty (invalid) upper-level entry, else ``RO``/``RW`` (``_PAGE_PROTECT`` 0x200) and
``NX``/``X`` (``_PAGE_NOEXEC`` 0x100).  A line also ends at each ``---[ name ]---``
marker.  The walk covers 0 .. 2**(31 + 11 * ASCE type).

``ptdump_lines`` yields the same lines as the kernel's state machine would for the same
tables; runs of identical entries are found with numpy, so a 5-level space costs a few
table reads, not 2**53 page visits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import click
import numpy as np

from .. import dump as D
from ..memory import PhysicalMemory
from .common import EXIT_USAGE, HEX, allocator_version, echo_json, fail_file, hex64, refuse_overwrite

LEVEL_NAMES = ("ASCE", "PGD", "PUD", "PMD", "PTE")
_TT_LEVEL = {3: 0, 2: 1, 1: 2, 0: 3}          # table type (R1..ST) -> ptdump level
_SHIFT = {0: 53, 1: 42, 2: 31, 3: 20, 4: 12}  # ptdump level -> address bits per entry
_I = 0x400                                    # "invalid" as a protection value (kernel's)
_PROT_MASK = 0x300                            # _PAGE_PROTECT | _PAGE_NOEXEC
_UNITS = "KMGTPE"
_U64 = (1 << 64) - 1


def max_addr(asce: int) -> int:
    """The end of the space an ASCE of this type can map: ``1 << (type * 11 + 31)``."""
    return 1 << (((asce >> 2) & 3) * 11 + 31)


def _notes(mem: PhysicalMemory, asce: int, markers: list[int]) -> Iterator[tuple[int, int, int]]:
    """``(addr, level, prot)`` in address order, as ptdump's ``note_page`` is called."""
    top = (asce >> 2) & 3
    yield from _table(mem, asce & ~0xFFF, _TT_LEVEL[top], 0, asce & 3, markers)


def _emit_run(start: int, end: int, span: int, level: int, prot: int, markers: list[int]):
    yield start, level, prot
    for m in markers:                     # the kernel notices a marker at the next entry
        if start < m < end:
            at = start + -(-(m - start) // span) * span
            if at < end:
                yield at, level, prot


def _table(mem, origin: int, level: int, base: int, tl: int, markers):
    shift = _SHIFT[level]
    span = 1 << shift
    n = 256 if level == 4 else 2048
    limit = n if level == 4 else (tl + 1) * 512
    if not mem.contains(origin, n * 8):
        # A table outside storage: the walk cannot read it; report it as invalid.
        yield from _emit_run(base, base + n * span, span, level, _I, markers)
        return
    e = mem.table(origin, n).astype(np.uint64)
    if level == 4:
        descend = np.zeros(n, dtype=bool)
        prot = np.where(e & np.uint64(0x400), np.uint64(_I), e & np.uint64(_PROT_MASK))
    else:
        inval = (e & np.uint64(0x20)) != 0
        inval[limit:] = True
        large = ~inval & ((e & np.uint64(0x400)) != 0) & (level >= 2)   # PUD (2G) or PMD (1M) leaf
        descend = ~inval & ~large
        prot = np.where(inval, np.uint64(_I), e & np.uint64(_PROT_MASK))
    # group boundaries: every descend entry stands alone; leaves group by equal prot
    key = np.where(descend, np.uint64(0xFFFF), prot)
    change = np.ones(n, dtype=bool)
    change[1:] = (key[1:] != key[:-1]) | descend[1:] | descend[:-1]
    starts = np.flatnonzero(change).tolist()
    ends = starts[1:] + [n]
    for s, t in zip(starts, ends):
        va = base + s * span
        if descend[s]:
            child_tl = 3 if level == 3 else int(e[s]) & 3
            child = int(e[s]) & (~0x7FF if level == 3 else ~0xFFF)
            yield from _table(mem, child, level + 1, va, child_tl, markers)
        else:
            yield from _emit_run(va, base + t * span, span, level, int(prot[s]), markers)


def _size(delta_bytes: int) -> str:
    delta, unit = delta_bytes >> 10, 0
    while not delta & 0x3FF and unit + 1 < len(_UNITS):
        delta >>= 10
        unit += 1
    return f"{delta:9d}{_UNITS[unit]}"


def _prot_text(prot: int) -> str:
    if prot == _I:
        return "I"
    return ("RO " if prot & 0x200 else "RW ") + ("NX" if prot & 0x100 else "X")


def ptdump_lines(mem: PhysicalMemory, asce: int,
                 markers: list[tuple[int, str]] | None = None) -> Iterator[str]:
    """The kernel_page_tables lines for ``asce``; ``markers`` are ``(address, name)``.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20               # empty segment table
    >>> mem.write_u64(0x10000, 0x20000)                   # segment 0 -> page table
    >>> mem.table(0x20000, 256)[:] = 0x400
    >>> mem.write_u64(0x20000, 0x5000 | 0x100)            # one RW NX page
    >>> print("\\n".join(ptdump_lines(mem, 0x10003, [(0, "Demo")])))
    ---[ Demo ]---
    0x0000000000000000-0x0000000000001000         4K PTE RW NX
    0x0000000000001000-0x0000000000100000      1020K PTE I
    0x0000000000100000-0x0000000080000000      2047M PMD I
    """
    end = max_addr(asce)
    markers = list(markers or [(0, "Address Space Start"), (end, "Address Space End")])
    marks = [a for a, _ in markers[1:]] + [1 << 65]
    mi = 0
    cur = None                       # (start, level, prot)
    yield f"---[ {markers[0][1]} ]---"
    events = _notes(mem, asce, [a for a, _ in markers[1:]])
    for addr, level, prot in [*events, (end, -1, 0)]:
        if cur is None:
            cur = (addr, level, prot)
            continue
        start, clevel, cprot = cur
        if prot != cprot or level != clevel or addr >= marks[mi]:
            # unsigned long arithmetic: the end of a region-first space (2**64) prints as 0
            yield (f"0x{start:016x}-0x{addr & _U64:016x} {_size(addr - start)} "
                   f"{LEVEL_NAMES[clevel]} {_prot_text(cprot)}")
            while addr >= marks[mi]:
                mi += 1
                yield f"---[ {markers[mi][1]} ]---"
            cur = (addr, level, prot)


def runs(mem: PhysicalMemory, asce: int) -> list[dict]:
    """The runs as dicts (for ``--json``): start, end, size, level, prot."""
    out = []
    for line in ptdump_lines(mem, asce, [(0, "")]):
        if line.startswith("---"):
            continue
        rng, rest = line.split(" ", 1)
        a, b = rng.split("-")
        parts = rest.split()
        out.append({"start": a, "end": b, "size": int(b, 16) - int(a, 16),
                    "level": parts[1], "prot": " ".join(parts[2:])})
    return out


# -- the table tree as Graphviz DOT (also tools/pttree.py) ------------------------------------

_TABLE_NAMES = {0: "R1T", 1: "R2T", 2: "R3T", 3: "ST", 4: "PT"}


def table_tree_dot(mem: PhysicalMemory, asce: int, *, title: str | None = None) -> str:
    """The tree of tables ``asce`` reaches, as a Graphviz ``digraph``.

    One node per table (kind, origin, valid entries; a page table also says which 2K
    half of its frame it is), one edge per valid entry that points at a table, labelled
    with its index and the virtual address it starts; large frames are leaf boxes.
    Data pages are counted, not drawn.

    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20
    >>> mem.write_u64(0x10000, 0x20800); mem.table(0x20800, 256)[:] = 0x400
    >>> print(table_tree_dot(mem, 0x10003).splitlines()[3])
      t10000 [label="ST 0x10000\\n1 of 2048 valid", fillcolor="#cfe2f3"];
    """
    colours = {0: "#f4cccc", 1: "#fce5cd", 2: "#fff2cc", 3: "#cfe2f3", 4: "#d9ead3"}
    lines = ["digraph pttree {", "  rankdir=LR; node [shape=box, style=filled, fontname=monospace];",
             f'  label="{title or f"ASCE {asce:#018x}"}"; labelloc=t;']
    top = _TT_LEVEL[(asce >> 2) & 3]

    def walk(origin: int, level: int, base: int, tl: int) -> str:
        node = f"t{origin:x}"
        n = 256 if level == 4 else 2048
        if not mem.contains(origin, n * 8):
            lines.append(f'  {node} [label="{_TABLE_NAMES[level]} {origin:#x}\\noutside storage", '
                         'fillcolor="#999999"];')
            return node
        e = mem.table(origin, n)
        if level == 4:
            valid = int(((e & np.uint64(0x400)) == 0).sum())
            half = "upper" if origin & 0x800 else "lower"
            lines.append(f'  {node} [label="PT {origin:#x} ({half} 2K of frame {origin & ~0xFFF:#x})'
                         f'\\n{valid} of 256 pages valid", fillcolor="{colours[4]}"];')
            return node
        ok = np.flatnonzero((e & np.uint64(0x20)) == 0).tolist()
        ok = [i for i in ok if i < (tl + 1) * 512]
        lines.append(f'  {node} [label="{_TABLE_NAMES[level]} {origin:#x}\\n{len(ok)} of 2048 valid", '
                     f'fillcolor="{colours[level]}"];')
        shift = _SHIFT[level]
        for i in ok:
            ent = int(e[i])
            va = base + (i << shift)
            if ent & 0x400 and level >= 2:
                size = "2G" if level == 2 else "1M"
                frame = ent & (~0x7FFFFFFF if level == 2 else ~0xFFFFF) & 0xFFFF_FFFF_FFFF_FFFF
                leaf = f"f{node}_{i}"
                prot = _prot_text(ent & _PROT_MASK)
                lines.append(f'  {leaf} [label="{size} frame {frame:#x}\\n{prot}", shape=note, fillcolor="#eeeeee"];')
                lines.append(f'  {node} -> {leaf} [label="[{i:#x}] {va:#x}"];')
                continue
            child = ent & (~0x7FF if level == 3 else ~0xFFF) & 0xFFFF_FFFF_FFFF_FFFF
            cnode = walk(child, level + 1, va, 3 if level == 3 else ent & 3)
            lines.append(f'  {node} -> {cnode} [label="[{i:#x}] {va:#x}"];')
        return node

    walk(asce & ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF, top, 0, asce & 3)
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the command ----------------------------------------------------------------------------

def _open(dump_file: Path | None, demo: str | None, asce: int | None, cpu: int | None,
          space: str | None):
    """(mem, asce, markers, source name) from --dump / --demo and the ASCE options."""
    if dump_file is not None:
        try:
            d = D.load(dump_file)
        except D.DumpError as e:
            fail_file(str(e))
        mem, info, vmci = d.mem, d.info, d.vmcoreinfo
        name = str(dump_file)
        kernel = int(vmci["SYMBOL(swapper_pg_dir)"], 16) if "SYMBOL(swapper_pg_dir)" in vmci else None
        if asce is None and cpu is not None:
            try:
                c = info.cpu(cpu)
            except D.DumpError as e:
                raise click.BadParameter(str(e).split(": ", 1)[-1], param_hint="'--cpu'")
            asce = {"primary": c.cr1, "secondary": c.cr7, "home": c.cr13}[space or "home"]
        if asce is None:
            if kernel is None:
                raise click.UsageError("the dump has no SYMBOL(swapper_pg_dir): give --asce or --cpu")
            # The kernel ASCE: its type from entry 0's TT, as dump tools find it.
            if not mem.contains(kernel, 8):
                fail_file(f"{dump_file}: swapper_pg_dir {kernel:#x} is outside the dump's storage")
            asce = kernel | (mem.read_u64(kernel) & 0xC) | 3
    else:
        from pgalloc.demo import build_demo

        demo = allocator_version(demo, "'--demo'")
        d = build_demo(demo)
        mem, name = d.machine.mem, f"demo, {demo}"
        kernel = d.machine.swapper_pg_dir
        if asce is None and cpu is not None:
            if not 0 <= cpu < d.machine.nr_cpus:
                raise click.BadParameter(f"no CPU {cpu} (the demo has {d.machine.nr_cpus})", param_hint="'--cpu'")
            asce = d.machine.control_register(cpu, {"primary": 1, "secondary": 7, "home": 13}[space or "home"])
        if asce is None:
            asce = d.asce5
    if (asce & ~0xFFF) == kernel:
        ident_end = mem.size
        markers = [(0, "Identity Mapping Start"), (ident_end, "Identity Mapping End")]
    else:
        markers = [(0, "User Address Space Start"), (max_addr(asce), "User Address Space End")]
    return mem, asce, markers, name


@click.command("ptdump")
@click.option("--dump", "dump_file", type=click.Path(dir_okay=False, path_type=Path),
              help="An ELF dump or raw image (default ASCE: the kernel's, from SYMBOL(swapper_pg_dir)).")
@click.option("--demo", is_flag=False, flag_value="v66", default=None, metavar="[VERSION]",
              help="The built-in demo (default when no --dump; VERSION defaults to v66; "
                   "default ASCE: the demo process's 5-level ASCE).")
@click.option("--asce", type=HEX, help="The ASCE whose tables to list (hex).")
@click.option("--cpu", type=int, help="Take the ASCE from this CPU's control registers.")
@click.option("--space", type=click.Choice(["primary", "secondary", "home"]),
              help="Which control register with --cpu: CR1, CR7 or CR13 (default home).")
@click.option("--dot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table tree as Graphviz DOT to this file (render: dot -Tsvg).")
@click.option("--json", "as_json", is_flag=True, help="The runs as one JSON document.")
@click.option("--force", is_flag=True, help="Overwrite an existing --dot file.")
def ptdump(dump_file, demo, asce, cpu, space, dot, force, as_json):
    """List an address space the way Linux's kernel_page_tables file does.

    One line per run of pages with equal attributes: the range, its size, the level of
    the entry that decides it (ASCE=region-first, PGD=region-second, PUD=region-third,
    PMD=segment, PTE) and I (invalid) or RO/RW with X/NX.  The kernel's identity map
    is bracketed by "Identity Mapping" markers, any other ASCE by "User Address Space".

    \b
    Examples:
      s390emu ptdump --dump demo.vmcore
      s390emu ptdump --dump demo.vmcore --cpu 1 --space primary
      s390emu ptdump --demo --dot tree.dot && dot -Tsvg tree.dot > tree.svg
    """
    if dump_file is not None and demo is not None:
        raise click.UsageError("--dump and --demo exclude each other")
    if asce is not None and cpu is not None:
        raise click.UsageError("--asce and --cpu exclude each other")
    if space is not None and cpu is None:
        raise click.UsageError("--space needs --cpu")
    if asce is not None and asce & 0x20:
        click.echo(f"s390emu: ASCE {asce:#x} is a real-space designation: no tables to list", err=True)
        raise SystemExit(EXIT_USAGE)
    if dot is not None:
        refuse_overwrite(dot, force, "--dot")
    mem, asce, markers, name = _open(dump_file, demo or ("v66" if dump_file is None else None), asce, cpu, space)
    if dot is not None:
        try:
            dot.write_text(table_tree_dot(mem, asce, title=f"ASCE {asce:#018x} ({name})"))
        except OSError as e:
            fail_file(f"{dot}: {e.strerror or e}")
    if as_json:
        echo_json({"asce": hex64(asce), "source": name, "runs": runs(mem, asce)})
        return
    for line in ptdump_lines(mem, asce, markers):
        click.echo(line)
