"""The pgalloc core's import rules, read from the sources: no cycle, no import hidden in a
function, versions that import neither the kernel, the registry nor the explorer, and
today's import paths still working."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pgalloc"
# The core and the versions (the explorer's modules are laid out separately).
MODULES = {f"pgalloc.{p.stem}" if p.parent == ROOT else f"pgalloc.versions.{p.stem}": p
           for p in sorted(ROOT.glob("*.py")) + sorted((ROOT / "versions").glob("*.py"))
           if not p.stem.startswith("explore") and p.stem != "__init__"}


def _imports(name: str, path: Path) -> tuple[set[str], list[str]]:
    """Project modules ``name`` imports at module level, and any import inside a function."""
    tree = ast.parse(path.read_text())
    package = name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in MODULES else base)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    hidden = [f"{name}:{n.lineno}" for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return {m for m in out if m in MODULES}, hidden


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_no_import_cycle_between_the_modules():
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, "import cycle: " + " -> ".join(trail + [m])
        state[m] = 1
        for n in sorted(GRAPH[m][0]):
            visit(n, trail + [m])
        state[m] = 2

    for m in GRAPH:
        visit(m, [])


def test_no_import_hides_in_a_function():
    assert [h for _, (_, hidden) in GRAPH.items() for h in hidden] == []


@pytest.mark.parametrize("version", [m for m in MODULES if m.startswith("pgalloc.versions.")])
def test_a_version_imports_neither_the_kernel_the_registry_nor_the_explorer(version):
    assert not GRAPH[version][0] & {"pgalloc.kernel", "pgalloc.registry", "pgalloc.attach"}
    assert not any("explore" in m for m in GRAPH[version][0])


def test_no_module_is_over_500_lines():
    assert {n: len(p.read_text().splitlines()) for n, p in MODULES.items()
            if len(p.read_text().splitlines()) > 500} == {}


def test_todays_import_paths_still_work():
    import pgalloc
    from pgalloc import versions
    for name in ("v515", "v64", "seed", "v66", "v67"):
        module = importlib.import_module(f"pgalloc.versions.{name}")
        assert importlib.import_module(f"pgalloc.{name}") is module is getattr(pgalloc, name)
        assert versions.VERSIONS[name] is module
    ns: dict = {}
    exec("from pgalloc.v66 import *", ns)
    assert ns["NAME"] == "v66" and ns["page_table_free"] is pgalloc.v66.page_table_free
    from pgalloc.versions import VersionError, load_version
    assert load_version("v67") == "v67" and issubclass(VersionError, pgalloc.PgallocError)


def test_one_error_root_and_one_name_for_the_address():
    from pgalloc import errors
    from pgalloc.attach import AttachError
    roots = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, errors.PgallocError) for c in roots) and AttachError is errors.AttachError
    v = errors.Violation("leak", 0x1000, "x")
    assert v.address == v.page == 0x1000
    assert issubclass(errors.MisuseError, RuntimeError)         # what these were
