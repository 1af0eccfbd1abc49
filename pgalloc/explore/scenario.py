"""Scenario files for the interleaving explorer: TOML (``tomllib``) that fixes the
version, the setup and each CPU's operations.

>>> s = parse_scenario('''
... version = "v64"
... [setup]
... pages = 1
... [[cpu]]
... ops = ["free_tlb T0"]
... [[cpu]]
... ops = ["free T1"]
... ''')
>>> s.version, s.cpus, s.script
('v64', 2, ((('free_tlb', 0),), (('free', 1),)))

The whole vocabulary is in docs/explorer.md (scenario files).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from s390emu.output import path_kind

from ..errors import PgallocError

from .operations import MM_OPS, OP_KINDS, TABLE_OPS, WALKER_OPS, script_label
from .setup import Setup


class ScenarioError(PgallocError):
    """A scenario file that cannot be used; the message names the key or the operation."""


_TOP = {"name", "description", "version", "cpus", "setup", "bounds", "cpu", "checks"}
_SETUP = {"pages", "free", "lazy_refs", "pgste"}
_BOUNDS = {"max_steps", "max_states"}
_CHECKS = {"sleep_sets", "quiescent", "walkers"}


def parse_op(text: str, ntables: int) -> tuple:
    """``"free_tlb T0"`` -> ``("free_tlb", 0)``; ``"alloc"``, ``"exit"``, ``"spec_ref T1"``..."""
    parts = text.split()
    if not parts:
        raise ScenarioError("empty operation")
    kind = parts[0]
    if kind not in OP_KINDS:
        raise ScenarioError(f"unknown operation {kind!r} (one of {', '.join(OP_KINDS)})")
    if kind in WALKER_OPS:      # the address at the start of a setup table's MiB: S0, S1, ...
        if len(parts) != 2 or parts[1][:1].upper() not in "ST" or not parts[1][1:].isdigit() \
                or int(parts[1][1:]) >= ntables:
            raise ScenarioError(f"{text!r}: {kind} takes the slot of a setup table, S0..S{ntables - 1}")
        return (kind, int(parts[1][1:]))
    needs_table = kind in TABLE_OPS or kind == "spec_ref"
    if needs_table:
        if len(parts) != 2 or not parts[1].upper().startswith("T") or not parts[1][1:].isdigit():
            raise ScenarioError(f"{text!r}: {kind} takes a table, e.g. \"{kind} T0\"")
        n = int(parts[1][1:])
        if n >= ntables:
            raise ScenarioError(f"{text!r}: the setup has tables T0..T{ntables - 1}")
        return (kind, n)
    if kind == "alloc" and len(parts) == 2:
        if not parts[1].upper().startswith("S") or not parts[1][1:].isdigit() or int(parts[1][1:]) > ntables:
            raise ScenarioError(f"{text!r}: alloc takes an optional slot S0..S{ntables}")
        return ("alloc", int(parts[1][1:]))
    if len(parts) != 1:
        raise ScenarioError(f"{text!r}: {kind} takes no argument")
    return (kind,)


def parse_scenario(text: str, name: str = "") -> Setup:
    """A ``Setup`` in scenario mode from TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"not valid TOML: {e}") from None
    unknown = set(doc) - _TOP
    if unknown:
        raise ScenarioError(f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_TOP))})")
    setup = doc.get("setup", {})
    bounds = doc.get("bounds", {})
    checks = doc.get("checks", {})
    for table, allowed, what in ((setup, _SETUP, "setup"), (bounds, _BOUNDS, "bounds"), (checks, _CHECKS, "checks")):
        if not isinstance(table, dict):
            raise ScenarioError(f"[{what}] must be a table")
        bad = set(table) - allowed
        if bad:
            raise ScenarioError(f"unknown key(s) in [{what}]: {', '.join(sorted(bad))} (allowed: {', '.join(sorted(allowed))})")
    for key in ("name", "description"):
        if not isinstance(doc.get(key, ""), str):
            raise ScenarioError(f"{key} must be a string")
    pages = _integer(setup, "pages", 1, 1, 4, "setup.pages")
    ntables = 2 * pages
    free = setup.get("free", [])
    if not isinstance(free, list) or any(not _is_int(i) or not 0 <= i < ntables for i in free):
        raise ScenarioError(f"setup.free must list table indices 0..{ntables - 1}")
    if len(set(free)) != len(free):
        raise ScenarioError("setup.free lists a table twice (a table is freed once)")
    flags = {key: _flag(table, key, what) for table, what, key in
             ((setup, "setup", "pgste"), (checks, "checks", "sleep_sets"), (checks, "checks", "quiescent"),
              (checks, "checks", "walkers"))}
    cpus_doc = doc.get("cpu", [])
    if not isinstance(cpus_doc, list) or not cpus_doc:
        raise ScenarioError("a scenario needs at least one [[cpu]] table with ops = [...]")
    script = []
    for i, c in enumerate(cpus_doc):
        if not isinstance(c, dict) or set(c) - {"ops"}:
            raise ScenarioError(f"[[cpu]] #{i} may only have ops = [...]")
        ops = c.get("ops", [])
        if not isinstance(ops, list) or any(not isinstance(o, str) for o in ops):
            raise ScenarioError(f"[[cpu]] #{i}: ops must be a list of strings")
        try:
            script.append(tuple(parse_op(o, ntables) for o in ops))
        except ScenarioError as e:
            raise ScenarioError(f"[[cpu]] #{i}: {e}") from None
    cpus = doc.get("cpus", len(script))
    if not _is_int(cpus) or cpus < len(script) or cpus > 8:
        raise ScenarioError(f"cpus must be an integer >= the number of [[cpu]] tables ({len(script)}) and <= 8")
    script += [()] * (cpus - len(script))
    version = doc.get("version", "")
    if not isinstance(version, str):
        raise ScenarioError("version must be a string")
    # A lazy-TLB reference is a CPU running a kernel thread on the mm: one per CPU at most.
    lazy = _integer(setup, "lazy_refs", 0, 0, cpus, f"setup.lazy_refs (one per CPU at most, {cpus} CPUs)")
    nmmdrop = sum(op[0] == "mmdrop" for ops in script for op in ops)
    if nmmdrop > lazy:
        raise ScenarioError(f"{nmmdrop} mmdrop operation(s) but setup.lazy_refs = {lazy}")
    never_starts(script, ntables, set(free))
    return Setup(version=version, cpus=cpus, max_ops=sum(len(s) for s in script), pages=pages,
                 free_halves=tuple(free), lazy_refs=lazy, pgste=flags["pgste"],
                 script=tuple(script), max_steps=_integer(bounds, "max_steps", 0, 0, None, "bounds.max_steps"),
                 max_states=_integer(bounds, "max_states", 2_000_000, 1, None, "bounds.max_states"),
                 sleep_sets=flags["sleep_sets"], quiescent_checks=flags["quiescent"],
                 walkers=flags["walkers"],
                 name=doc.get("name", name))


def _is_int(v) -> bool:
    """An integer, and not a boolean (which TOML keeps apart and Python does not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _integer(table: dict, key: str, default: int, lo: int, hi: int | None, what: str) -> int:
    """``table[key]``, an integer ``lo..hi`` (``hi`` None: no upper bound)."""
    v = table.get(key, default)
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ScenarioError(f"{what} must be an integer {span}, not {v!r}")
    return v


def _flag(table: dict, key: str, what: str) -> bool:
    """``table[key]``, a boolean (default: the format's, documented in docs/explorer.md)."""
    v = table.get(key, key != "pgste")
    if not isinstance(v, bool):
        raise ScenarioError(f"{what}.{key} must be true or false, not {v!r}")
    return v


def never_starts(script: list, ntables: int, freed: set) -> None:
    """Refuse an operation that no interleaving can start, where the scenario alone
    decides it: an operation on the mm after the same CPU's ``exit``, a second ``exit``,
    and more frees of a segment slot than it can hold tables (the setup's, unless
    ``setup.free`` freed it, plus each ``alloc`` into it) or more allocs into it than it
    is empty (the spare slot, a slot ``setup.free`` freed, and each free of it)."""
    exits = [(c, op) for c, ops in enumerate(script) for op in ops if op == ("exit",)]
    if len(exits) > 1:
        raise ScenarioError(f"[[cpu]] #{exits[1][0]}: a second 'exit' never starts (the process exits once)")
    for c, ops in enumerate(script):
        after = [op for op in ops[[o[0] for o in ops].index("exit") + 1:] if op[0] in MM_OPS] if ("exit",) in ops else []
        if after:
            raise ScenarioError(f"[[cpu]] #{c}: {script_label(after[0])!r} after 'exit' never starts "
                                "(no operation on the mm starts once the process exits)")
    for slot in range(ntables + 1):
        frees = [op for ops in script for op in ops if op[0] in TABLE_OPS and op[1] == slot]
        allocs = sum(op[0] == "alloc" and (op[1] if len(op) > 1 else ntables) == slot for ops in script for op in ops)
        installed = int(slot < ntables and slot not in freed)
        if len(frees) > installed + allocs:
            why = "freed by the setup" if slot < ntables and slot in freed else "installed once"
            raise ScenarioError(f"{len(frees)} operation(s) free T{slot} ({', '.join(map(script_label, frees))}) but the "
                                f"table is {why} and {allocs} alloc S{slot} refill(s) the slot: one never starts")
        if allocs > 1 - installed + len(frees):
            raise ScenarioError(f"{allocs} alloc S{slot} but slot S{slot} is empty {1 - installed + len(frees)} time(s) "
                                f"(it {'holds a table' if installed else 'is empty'} at the start, and each free of "
                                f"T{slot} empties it): one never starts")


def load_scenario(path: str | Path) -> Setup:
    """Read a scenario file; ``OSError`` or ``ScenarioError`` when it cannot be used."""
    p = Path(path)
    kind = path_kind(p)
    if kind is not None:            # reading a fifo or a tty would wait forever
        raise ScenarioError(f"{kind}, not a scenario file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None
    return parse_scenario(text, name=p.stem)
