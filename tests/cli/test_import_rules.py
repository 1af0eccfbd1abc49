"""The import rules of ``DESIGN.md`` that concern the machine package, checked on the source.

Every import counts, at module level or inside a function: ``dat`` imports nothing of
the project but ``s390emu.memory``; of ``s390emu``, only the inspection library, the
CLI and its commands import ``dat`` or ``pgalloc``; nothing but the CLI imports
``s390emu.commands`` or ``s390emu.cli``, and ``tools/`` never does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROJECT = ("s390emu", "dat", "pgalloc")


def _imports(path: Path) -> set[str]:
    """The absolute names of every module ``path`` imports."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _project(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in PROJECT}


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", _sources("dat"), ids=lambda p: str(p.relative_to(ROOT)))
def test_dat_imports_nothing_of_the_project_but_s390emu_memory(path):
    bad = {n for n in _project(_imports(path)) if not _in(n, "dat", "s390emu.memory")}
    assert not bad


@pytest.mark.parametrize("path", _sources("s390emu"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_inspection_library_and_the_cli_import_dat_or_pgalloc(path):
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith(("s390emu/inspect/", "s390emu/commands/")) or rel == "s390emu/cli.py":
        return
    assert not {n for n in _imports(path) if _in(n, "dat", "pgalloc")}


@pytest.mark.parametrize("path", _sources("s390emu", "dat", "pgalloc", "tools"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_cli_imports_the_cli(path):
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("s390emu/commands/") or rel == "s390emu/cli.py":
        return
    assert not {n for n in _imports(path) if _in(n, "s390emu.commands", "s390emu.cli")}
