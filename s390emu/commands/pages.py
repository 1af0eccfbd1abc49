"""``s390emu pages``: the page-table frames of a dump, decoded from the dump alone.

The decoding is ``s390emu.inspect.pagetables`` (from VMCOREINFO, as makedumpfile
would); this module prints it as a table, as JSON or as an SVG fragment map
(``s390emu.inspect.fragmap``, also ``tools/fragmap.py``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..inspect import fragmap_svg, live_mms, storage_frames
from ..inspect.pagetables import bit_names, half_state, half_states, is_crst, owners
from ..output import OutputError, write_text
from ..vmcoreinfo import LayoutError
from .common import echo_json, fail_file, hex64, refuse_overwrite
from .source import dump_or_demo


def format_table(frames: list[dict]) -> str:
    """The table ``pages`` prints: one line per frame."""
    lines = [f"{'FRAME':>16}  {'PAGE':>16}  {'BYTE':<4} {'BITS':<12} {'LOWER 2K':<10} {'UPPER 2K':<10} "
             f"{'REFCNT':>6} LISTED ACTIVE OWNER"]
    for f in frames:
        lo, up = half_states(f)
        asces = dict.fromkeys(a for h in f["halves"] for a in h["asces"]) or dict.fromkeys(f["crst_asces"])
        own = (",".join(f"mm {o:#x}" for o in owners(f)) or ",".join(f"asce {a:#x}" for a in asces)) or "-"
        lines.append(f"{f['frame']:016x}  {f['page']:016x}  {f['byte']:#04x} {bit_names(f['byte']):<12} {lo:<10} "
                     f"{up:<10} {f['refcount']:>6} {_flag(f['listed']):<6} {_flag(f['active']):<6} {own}")
    return "\n".join(lines)


def _flag(value: bool | None) -> str:
    """yes, - or ? (unknown: a Linux dump's lists without its debug info)."""
    return "?" if value is None else "yes" if value else "-"


@click.command("pages")
@click.option("--dump", "dump_file", type=click.Path(path_type=Path),
              help="An ELF dump or raw image of an s390emu machine. Default: the built-in demo.")
@click.option("--version", "version", metavar="V",
              help="Without --dump: build the demo with this allocator version (v515, v64, seed, v66, "
                   "v67, or a version file; default v66).  With --dump: the version file of the patch "
                   "that wrote the dump.")
@click.option("--all", "show_all", is_flag=True, help="Also list CRST (region/segment table) frames.")
@click.option("--svg", type=click.Path(path_type=Path),
              help="Draw the fragment map as SVG to this file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --svg file.")
@click.option("--vmlinux", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A Linux dump: the kernel's debug vmlinux, read with drgn, for the mms (their ASCE and "
                   "pgtable_list: OWNER and LISTED).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def pages(dump_file, version, show_all, svg, force, vmlinux, as_json):
    """Decode the page-table frames of a dump from its bytes, as makedumpfile would.

    For every page whose struct page says PageTable (found through the dump's
    VMCOREINFO offsets): the fragment byte and what it says of each 2K half
    (allocated A, RCU-pending P, deferred H, free), the refcount, PG_active, whether
    the page is on its mm's pgtable_list, and the mm whose tables reach each half.

    \b
    Examples:
      s390emu pages                      (the built-in demo, allocator v66)
      s390emu pages --version seed
      s390emu pages --dump demo.vmcore
      s390emu pages --dump demo.vmcore --svg frames.svg
      s390emu pages --dump demo.vmcore --json | jq '.frames[] | select(.listed)'
    """
    if svg is not None:
        refuse_overwrite(svg, force, "--svg")
    st, name = dump_or_demo(dump_file, version)
    fragments, mms = True, None
    if vmlinux is not None and not st.linux:
        raise click.UsageError("--vmlinux goes with a Linux kernel's dump; an s390emu machine keeps its mms on its mm list")
    if st.linux:
        from pgalloc.registry import VERSIONS, rules_for_release
        from pgalloc.errors import VersionError
        try:
            rules, why = rules_for_release(st.vmcoreinfo.get("OSRELEASE", ""))
        except VersionError as e:
            fail_file(f"{name}: {e}")
        fragments = bool(VERSIONS[rules].FRAGMENTS)
    try:
        if vmlinux is not None:
            from ..inspect.vmlinux import VmlinuxError, kernel_mms
            try:
                mms = kernel_mms(st, str(vmlinux))
            except VmlinuxError as e:
                fail_file(f"{name}: {e}")
        frames = storage_frames(st, show_all, fragments, mms)
    except LayoutError as e:
        fail_file(f"{name}: {e}")
    if st.linux:
        cpus = "every CPU's CR1/CR7/CR13" if any(c.has_crs for c in st.cpus) else "no CPU's (the dump has no control registers)"
        click.echo(f"{name}: Linux {st.vmcoreinfo['OSRELEASE']}, rules {rules}; walked the kernel's ASCE, {cpus}"
                   + (f", and {len(mms)} mms' ASCEs (--vmlinux)" if mms is not None else
                      "; LISTED unknown (the mms' pgtable_list needs --vmlinux)"), err=True)
    if not show_all:
        frames = [f for f in frames if not is_crst(f)]      # a PageTable page holding a CRST table
    if svg is not None:
        try:
            write_text(svg, fragmap_svg(frames, title=f"page-table frames of {name}"), force, "--svg")
        except OutputError as e:
            fail_file(str(e))
    if as_json:
        def j(f):
            return {**f, "frame": hex64(f["frame"]), "page": hex64(f["page"]),
                    "list_mm": None if f["list_mm"] is None else hex64(f["list_mm"]),
                    "crst_mm": hex64(f["crst_mm"]), "crst_asces": [hex64(a) for a in f["crst_asces"]],
                    "halves": [{**h, "reached_by": hex64(h["reached_by"]), "asces": [hex64(a) for a in h["asces"]],
                                "state": half_state(h)} for h in f["halves"]]}
        known = [m.address for m in mms or ()] if st.linux else live_mms(st.mem, st.vmcoreinfo)
        echo_json({"dump": name, "mms": [hex64(m) for m in known],
                   "frames": [j(f) for f in frames]})
        return
    click.echo(format_table(frames))
