"""``s390emu translate``: walk virtual addresses through an ASCE, crash-``vtop`` style."""

from __future__ import annotations

import sys

import click

import dat
from dat.entries import decode, flags_mask

from .common import EXIT_TRANSLATION, HEX, echo_json, hex64
from .source import DEMO_HELP, load_source, source_options


def _walk_lines(step_list: tuple[dat.Step, ...]) -> list[str]:
    lines = []
    if step_list:
        lines.append(f"PAGE DIRECTORY: {step_list[0].table:016x}")
    for s in step_list:
        mask, width = flags_mask(s.level, s.entry)
        lines.append(f"{s.level:>5}: {s.entry_addr:016x} => {s.entry:016x} (flags = {s.entry & mask:0{width}x})"
                     f"  [table {s.table:016x} index {s.index:#x}]")
        lines.append(f"       flags in binary : {decode(s.level, s.entry)}")
    return lines


def _text(vaddr: int, result: dat.Translation | dat.TranslationException) -> str:
    lines = ["VIRTUAL           PHYSICAL"]
    if isinstance(result, dat.Translation):
        lines.append(f"{vaddr:016x}  {result.absolute:x}")
        lines.append("")
        lines += _walk_lines(result.path)
        if result.page_size:
            base = result.real & ~(result.page_size - 1)
            label = {4096: "PAGE", 1 << 20: "SEGMENT FRAME", 1 << 31: "REGION FRAME"}[result.page_size]
            lines.append(f" {label}: {base:016x}")
        else:
            lines.append(" (real-space ASCE: no translation)")
        prot = "protected" if result.protected else "writable"
        lines.append(f" REAL: {result.real:016x}  ABSOLUTE: {result.absolute:016x}  ({prot})")
    else:
        lines.append(f"{vaddr:016x}  (not mapped)")
        lines.append("")
        lines += _walk_lines(result.path)
        where = f" at {result.level}" + (f" {result.entry_addr:016x}" if result.entry_addr is not None else "")
        lines.append(f" {result.name} exception ({result.code:#04x}){where}")
    return "\n".join(lines)


def _json(vaddr: int, result: dat.Translation | dat.TranslationException) -> dict:
    doc: dict = {"vaddr": hex64(vaddr)}
    path = [{"level": s.level, "table": hex64(s.table), "index": s.index,
             "entry_addr": hex64(s.entry_addr), "entry": hex64(s.entry)} for s in result.path]
    if isinstance(result, dat.Translation):
        doc.update(real=hex64(result.real), absolute=hex64(result.absolute),
                   page_size=result.page_size, protected=result.protected)
    else:
        doc["exception"] = {"code": f"{result.code:#04x}", "name": result.name, "level": result.level,
                            "entry_addr": hex64(result.entry_addr) if result.entry_addr is not None else None}
    doc["path"] = path
    return doc


@click.command(epilog=DEMO_HELP)
@source_options
@click.option("--asce", type=HEX, help="The ASCE to translate through (hex). Default: the demo's 5-level "
              "ASCE, or with --dump the ASCE in the chosen CPU's control register.")
@click.option("--no-edat1", "edat1", flag_value=False, default=True, help="Disable EDAT-1 (1M frames, region P).")
@click.option("--no-edat2", "edat2", flag_value=False, default=True, help="Disable EDAT-2 (2G frames).")
@click.option("--prefix", type=HEX, default=None, help="Prefix register for real-to-absolute (default 0, "
              "or the CPU's prefix with --dump).")
@click.option("--write", "access", flag_value="write", default="read", help="Translate for a store "
              "(DAT protection raises 0x04).")
@click.option("--lenient", is_flag=True, help="Read tables as dump tools do: levels from entry 0's TT, "
              "table types unchecked.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout; 64-bit values as \"0x...\".")
@click.argument("vaddrs", metavar="VADDR...", nargs=-1, required=True, type=HEX)
def translate(source, asce, edat1, edat2, prefix, access, lenient, as_json, vaddrs):
    """Translate virtual addresses through region, segment and page tables.

    Prints a crash-vtop-style walk per address (each level: entry address => entry,
    its flags, table origin and index), then the real and absolute address, or the
    program-interruption code that DAT raises.  Exit 0 when every address translated,
    3 when any raised a translation exception, 2 for bad usage, 1 for a bad file.

    \b
    Examples:
      s390emu translate 0x10000000 0x1_0000_0000
      s390emu translate --json --write 0x3ff_ffff_f000
      s390emu translate --image mem.raw --asce 0x10007 0x12345678abc
      s390emu dump save demo.vmcore && s390emu translate --dump demo.vmcore --cpu 1 0x10000000
    """
    src = load_source(source)
    if asce is None:
        asce = src.default_asce
        if asce is None:
            raise click.UsageError(f"{src.what}, so --asce is required")
    pfx = src.prefix if prefix is None else prefix
    if pfx & ~0x7FFFE000:
        raise click.BadParameter(f"{pfx:#x} is not a prefix (8K-aligned, below 2G)", param_hint="'--prefix'")
    results = []
    for v in vaddrs:
        try:
            results.append(dat.translate(src.mem, asce, v, access=access, edat1=edat1, edat2=edat2,
                                         prefix=pfx, lenient=lenient))
        except dat.TranslationException as e:
            results.append(e)
    if as_json:
        echo_json({"asce": hex64(asce), "prefix": hex64(pfx), "source": src.name,
                   "results": [_json(v, r) for v, r in zip(vaddrs, results)]})
    else:
        click.echo(f"ASCE {asce:016x} ({src.name})\n")
        click.echo("\n\n".join(_text(v, r) for v, r in zip(vaddrs, results)))
    if any(isinstance(r, dat.TranslationException) for r in results):
        sys.exit(EXIT_TRANSLATION)
