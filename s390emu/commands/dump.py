"""``s390emu dump save`` / ``s390emu dump info``: write and describe s390x memory dumps."""

from __future__ import annotations

from pathlib import Path

import click

from .. import dump as D
from ..output import path_kind
from .common import allocator_version, demo_storage, echo_json, fail_file, refuse_overwrite, version_code


@click.group("dump")
def dump_group() -> None:
    """Write and inspect s390x memory dumps (ELF core files, as kdump and zgetdump write them).

    A dump holds the whole storage, one note per CPU with its prefix and control
    registers (CR1/CR7/CR13 are the primary, secondary and home ASCEs) and the
    VMCOREINFO text.  drgn, crash and readelf open it; every s390emu command that
    takes --dump also accepts a raw image (absolute address 0 = first byte).

    \b
    Examples:
      s390emu dump save demo.vmcore
      s390emu dump info demo.vmcore
      drgn -c demo.vmcore      (no vmlinux needed to read memory)
    """


@dump_group.command("save")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--version", "version", default=None, metavar="V",
              help="Allocator version (v515, v64, seed, v66, v67, or a version file: a patch): "
                   "of the demo (default v66), or instead of the scenario file's.")
@click.option("--scenario", type=click.Path(path_type=Path), default=None,
              help="Save the state a scenario file (as for `s390emu explore`) leaves, run once in "
                   "order: each CPU's operations in turn, then the RCU callbacks.")
@click.option("--from", "from_file", type=click.Path(path_type=Path), default=None,
              help="Re-save an existing dump or raw image as an ELF dump.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Describe the written dump as one JSON document.")
def save_cmd(file: Path, version: str, scenario: Path | None, from_file: Path | None, force: bool,
             as_json: bool) -> None:
    """Save the demo's memory (or a scenario's, or an image) as an ELF dump FILE.

    The write is atomic (a temporary file, fsync, rename): FILE is either the old
    file or the complete new dump.  An existing FILE is kept unless --force.
    Long all-zero runs are not written (their PT_LOAD has p_filesz < p_memsz).

    \b
    Examples:
      s390emu dump save demo.vmcore
      s390emu dump save --version v64 --force old.vmcore
      s390emu dump save --from mem.raw mem.vmcore
      s390emu dump save --scenario examples/scenarios/defer-both-halves.toml --version seed seed.vmcore
    """
    if scenario is not None and from_file is not None:
        raise click.UsageError("--scenario and --from exclude each other")
    refuse_overwrite(file, force)
    if from_file is not None:
        try:
            loaded = D.load(from_file)
            source = loaded.machine or loaded.mem
        except D.DumpError as e:
            fail_file(str(e))
    elif scenario is not None:
        source = _scenario_machine(scenario, version)
    else:
        source = _demo_machine(version)
    try:
        info = D.save(file, source, force=force)
    except D.DumpError as e:
        fail_file(str(e))
    if as_json:
        echo_json(info.to_json())
    else:
        written = sum(l.filesz for l in info.loads)
        click.echo(f"{file}: ELF s390x dump, {info.mem_size >> 20} MiB of storage "
                   f"({written >> 10} KiB written, {len(info.loads)} PT_LOAD), {len(info.cpus)} CPUs")


def _demo_machine(version: str | None):
    return demo_storage(version or "v66", "'--version'").machine


def _scenario_machine(path: Path, version: str | None):
    """The machine a scenario leaves when run once in order (a failed check stops it there)."""
    import dataclasses

    from pgalloc.explore import run_in_order
    from pgalloc.explore.scenario import ScenarioError, load_scenario

    kind = path_kind(path)
    if kind is not None:                              # reading a fifo would wait forever
        fail_file(f"{path}: is {kind}, not a scenario file")
    try:
        setup = load_scenario(path)
    except OSError as e:
        fail_file(f"{path}: {e.strerror or e}")
    except (ScenarioError, ValueError) as e:
        fail_file(f"{path}: {e}")
    setup = dataclasses.replace(setup, version=allocator_version(version or setup.version, "'--version'"))
    with version_code(setup.version):
        k, found = run_in_order(setup)
    if found is not None:
        click.echo(f"s390emu: the scenario stopped at a violation ({found.name}); saving the state "
                   f"it left (`s390emu check --dump` names it)", err=True)
    return k.machine


@dump_group.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout; addresses as \"0x...\".")
@click.option("--all-keys", is_flag=True, help="List every VMCOREINFO key (default: the ones tools need).")
def info_cmd(file: Path, as_json: bool, all_keys: bool) -> None:
    """Describe a dump like `zgetdump -i`: format, memory, CPUs, VMCOREINFO.

    Reads only the headers and notes of an ELF dump (nothing is copied); a raw image
    is mapped to find its lowcores.  A corrupt file exits 1 with one line naming
    what is wrong.

    \b
    Examples:
      s390emu dump info demo.vmcore
      s390emu dump info --json demo.vmcore | jq '.cpus[1].cr1'
    """
    try:
        info = D.read_info(file)
    except D.DumpError as e:
        fail_file(str(e))
    if as_json:
        echo_json(info.to_json())
        return
    click.echo(format_info(info, all_keys=all_keys))


_KEYS = ("OSRELEASE", "PAGESIZE", "SYMBOL(swapper_pg_dir)", "SYMBOL(mem_map)", "SIZE(page)",
         "OFFSET(page.flags)", "OFFSET(page._refcount)", "OFFSET(page._mapcount)",
         "SIZE(mm_struct)", "OFFSET(mm_struct.pgd)", "OFFSET(mm_struct.context.asce)")


def _size(n: int) -> str:
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if n >= 1 << shift and not n % (1 << shift):
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _arch(info: D.DumpInfo) -> str:
    """The architecture, as far as the file says: an ELF core's header is s390x's (the
    reader checks it), a raw image is s390x only when it holds VMCOREINFO."""
    if info.format != "raw" or info.vmcoreinfo:
        return "s390x (64 bit)"
    return "unknown: not an ELF core (no ELF magic) and no VMCOREINFO; taken as a raw image"


def format_info(info: D.DumpInfo, *, all_keys: bool = False) -> str:
    """The text ``dump info`` prints (zgetdump -i's layout)."""
    v = info.vmcoreinfo
    lines = ["General dump info:",
             f"  Dump format........: {info.format}",
             f"  Dump file..........: {info.path} ({info.file_size} bytes)",
             f"  UTS kernel release.: {v.get('OSRELEASE', '(unknown)')}",
             f"  System arch........: {_arch(info)}",
             f"  CPU count (online).: {len(info.cpus)}",
             f"  Dump memory range..: {_size(info.mem_size)}",
             "",
             "Memory map:"]
    for l in info.loads:
        end = l.paddr + l.memsz - 1
        data = "" if l.filesz == l.memsz else (
            " (zero, not in file)" if not l.filesz else f" ({_size(l.filesz)} in file, rest zero)")
        lines.append(f"  {l.paddr:016x} - {end:016x} ({_size(l.memsz)}){data}")
    lines += ["", "CPUs:"]
    if not info.cpus:
        lines.append("  (none recorded)")
    for c in info.cpus:
        lines.append(f"  CPU {c.cpu}: prefix {c.prefix:#010x}  CR1 (primary) {c.cr1:016x}  "
                     f"CR7 (secondary) {c.cr7:016x}  CR13 (home) {c.cr13:016x}")
    where = {"note": " (the VMCOREINFO note)", "storage": " (in storage, where the lowcore's vmcore_info points)"}
    lines += ["", f"VMCOREINFO{where.get(info.vmcoreinfo_source, '')}:" if v else "VMCOREINFO: (none)"]
    keys = list(v) if all_keys else [k for k in _KEYS if k in v]
    for k in keys:
        lines.append(f"  {k}={v[k]}")
    if not all_keys and len(v) > len(keys):
        lines.append(f"  ... {len(v) - len(keys)} more keys (--all-keys)")
    return "\n".join(lines)
