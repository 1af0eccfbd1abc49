"""``s390emu pages``: the page-table frames of a dump, decoded from the dump alone.

Like makedumpfile, everything comes from VMCOREINFO: ``SYMBOL(mem_map)``,
``SIZE(page)``, ``OFFSET(page._refcount)``, ``OFFSET(page._mapcount)`` (the inverted
``page_type``: a page-table page has the ``PG_table`` bit of
``NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)`` cleared), ``OFFSET(page.flags)`` with
``NUMBER(PG_active)``, ``OFFSET(page.lru)``; the live mms from
``SYMBOL(s390emu_mm_list)`` through ``OFFSET(mm_struct.mmlist)``, each one's
``pgtable_list`` and ASCE.  No allocator object is consulted.

Per frame: the fragment byte (0 on a PageTable page means one whole 4K table, as
from v6.7 on) (the upper byte of ``_refcount``: A0/A1 allocated halves,
H0/H1 ``pte_free_defer`` pending, P0/P1 RCU pending), the page refcount (low 24 bits),
PG_active, whether the page is on some mm's ``pgtable_list``, and which mm reaches each
2K half (a walk of every live mm's ASCE, ``dat.reachable_tables``).  ``--svg`` draws it
(``fragmap_svg``; also ``tools/fragmap.py``).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import click
import numpy as np

from ..memory import PhysicalMemory
from .common import echo_json, fail_file, hex64, refuse_overwrite
from .source import dump_or_demo

MAX_LIST = 1 << 20        # a list longer than this is corrupt (a loop)


class LayoutError(Exception):
    """VMCOREINFO lacks what decoding ``struct page`` needs."""


def _num(v: dict, key: str, base: int = 10) -> int:
    try:
        return int(v[key], base)
    except (KeyError, ValueError):
        raise LayoutError(f"VMCOREINFO has no usable {key}") from None


def _list(mem: PhysicalMemory, head: int) -> list[int]:
    """The nodes of the ``list_head`` at ``head`` (stops at a loop or a bad pointer)."""
    out, seen = [], {head}
    node = mem.read_u64(head) if mem.contains(head, 16) else head
    while node != head and node not in seen and mem.contains(node, 16) and len(out) < MAX_LIST:
        seen.add(node)
        out.append(node)
        node = mem.read_u64(node)
    return out


def live_mms(mem: PhysicalMemory, v: dict) -> list[int]:
    """Every mm on the kernel's mm list (``SYMBOL(s390emu_mm_list)``)."""
    head = _num(v, "SYMBOL(s390emu_mm_list)", 16)
    off = _num(v, "OFFSET(mm_struct.mmlist)")
    return [n - off for n in _list(mem, head)]


def page_table_frames(mem: PhysicalMemory, v: dict) -> list[dict]:
    """Every page-table frame of ``mem``, decoded through the VMCOREINFO ``v``."""
    mem_map = _num(v, "SYMBOL(mem_map)", 16)
    psize = _num(v, "SIZE(page)")
    ref = _num(v, "OFFSET(page._refcount)")
    mapc = _num(v, "OFFSET(page._mapcount)")
    flags = _num(v, "OFFSET(page.flags)")
    lru = _num(v, "OFFSET(page.lru)")
    pg_active = _num(v, "NUMBER(PG_active)")
    pg_table = ~_num(v, "NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)") & 0xFFFF_FFFF
    pgt_off = _num(v, "OFFSET(mm_struct.context.pgtable_list)")
    asce_off = _num(v, "OFFSET(mm_struct.context.asce)")
    if psize % 8 or ref % 4 or mapc % 4 or flags % 8:
        raise LayoutError("VMCOREINFO struct page offsets are not aligned")
    nr = mem.size // 4096
    if not mem.contains(mem_map, nr * psize):
        raise LayoutError(f"mem_map at {mem_map:#x} ({nr} pages) does not fit in storage")
    words = mem.u32[mem_map // 4:(mem_map + nr * psize) // 4].reshape(nr, psize // 4)
    page_type = words[:, mapc // 4]
    pfns = np.flatnonzero((page_type & pg_table) == 0)
    mms = live_mms(mem, v)
    listed: dict[int, int] = {}
    owner: dict[int, int] = {}
    for mm in mms:
        for node in _list(mem, mm + pgt_off):
            listed[node - lru] = mm
        if mem.contains(mm + asce_off, 8):
            import dat

            r = dat.reachable_tables(mem, mem.read_u64(mm + asce_off))
            for t in r.page_tables.tolist():
                owner.setdefault(int(t), mm)
            for origins in r.crst.values():
                for o in origins.tolist():
                    for q in range(4):
                        owner.setdefault(int(o) + q * 0x1000, mm)
    out = []
    for pfn in pfns.tolist():
        page = mem_map + pfn * psize
        word = int(words[pfn, ref // 4])
        byte = word >> 24
        frame = pfn << 12
        fl = mem.read_u64(page + flags)
        # byte 0 on a PageTable page: one whole 4K table (v6.7+, where no fragment bits exist)
        whole = byte == 0
        halves = [{"A": whole or bool(byte >> h & 1), "H": bool(byte >> (2 + h) & 1),
                   "P": bool(byte >> (4 + h) & 1), "reached_by": owner.get(frame + 0x800 * h, 0)}
                  for h in (0, 1)]
        crst_mm = owner.get(frame, 0) if frame in owner and not (halves[0]["reached_by"] or halves[1]["reached_by"]) else 0
        out.append({"frame": frame, "page": page, "byte": byte, "refcount": word & 0xFFFFFF,
                    "active": bool(fl >> pg_active & 1), "listed": page in listed,
                    "list_mm": listed.get(page, 0), "halves": halves, "crst_mm": crst_mm})
    return out


def _state(h: dict) -> str:
    if h["A"]:
        return "allocated"
    if h["H"]:
        return "deferred"
    if h["P"]:
        return "pending"
    return "free"


def _bits(byte: int) -> str:
    names = [n for b, n in ((1, "A0"), (2, "A1"), (4, "H0"), (8, "H1"), (16, "P0"), (32, "P1"),
                            (64, "b6"), (128, "b7")) if byte & b]
    return " ".join(names) or "-"


def format_table(frames: list[dict]) -> str:
    lines = [f"{'FRAME':>16}  {'PAGE':>16}  {'BYTE':<4} {'BITS':<12} {'LOWER 2K':<10} {'UPPER 2K':<10} "
             f"{'REFCNT':>6} LISTED ACTIVE OWNER"]
    for f in frames:
        if f["crst_mm"] and not f["byte"]:
            lo = up = "crst"
        else:
            lo, up = (_state(h) for h in f["halves"])
        owners = {h["reached_by"] for h in f["halves"] if h["reached_by"]} | ({f["crst_mm"]} if f["crst_mm"] else set())
        own = ",".join(f"mm {o:#x}" for o in sorted(owners)) or "-"
        lines.append(f"{f['frame']:016x}  {f['page']:016x}  {f['byte']:#04x} {_bits(f['byte']):<12} {lo:<10} "
                     f"{up:<10} {f['refcount']:>6} {'yes' if f['listed'] else '-':<6} "
                     f"{'yes' if f['active'] else '-':<6} {own}")
    return "\n".join(lines)


# -- the fragment map -------------------------------------------------------------------------

COLOURS = {"allocated": "#4caf50", "pending": "#ff9800", "deferred": "#9c27b0", "free": "#e0e0e0",
           "crst": "#90caf9"}


def fragmap_svg(frames: list[dict], *, title: str = "page-table frames", columns: int = 16) -> str:
    """An SVG: one cell per 4K page-table frame, its two 2K halves coloured by state
    (allocated, pending RCU, deferred by pte_free_defer, free; CRST frames blue), frames
    on a ``pgtable_list`` outlined, PG_active marked, the owner mm under each cell, and
    a legend."""
    cw, ch, gap, top, left = 96, 56, 14, 56, 16
    rows = max(1, -(-len(frames) // columns))
    legend = [(n, {"pending": "pending (RCU)", "deferred": "deferred (pte_free_defer)",
                   "crst": "CRST table"}.get(n, n)) for n in ("allocated", "pending", "deferred", "free", "crst")]
    legend_w = sum(30 + 7 * len(t) for _, t in legend) + 140
    width = max(left * 2 + min(columns, max(1, len(frames))) * (cw + gap), left + legend_w)
    height = top + rows * (ch + 30 + gap) + 70
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="monospace" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
         f'<text x="{left}" y="42">{len(frames)} frames; left/right = lower/upper 2K half</text>']
    for i, f in enumerate(frames):
        x = left + (i % columns) * (cw + gap)
        y = top + (i // columns) * (ch + 30 + gap)
        states = ["crst", "crst"] if f["crst_mm"] and not f["byte"] else [_state(h) for h in f["halves"]]
        for h in (0, 1):
            s.append(f'<rect x="{x + h * cw // 2}" y="{y}" width="{cw // 2}" height="{ch}" '
                     f'fill="{COLOURS[states[h]]}" stroke="#555" stroke-width="0.5"/>')
        outline = 'stroke="#d32f2f" stroke-width="3"' if f["listed"] else 'stroke="#333" stroke-width="1"'
        s.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="none" {outline}/>')
        s.append(f'<text x="{x + 4}" y="{y + 14}">{f["frame"]:#x}</text>')
        s.append(f'<text x="{x + 4}" y="{y + 28}">{f["byte"]:#04x}</text>')
        if f["active"]:
            s.append(f'<text x="{x + 4}" y="{y + 46}" font-weight="bold">ACTIVE</text>')
        owners = sorted({h["reached_by"] for h in f["halves"] if h["reached_by"]} | ({f["crst_mm"]} if f["crst_mm"] else set()))
        label = ",".join(f"{o:#x}" for o in owners) if owners else "no owner"
        s.append(f'<text x="{x}" y="{y + ch + 14}" fill="#333">mm {escape(label)}</text>'
                 if owners else f'<text x="{x}" y="{y + ch + 14}" fill="#999">{label}</text>')
    ly = height - 40
    x = left
    for name, text in legend:
        s.append(f'<rect x="{x}" y="{ly}" width="14" height="14" fill="{COLOURS[name]}" stroke="#555"/>')
        s.append(f'<text x="{x + 18}" y="{ly + 11}">{text}</text>')
        x += 30 + 7 * len(text)
    s.append(f'<rect x="{x}" y="{ly}" width="14" height="14" fill="none" stroke="#d32f2f" stroke-width="3"/>')
    s.append(f'<text x="{x + 18}" y="{ly + 11}">on pgtable_list</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


@click.command("pages")
@click.option("--dump", "dump_file", type=click.Path(dir_okay=False, path_type=Path),
              help="An ELF dump or raw image of an s390emu machine. Default: the built-in demo.")
@click.option("--version", "version", metavar="V",
              help="Without --dump: build the demo with this allocator version (v515, v64, seed, v66, "
                   "v67, or a version file; default v66).  With --dump: the version file of the patch "
                   "that wrote the dump.")
@click.option("--all", "show_all", is_flag=True, help="Also list CRST (region/segment table) frames.")
@click.option("--svg", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the fragment map as SVG to this file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --svg file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def pages(dump_file, version, show_all, svg, force, as_json):
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
    source, vmci, dump_file = dump_or_demo(dump_file, version)
    mem = getattr(source, "mem", source)
    try:
        frames = page_table_frames(mem, vmci)
    except LayoutError as e:
        fail_file(f"{dump_file}: {e}")
    if not show_all:
        frames = [f for f in frames if not (f["crst_mm"] and not f["byte"])]
    if svg is not None:
        try:
            svg.write_text(fragmap_svg(frames, title=f"page-table frames of {dump_file}"))
        except OSError as e:
            fail_file(f"{svg}: {e.strerror or e}")
    if as_json:
        def j(f):
            return {**f, "frame": hex64(f["frame"]), "page": hex64(f["page"]), "list_mm": hex64(f["list_mm"]),
                    "crst_mm": hex64(f["crst_mm"]),
                    "halves": [{**h, "reached_by": hex64(h["reached_by"]), "state": _state(h)} for h in f["halves"]]}
        echo_json({"dump": str(dump_file), "mms": [hex64(m) for m in live_mms(mem, vmci)],
                   "frames": [j(f) for f in frames]})
        return
    click.echo(format_table(frames))
