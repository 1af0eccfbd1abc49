"""The fragment map: the page-table frames of ``pagetables.page_table_frames`` as SVG
(``s390emu pages --svg``, ``tools/fragmap.py``)."""

from __future__ import annotations

from html import escape

from .pagetables import half_states, owners

COLOURS = {"allocated": "#4caf50", "pending": "#ff9800", "deferred": "#9c27b0", "free": "#e0e0e0",
           "crst": "#90caf9"}


def fragmap_svg(frames: list[dict], *, title: str = "page-table frames", columns: int = 16) -> str:
    """An SVG: one cell per 4K page-table frame, its two 2K halves coloured by state
    (allocated, pending RCU, deferred by pte_free_defer, free; CRST frames blue), frames
    on a ``pgtable_list`` outlined, PG_active marked, the owner mm under each cell, and
    a legend.

    >>> fragmap_svg([]).startswith("<svg")
    True
    """
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
        states = half_states(f)
        for h in (0, 1):
            s.append(f'<rect x="{x + h * cw // 2}" y="{y}" width="{cw // 2}" height="{ch}" '
                     f'fill="{COLOURS[states[h]]}" stroke="#555" stroke-width="0.5"/>')
        outline = 'stroke="#d32f2f" stroke-width="3"' if f["listed"] else 'stroke="#333" stroke-width="1"'
        s.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="none" {outline}/>')
        s.append(f'<text x="{x + 4}" y="{y + 14}">{f["frame"]:#x}</text>')
        s.append(f'<text x="{x + 4}" y="{y + 28}">{f["byte"]:#04x}</text>')
        if f["active"]:
            s.append(f'<text x="{x + 4}" y="{y + 46}" font-weight="bold">ACTIVE</text>')
        mms = owners(f)
        label = ",".join(f"{o:#x}" for o in mms) if mms else "no owner"
        s.append(f'<text x="{x}" y="{y + ch + 14}" fill="#333">mm {escape(label)}</text>'
                 if mms else f'<text x="{x}" y="{y + ch + 14}" fill="#999">{label}</text>')
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
