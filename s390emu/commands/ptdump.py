"""``s390emu ptdump``: Linux's ``/sys/kernel/debug/kernel_page_tables`` for any ASCE.

The lines and the table tree come from ``s390emu.inspect.ptdump``; this module finds
the storage and the ASCE the options name and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..dump import DumpError
from ..inspect import NoSuchCpu, first_table_outside, markers, open_dump, ptdump_lines, table_tree_dot
from ..inspect.kernel_layout import markers_6_1, modelled
from ..inspect.kernel_symbols import KernelSymbols, SymbolFileError
from ..inspect.memmap import KernelSpace
from ..inspect.ptdump import GarbageTree, iter_runs
from ..memory import AddressingError
from ..output import OutputError, write_text
from ..vmcoreinfo import LayoutError
from .common import EXIT_INCOMPLETE, EXIT_USAGE, HEX, demo_storage, echo_json, fail_file, hex64, refuse_overwrite


def _open(dump_file: Path | None, demo: str | None, asce: int | None, cpu: int | None,
          space: str | None, vmlinux: Path | None = None):
    """(mem, asce, markers, source name) from --dump / --demo and the ASCE options."""
    if dump_file is not None:
        try:
            st = open_dump(dump_file)
        except DumpError as e:
            fail_file(str(e))
    else:
        st = demo_storage(demo, "'--demo'")
    try:
        kernel = st.kernel_root
    except LayoutError as e:                      # a SYMBOL(swapper_pg_dir) that is no number
        fail_file(f"{st.name}: {e}")
    try:
        if asce is None and cpu is not None:
            asce = st.asce(cpu, space or st.default_space(cpu))
        if asce is None:
            if st.demo is not None:
                asce = st.demo.asce5
            else:
                asce = st.kernel_asce()           # swapper_pg_dir, else a CPU's CR13
                if kernel is None:
                    kernel = asce & ~0xFFF
    except LayoutError:
        raise click.UsageError(f"{st.what()}, no SYMBOL(swapper_pg_dir) and no CR13: give --asce or --cpu")
    except NoSuchCpu as e:
        raise click.BadParameter(e.reason, param_hint="'--cpu'")
    except AddressingError:
        fail_file(f"{dump_file}: swapper_pg_dir {kernel:#x} is outside the dump's storage")
    marks = markers(st.mem, asce, kernel)
    if st.linux and kernel is not None and (asce & ~0xFFF) == kernel:
        marks = _linux_markers(st, asce, vmlinux, marks)
    return st.mem, asce, marks, st.name


def _linux_markers(st, asce: int, vmlinux: Path | None, fallback: list) -> list:
    """The markers a real kernel's ptdump prints for its own space, where its release is
    modelled (``inspect.kernel_layout``); a warning line names what could not be placed."""
    release = st.vmcoreinfo.get("OSRELEASE", "?")
    if not modelled(release):
        click.echo(f"s390emu: warning: the ptdump markers of Linux {release} are not modelled (6.1 is): "
                   "the identity mapping is marked over all storage", err=True)
        return fallback
    try:
        sym = KernelSymbols(KernelSpace(st.mem, asce), st.vmcoreinfo, vmlinux)
    except SymbolFileError as e:
        fail_file(f"--vmlinux: {e}")
    marks, unplaced = markers_6_1(sym, st.vmcoreinfo)
    if unplaced:
        hint = "" if vmlinux is not None else " (--vmlinux FILE, the debug vmlinux or System.map, has them)"
        click.echo(f"s390emu: warning: no address for {', '.join(unplaced)} from {' + '.join(sym.sources) or 'no source'}: "
                   f"not marked{hint}", err=True)
    return marks


@click.command("ptdump")
@click.option("--dump", "dump_file", type=click.Path(path_type=Path),
              help="An ELF dump or raw image (default ASCE: the kernel's, from SYMBOL(swapper_pg_dir)).")
@click.option("--demo", is_flag=False, flag_value="v66", default=None, metavar="[VERSION]",
              help="The built-in demo (default when no --dump; VERSION defaults to v66; "
                   "default ASCE: the demo process's 5-level ASCE).")
@click.option("--asce", type=HEX, help="The ASCE whose tables to list (hex).")
@click.option("--cpu", type=int, help="Take the ASCE from this CPU's control registers.")
@click.option("--space", type=click.Choice(["primary", "secondary", "home"]),
              help="Which control register with --cpu: CR1, CR7 or CR13 (default the one the CPU's PSW selects).")
@click.option("--vmlinux", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A real kernel's symbols (its debug vmlinux, or System.map) to place the areas "
                   "dump_pagetables.c marks; without it: VMCOREINFO and kallsyms in memory.")
@click.option("--dot", type=click.Path(path_type=Path),
              help="Also write the table tree as Graphviz DOT to this file (render: dot -Tsvg).")
@click.option("--json", "as_json", is_flag=True, help="The runs as one JSON document.")
@click.option("--force", is_flag=True, help="Overwrite an existing --dot file.")
def ptdump(dump_file, demo, asce, cpu, space, vmlinux, dot, force, as_json):
    """List an address space the way Linux's kernel_page_tables file does.

    One line per run of pages with equal attributes: the range, its size, the level of
    the entry that decides it (ASCE=region-first, PGD=region-second, PUD=region-third,
    PMD=segment, PTE) and I (invalid) or RO/RW with X/NX.  The kernel's identity map
    is bracketed by "Identity Mapping" markers, any other ASCE by "User Address Space".

    Exit status: 0 listed, 1 an unreadable dump or --dot path, 2 bad usage, 5 the walk
    stopped (the ASCE designates data: tables reached over and over; the lines before
    the stop are printed, and the JSON says "complete": false).

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
    mem, asce, marks, name = _open(dump_file, demo or ("v66" if dump_file is None else None), asce, cpu, space, vmlinux)
    try:
        outside = first_table_outside(mem, asce)
    except GarbageTree:
        outside = None                  # the listing stops at the same place and says so
    if outside is not None:
        click.echo(f"s390emu: warning: the {outside.name} at {outside.origin:#x} (for {outside.base:#x}-"
                   f"{outside.base + outside.length * outside.span - 1:#x}) lies outside storage "
                   f"({mem.size:#x} bytes): listed as invalid; DAT raises an addressing exception (0x05) there",
                   err=True)
    if dot is not None:
        try:
            write_text(dot, table_tree_dot(mem, asce, title=f"ASCE {asce:#018x} ({name})"), force, "--dot")
        except OutputError as e:
            fail_file(str(e))
        except GarbageTree as e:
            _stopped(e, "no --dot file written")
    if as_json:
        listed, stop = [], None
        try:
            for run in iter_runs(mem, asce):
                listed.append(run)
        except GarbageTree as e:
            stop = e
        echo_json({"asce": hex64(asce), "source": name, "runs": listed, "complete": stop is None,
                   "stopped_at": None if stop is None else hex64(stop.address)})
        if stop is not None:
            _stopped(stop, "the runs listed are those before it")
        return
    try:
        for line in ptdump_lines(mem, asce, marks):
            click.echo(line)
    except GarbageTree as e:
        _stopped(e, "the lines above are those before it")


def _stopped(e: GarbageTree, what: str):
    """One line for a walk that stopped in a garbage tree, and exit 5: not a full listing."""
    click.echo(f"s390emu: {e}; {what}", err=True)
    raise SystemExit(EXIT_INCOMPLETE)
