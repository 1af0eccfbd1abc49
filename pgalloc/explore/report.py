"""Reports of an exploration: plain text for the terminal and an HTML timeline.

The HTML timeline has one column per CPU (plus one for grace periods), one row per
atomic step, and draws each step's fragment byte as the two 2K halves of the page:
each half shows its A (allocated), P (pending) and H (pending via ``rcu_head``) bits.
With walkers (``Setup.walkers``) it has a lane per CPU for the readers in flight: the
purges a step made, the TLB entries it formed or purged, what a walker holds.  The text
report shows the same under the step, one line each (``purges:``, ``TLB``, ``walker holds``).
"""

from __future__ import annotations

import html
import textwrap

from ..checks import fmt
from .search import CUTS, Result


def _byte(b) -> str:
    return "" if b is None else fmt(b)


# Every line of a text report fits WIDTH columns; what is longer goes on continuation lines.
WIDTH = 120
# A trace row: "#", CPU, context, the byte before -> after, listed, then the step, the
# one cell of any length (it wraps onto continuation lines indented to its column).
_ROW = "    {:>3} {:<3} {:<7} {:<27} {:<6} "
_STEP_COL = len(_ROW.format("", "", "", "", ""))


def _fill(line: str, indent: str = "    ") -> list[str]:
    """``line`` wrapped to WIDTH columns, continuation lines indented by ``indent``."""
    if len(line) <= WIDTH:
        return [line]
    return textwrap.wrap(line, WIDTH, subsequent_indent=indent, break_long_words=True, break_on_hyphens=False)


def _join(parts: list[str]) -> list[str]:
    """``parts`` joined by commas, a new line (indented) where the next would pass WIDTH."""
    lines = [parts[0]]
    for p in parts[1:]:
        if len(lines[-1]) + 2 + len(p) > WIDTH:
            lines[-1] += ","
            lines.append("  " + p)
        else:
            lines[-1] += ", " + p
    return lines


def text_report(r: Result, *, max_rows: int = 400) -> str:
    """The report ``explore`` prints: the setup, what was explored, whether every
    interleaving within the bounds was, and each finding with its trace, in WIDTH columns."""
    s = r.setup
    lines = []
    tables = ", ".join(f"T{i}" for i in range(2 * s.pages))
    parts = [f"s390emu explore: version {s.version}", s.describe(), f"{s.cpus} CPUs",
             f"a KVM (PGSTE) mm: {2 * s.pages} page tables of a 4K page each ({tables})" if s.pgste else
             f"{s.pages} page-table page(s) with both halves in use ({tables})"]
    if s.free_halves:
        parts.append(f"tables {', '.join(f'T{i}' for i in s.free_halves)} freed first")
    if not s.walkers:
        parts.append("no readers in flight (--no-walkers)")
    lines += _join(parts)
    lines.append(f"explored {r.states:,} states ({r.transitions:,} transitions) in {r.seconds:.1f} s: "
                 f"{r.states_per_second:,.0f} states/s, {r.workers} worker(s), longest trace {r.depth} transitions")
    bound = []
    if s.script is None:
        bound.append(f"--max-ops {s.max_ops} " + ("reached (longer combinations not explored)" if r.ops_bound_reached
                                                  else "not reached"))
    if r.complete:
        bound.append("every interleaving within the bound explored")
    else:
        bound.append("NOT every interleaving within the bound explored")
    lines.append("bound: " + "; ".join(bound))
    if not r.violations:
        lines.append("no violation found" + (" in what was explored" if not r.complete else ""))
    else:
        lines += _violations(r, max_rows)
    if r.never_started:
        lines.append("never started: " + "; ".join(r.never_started))
    if not r.complete:
        lines.append(incomplete_line(r))
    return "\n".join(out for line in lines for out in _fill(line, "  "))


def incomplete_line(r: Result) -> str:
    """The last line of an incomplete search's report: what it did not look at, and why
    (short enough never to wrap)."""
    if r.cut == "setup":
        return "INCOMPLETE: a check failed while the setup was built: no interleaving was explored"
    if r.cut is not None:
        return (f"INCOMPLETE: the search was cut by {CUTS[r.cut]} after {r.states:,} states, depth {r.depth}: "
                "not every interleaving was explored")
    return (f"INCOMPLETE: {len(r.never_started)} scenario operation(s) that no interleaving started (above): "
            "what they would do was not explored")


def _violations(r: Result, max_rows: int) -> list[str]:
    """The report's findings, each with its trace (already wrapped: the caller's fill
    leaves lines of WIDTH columns as they are)."""
    lines = [f"VIOLATIONS: {len(r.violations)} distinct (invariant, function, step, defect); shortest trace of each:"]
    for i, f in enumerate(r.violations, 1):
        lines.append("")
        lines += _fill(f"[{i}] {f.name}: page {f.page:#x}: {f.message}")
        if f.where:
            lines += _fill(f"    at {f.where}", "       ")
        ops = f.state.get("operations", [])
        if ops:
            lines += _fill("    operations: " + "; ".join(ops), "       ")
        lines.append(f"    trace ({len(f.trace)} rows; the RCU queue after a transition, where it changed):")
        lines.append(_ROW.format("#", "CPU", "context", "byte before -> after", "listed") + "function: step")
        queue = None
        for row in f.trace[:max_rows]:
            lines += _text_row(row)
            if "rcu" in row and row["rcu"] != queue:
                queue = row["rcu"]
                lines += textwrap.wrap("RCU queue: " + (", ".join(queue) or "(empty)"), WIDTH,
                                       initial_indent=" " * _STEP_COL, subsequent_indent=" " * (_STEP_COL + 4),
                                       break_long_words=True, break_on_hyphens=False)
        if len(f.trace) > max_rows:
            lines.append(f"    ... {len(f.trace) - max_rows} more rows (see --json)")
    return lines


def _text_row(row: dict) -> list[str]:
    """A trace row's lines: the step (with the violation it ends in) wraps, uncut."""
    cpu = "" if row.get("cpu") is None else str(row["cpu"])
    ctx = row.get("context", "")
    if row.get("func") and row["kind"] in ("step", "state"):
        what = f"{row['func']}: {row['label']}"
    else:
        what = row.get("what", "")
    if row.get("violation"):
        what = "!! " + what + "  <- " + row["violation"]
    byte = ""
    if "before" in row:
        byte = f"{_byte(row['before'])} -> {_byte(row['after'])}"
    listed = ""
    if "listed" in row:
        listed = {True: "yes", False: "no", None: "?"}[row["listed"]]
    head = _ROW.format(row["n"], cpu, ctx, byte, listed)
    lines = textwrap.wrap(what, WIDTH, initial_indent=head, subsequent_indent=" " * (_STEP_COL + 2),
                          break_long_words=True, break_on_hyphens=False) or [head.rstrip()]
    for detail in inflight_details(row):
        lines += textwrap.wrap(detail, WIDTH, initial_indent=" " * _STEP_COL, subsequent_indent=" " * (_STEP_COL + 4),
                               break_long_words=True, break_on_hyphens=False)
    return lines


def tlb_change(change: dict) -> str:
    """One CPU's TLB change of a trace row (``{"+": [...], "-": [...]}``) in words:
    ``+ STE 0x18000->0x1c000 - PTEs of 0x1c800``."""
    return " ".join(f"{sign} {', '.join(change[sign])}" for sign in ("+", "-") if change[sign])


def walker_held(seen: dict) -> str:
    """A walker's locals of a trace row, the ones it set (nonzero): ``pmd 0x1c800 pt 0x1c800``."""
    return " ".join(f"{name} {value}" for name, value in seen.items() if value != "0x0")


def inflight_details(row: dict) -> list[str]:
    """What the readers in flight saw or did at a trace row, one line each: the purges, the
    TLB changes per CPU, the walker's entries (none of them without walkers)."""
    out = []
    if row.get("purges"):
        out.append("purges: " + "; ".join(row["purges"]))
    if row.get("tlb"):
        # CPUs whose TLBs changed alike (a broadcast purge) share one entry.
        alike: dict[str, list[str]] = {}
        for cpu, ch in row["tlb"].items():
            alike.setdefault(tlb_change(ch), []).append(cpu)
        out.append("TLB " + "; ".join(f"{', '.join(cpus)}: {ch}" for ch, cpus in alike.items()))
    held = walker_held(row.get("walker") or {})
    if held:
        out.append("walker holds " + held)
    return out


# -- HTML -------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
table.tl { border-collapse: collapse; font-size: 12px; }
table.tl th, table.tl td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
table.tl th { background: #f0f0f0; position: sticky; top: 0; }
td.softirq { background: #fff4e0; } td.process { background: #eef5ff; } td.global { background: #f4f4f4; }
td.bad { outline: 2px solid #d00; background: #ffe0e0; }
.fn { font-weight: 600; } .lbl { font-family: monospace; }
.page { display: inline-flex; gap: 2px; margin-top: 3px; }
.half { display: inline-block; min-width: 3.4em; text-align: center; font-family: monospace; font-size: 11px;
        border: 1px solid #888; border-radius: 3px; padding: 0 2px; }
.half.free { background: #fff; color: #999; } .half.A { background: #9be29b; }
.half.P { background: #ffc46b; } .half.H { background: #c9a0ff; } .half.AP { background: #ff6b6b; }
.arrow { color: #888; margin: 0 3px; } .meta { color: #555; font-size: 11px; }
"""


def _half(byte: int, h: int) -> str:
    a, hh, p = byte >> h & 1, byte >> (h + 2) & 1, byte >> (h + 4) & 1
    bits = ("A" if a else "") + ("H" if hh else "") + ("P" if p else "")
    cls = "AP" if a and (p or hh) else ("H" if hh else "P" if p else "A" if a else "free")
    name = "lower" if h == 0 else "upper"
    return f'<span class="half {cls}" title="{name} 2K: {bits or "free"}">{name[0]}:{bits or "-"}</span>'


def _page_html(byte) -> str:
    if byte is None:
        return ""
    return f'<span class="page" title="{html.escape(fmt(byte))}">{_half(byte, 0)}{_half(byte, 1)}</span>'


def _lane_html(row: dict, cpu: int) -> str:
    """CPU ``cpu``'s TLB / walker lane of a trace row: the purges its step made and the
    entries its walker holds (on the stepping CPU's lane), its TLB's change (on its own)."""
    e = html.escape
    out = []
    if row.get("cpu") == cpu:
        out += [f"<b>purge</b> {e(p)}" for p in row.get("purges", ())]
        held = walker_held(row.get("walker") or {})
        if held:
            out.append(f"<b>walker</b> {e(held)}")
    change = row.get("tlb", {}).get(f"CPU{cpu}")
    if change:
        out.append(f"<b>TLB</b> {e(tlb_change(change))}")
    return "<br>".join(out)


def html_report(r: Result) -> str:
    """The HTML timeline of ``r``: one column per CPU, one for RCU and grace periods, with
    walkers a TLB / walker lane per CPU, one row per trace row."""
    s = r.setup
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>s390emu explore {e(s.version)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    out.append(f"<h1>s390emu explore: {e(s.version)}, {e(s.describe())}, {s.cpus} CPUs</h1>")
    out.append(f"<p>{r.states:,} states, {r.transitions:,} transitions, {r.seconds:.1f} s "
               f"({r.states_per_second:,.0f} states/s), complete: {r.complete}, ops bound reached: {r.ops_bound_reached}. "
               f"{len(r.violations)} violation(s).</p>")
    if r.never_started:
        out.append("<p><b>Never started:</b> " + e("; ".join(r.never_started)) + "</p>")
    if not r.complete:
        out.append(f"<p><b>{e(incomplete_line(r))}</b></p>")
    if not r.violations:
        out.append("<p>No violation found" + (" in what was explored" if not r.complete else " within the bounds")
                   + ".</p>")
    for i, f in enumerate(r.violations, 1):
        out.append(f"<h2>[{i}] {e(f.name)}: page {f.page:#x}</h2><p>{e(f.message)}<br><span class='meta'>at {e(f.where)}</span></p>")
        ops = f.state.get("operations", [])
        if ops:
            out.append("<p class='meta'>operations: " + e("; ".join(ops)) + "</p>")
        lanes = "".join(f"<th>CPU{c} TLB / walker</th>" for c in range(s.cpus)) if s.walkers else ""
        out.append("<table class='tl'><tr><th>#</th>" + "".join(f"<th>CPU{c}</th>" for c in range(s.cpus))
                   + "<th>RCU / grace periods</th>" + lanes + "<th>listed</th><th>RCU queue after</th></tr>")
        for row in f.trace:
            cells = [""] * (s.cpus + 1)
            classes = [""] * (s.cpus + 1)
            col = row.get("cpu") if row.get("cpu") is not None else s.cpus
            if row.get("func") and row["kind"] in ("step", "state"):
                body = f"<span class='fn'>{e(row['func'])}</span><br><span class='lbl'>{e(row['label'])}</span>"
            else:
                body = f"<span class='lbl'>{e(row.get('what', ''))}</span>"
            if "before" in row:
                body += (f"<br>{_page_html(row['before'])}<span class='arrow'>&rarr;</span>{_page_html(row['after'])}"
                         f" <span class='meta'>{e(row.get('page', ''))}</span>")
            if row.get("violation"):
                body += f"<br><b>{e(row['violation'])}</b>"
            cells[col] = body
            classes[col] = "bad" if row.get("violation") else (row.get("context") or "global")
            listed = {True: "yes", False: "no", None: "?"}.get(row.get("listed"), "") if "listed" in row else ""
            rcu = "<br>".join(e(x) for x in row.get("rcu", []))
            lanes = "".join(f"<td class='meta'>{_lane_html(row, c)}</td>" for c in range(s.cpus)) if s.walkers else ""
            out.append(f"<tr><td>{row['n']}</td>" + "".join(f"<td class='{classes[j]}'>{cells[j]}</td>" for j in range(s.cpus + 1))
                       + lanes + f"<td>{listed}</td><td class='meta'>{rcu}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
