"""The explorer's layout: each module imports only those below it, and the kernel's
callers (``pgalloc.callers``) know nothing of the explorer."""

import ast
from pathlib import Path

import pgalloc

PGALLOC = Path(pgalloc.__file__).parent
# Bottom first: a module may import only those before it.
LAYERS = ("world", "operations", "setup", "reductions", "findings", "replay", "search", "scenario", "report")


def _imports(path: Path, package: str) -> set[str]:
    """The modules of ``pgalloc`` that the file imports at run time (not those imported
    for type annotations only, under ``if TYPE_CHECKING:``), as dotted names."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for s in ast.walk(tree) if isinstance(s, ast.If) and ast.unparse(s.test) == "TYPE_CHECKING"
                   for n in ast.walk(s)}
    out = set()
    for n in ast.walk(tree):
        if id(n) in typing_only:
            continue
        if isinstance(n, ast.ImportFrom):
            mod = n.module
            if n.level:         # relative: from the package, n.level - 1 levels up
                parts = package.split(".")
                base = parts[:len(parts) - n.level + 1]
                mod = ".".join(base + [n.module] if n.module else base)
            out.update([f"{mod}.{a.name}" for a in n.names] if n.module is None else [mod])
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return {m for m in out if m.startswith("pgalloc")}


def test_every_module_of_the_explorer_imports_only_the_ones_below_it():
    files = {p.stem for p in (PGALLOC / "explore").glob("*.py")} - {"__init__"}
    assert files == set(LAYERS)
    for i, name in enumerate(LAYERS):
        mine = {m.split(".")[2] for m in _imports(PGALLOC / "explore" / f"{name}.py", "pgalloc.explore")
                if m.startswith("pgalloc.explore.")}
        assert mine <= set(LAYERS[:i]), (name, mine - set(LAYERS[:i]))


def test_the_kernel_callers_do_not_import_the_explorer():
    assert not {m for m in _imports(PGALLOC / "callers.py", "pgalloc") if m.startswith("pgalloc.explore")}
