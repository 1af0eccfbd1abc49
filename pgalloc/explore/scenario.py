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

from .operations import OP_KINDS, TABLE_OPS
from .setup import Setup


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message names the key or the operation."""


_TOP = {"name", "description", "version", "cpus", "setup", "bounds", "cpu", "checks"}
_SETUP = {"pages", "free", "lazy_refs", "pgste"}
_BOUNDS = {"max_steps", "max_states"}
_CHECKS = {"sleep_sets", "quiescent"}


def parse_op(text: str, ntables: int) -> tuple:
    """``"free_tlb T0"`` -> ``("free_tlb", 0)``; ``"alloc"``, ``"exit"``, ``"spec_ref T1"``..."""
    parts = text.split()
    if not parts:
        raise ScenarioError("empty operation")
    kind = parts[0]
    if kind not in OP_KINDS:
        raise ScenarioError(f"unknown operation {kind!r} (one of {', '.join(OP_KINDS)})")
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
    pages = setup.get("pages", 1)
    if not isinstance(pages, int) or not 1 <= pages <= 4:
        raise ScenarioError("setup.pages must be an integer 1..4")
    ntables = 2 * pages
    free = setup.get("free", [])
    if not isinstance(free, list) or any(not isinstance(i, int) or not 0 <= i < ntables for i in free):
        raise ScenarioError(f"setup.free must list table indices 0..{ntables - 1}")
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
    if not isinstance(cpus, int) or cpus < len(script) or cpus > 8:
        raise ScenarioError(f"cpus must be an integer >= the number of [[cpu]] tables ({len(script)}) and <= 8")
    script += [()] * (cpus - len(script))
    version = doc.get("version", "")
    if not isinstance(version, str):
        raise ScenarioError("version must be a string")
    lazy = setup.get("lazy_refs", 0)
    if not isinstance(lazy, int) or lazy < 0:
        raise ScenarioError("setup.lazy_refs must be a non-negative integer")
    nmmdrop = sum(op[0] == "mmdrop" for ops in script for op in ops)
    if nmmdrop > lazy:
        raise ScenarioError(f"{nmmdrop} mmdrop operation(s) but setup.lazy_refs = {lazy}")
    return Setup(version=version, cpus=cpus, max_ops=sum(len(s) for s in script), pages=pages,
                 free_halves=tuple(free), lazy_refs=lazy, pgste=bool(setup.get("pgste", False)),
                 script=tuple(script), max_steps=int(bounds.get("max_steps", 0)),
                 max_states=int(bounds.get("max_states", 2_000_000)),
                 sleep_sets=bool(checks.get("sleep_sets", True)), quiescent_checks=bool(checks.get("quiescent", True)),
                 name=str(doc.get("name", name)))


def load_scenario(path: str | Path) -> Setup:
    """Read a scenario file; ``OSError`` or ``ScenarioError`` when it cannot be used."""
    p = Path(path)
    return parse_scenario(p.read_text(encoding="utf-8"), name=p.stem)
