"""The house rules of the layout (docs/layout.md), checked on the source: which package
may import which, no import cycles, no import hidden in a function, no oversized module.

Imports are read with ``ast`` from every module of ``s390emu``, ``dat``, ``pgalloc`` and
``tools``, at any depth (an import inside a function is an edge too), except those made
for type annotations only (under ``if TYPE_CHECKING:``).  ``from pkg import name`` is an
edge to the module ``pkg.name`` when there is one, else to ``pkg``; the implicit import
of a module's parent packages is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("s390emu", "dat", "pgalloc")
MAX_LINES = 500
LONG_MARK = "Long module:"      # a module over MAX_LINES says why in its docstring, after this


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    for f in sorted((ROOT / "tools").glob("*.py")):
        out["tools." + f.stem] = f
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _typing_only(tree: ast.Module) -> set[int]:
    return {id(n) for s in ast.walk(tree) if isinstance(s, ast.If) and ast.unparse(s.test) == "TYPE_CHECKING"
            for n in ast.walk(s)}


def imports(module: str, *, hidden: bool = False) -> set[str]:
    """The project modules ``module`` imports (at any depth of its code); with ``hidden``,
    only those imported inside a function."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _typing_only(tree)
    if hidden:
        nodes = [n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)]
    else:
        nodes = list(ast.walk(tree))
    out = set()
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, node)
            names = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in MODULES:
                n = n.rpartition(".")[0]
            if n and n != module:
                out.add(n)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back_through_others():
    assert _cycles() == []


# Where an import inside a function is the point: the CLI imports each command's
# machinery when the command runs (``s390emu --help`` stays fast), and the inspection
# library's demo opener builds the demo with pgalloc only when asked (``import
# s390emu.inspect`` does not load the allocator).
LAZY = ("s390emu.commands.", "s390emu.inspect.source")


def test_no_project_import_hides_in_a_function():
    assert {m: sorted(imports(m, hidden=True)) for m in MODULES
            if not m.startswith(LAZY) and imports(m, hidden=True)} == {}


def test_dat_imports_nothing_of_the_project_but_the_storage():
    bad = {m: sorted(i for i in GRAPH[m] if not i.startswith("dat") and i != "s390emu.memory")
           for m in MODULES if m.split(".")[0] == "dat"}
    assert {m: v for m, v in bad.items() if v} == {}


def _is_cli(m: str) -> bool:
    return m == "s390emu.cli" or m.startswith("s390emu.commands")


def test_nothing_outside_the_cli_imports_the_cli():
    bad = {m: sorted(i for i in GRAPH[m] if _is_cli(i)) for m in MODULES if not _is_cli(m)}
    assert {m: v for m, v in bad.items() if v} == {}


INSPECTION = ("s390emu.inspect",)       # the dump-inspection library


def test_the_machine_imports_dat_and_pgalloc_only_from_the_inspection_library_and_the_cli():
    bad = {}
    for m in MODULES:
        if m.split(".")[0] != "s390emu" or _is_cli(m) or m.startswith(INSPECTION):
            continue
        hits = sorted(i for i in GRAPH[m] if i.split(".")[0] in ("dat", "pgalloc"))
        if hits:
            bad[m] = hits
    assert bad == {}


def test_pgalloc_never_imports_the_cli():
    bad = {m: sorted(i for i in GRAPH[m] if _is_cli(i))
           for m in MODULES if m.startswith("pgalloc")}
    assert {m: v for m, v in bad.items() if v} == {}


def test_a_version_imports_neither_the_kernel_nor_the_registry_nor_the_explorer():
    forbidden = ("pgalloc.kernel", "pgalloc.registry", "pgalloc.attach", "pgalloc.explore")
    bad = {m: sorted(i for i in GRAPH[m] if i.startswith(forbidden)) for m in MODULES if m.startswith("pgalloc.versions.")}
    assert {m: v for m, v in bad.items() if v} == {} and len(bad) == 5


def test_the_core_imports_nothing_of_the_explorer():
    bad = {m: sorted(i for i in GRAPH[m] if i.startswith("pgalloc.explore"))
           for m in MODULES if m.startswith("pgalloc") and not m.startswith("pgalloc.explore")}
    assert {m: v for m, v in bad.items() if v} == {}


# The explorer's modules, bottom first: each may import only those before it.
EXPLORER = ("workers", "world", "operations", "setup", "reductions", "dependence", "findings", "replay", "checkpoint", "search",
            "ray_engine", "scenario", "report")


def test_every_module_of_the_explorer_imports_only_the_ones_below_it():
    assert {m.rpartition(".")[2] for m in MODULES if m.startswith("pgalloc.explore.")} == set(EXPLORER)
    for i, name in enumerate(EXPLORER):
        mine = {m.rpartition(".")[2] for m in GRAPH[f"pgalloc.explore.{name}"] if m.startswith("pgalloc.explore.")}
        assert mine <= set(EXPLORER[:i]), (name, mine - set(EXPLORER[:i]))


def test_tools_build_on_the_packages_never_on_the_cli():
    bad = {m: sorted(i for i in GRAPH[m] if _is_cli(i)) for m in MODULES if m.startswith("tools.")}
    assert {m: v for m, v in bad.items() if v} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_over_500_lines_says_why_in_its_docstring(module):
    src = MODULES[module].read_text()
    n = src.count("\n")
    if n > MAX_LINES:
        doc = ast.get_docstring(ast.parse(src)) or ""
        assert LONG_MARK in doc, f"{module} has {n} lines and its docstring does not say why ({LONG_MARK!r})"


def test_the_rules_read_real_imports():
    # The reader itself: known edges of today's tree are seen (a reader that saw nothing
    # would pass every rule above).
    assert "s390emu.memory" in GRAPH["dat.walker"]
    assert "s390emu.structs" in GRAPH["s390emu.page"]
    assert any(i.startswith("pgalloc") for i in GRAPH["tools.bench_pgalloc"])
    assert "pgalloc.explore.scenario" in imports("s390emu.commands.explore", hidden=True)
    assert "pgalloc.explore.setup" not in GRAPH["pgalloc.explore.reductions"]     # TYPE_CHECKING only
