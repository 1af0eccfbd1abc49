"""Every example in README.md and docs/*.md is run and its output checked, so none can go stale.

The convention is written for the writers of examples in docs/README.md ("Examples are
tests"); in short: each Markdown file runs in a temporary directory of its own (with the
repository's ``examples/`` and ``tools/``), its runnable blocks in document order;
```` ```console ```` blocks are ``$ command`` lines, each followed by what it prints (``...``
alone matches any lines, ``...`` within a line any text; ``# exit N`` gives the expected
status, default 0); ```` ```sh ```` blocks are commands whose output is not checked;
```` ```pycon ```` blocks are doctests sharing one namespace per file.  Other blocks are not
run, and may not hide a ``$ `` or ``>>>`` example.

Two commands are not re-run: ``pip install ... &&`` in front of a command is dropped (CI has
installed the project before it runs the tests), and ``python -m pytest`` is skipped (it is
the run this test belongs to).  Both occur in README's Quick start.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"console", "sh", "pycon"}
NOT_RUN = {"", "text", "python", "toml", "json"}
EXIT = re.compile(r"#\s*exit (\d+)\b")
PIP_INSTALL = re.compile(r"^pip install [^&]*&&\s*")
TIMEOUT = 120                        # seconds for one command: every example is meant to be quick


@dataclass
class Block:
    """One fenced block: its info string's first word, first line number and lines."""

    lang: str
    line: int
    lines: list[str] = field(default_factory=list)


def blocks(path: Path) -> list[Block]:
    """The fenced (```) blocks of a Markdown file, in order."""
    found, current = [], None
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text.startswith("```"):
            if current is None:
                current = Block(text[3:].strip().split(" ")[0], n + 1)
            else:
                found.append(current)
                current = None
        elif current is not None:
            current.lines.append(text)
    assert current is None, f"{path}: the block opened at line {current.line - 1} is not closed"
    return found


def output_pattern(expected: list[str]) -> re.Pattern:
    """A regex for the expected output lines: ``...`` alone is any lines, within a line any text."""
    parts = []
    for line in expected:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(re.escape(p) for p in line.split("...")) + "\n")
    return re.compile("".join(parts))


def normalized(lines: list[str]) -> list[str]:
    """Lines without trailing spaces and without trailing blank lines."""
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A directory for PATH whose ``s390emu`` and ``python`` run this checkout with this interpreter."""
    d = tmp_path_factory.mktemp("bin")
    (d / "s390emu").write_text(f"#!{sys.executable}\nimport sys\nfrom s390emu.cli import main\nsys.exit(main())\n")
    (d / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for f in d.iterdir():
        f.chmod(0o755)
    return d


class Shell:
    """Runs one file's commands in its directory, with this checkout first on the paths."""

    def __init__(self, cwd: Path, bin_dir: Path):
        self.cwd = cwd
        self.env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                        COLUMNS="100")

    def run(self, command: str) -> tuple[int, list[str]] | None:
        """``(exit status, output lines)`` of ``command``, or None for a command not re-run."""
        command = PIP_INSTALL.sub("", command)
        if command.startswith("python -m pytest"):
            return None
        p = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode("utf-8", "replace").splitlines()


def commands(block: Block) -> list[tuple[int, str, list[str] | None]]:
    """``(line number, command, expected output or None)`` of a console or sh block."""
    if block.lang == "sh":
        return [(block.line + i, text, None) for i, text in enumerate(block.lines)
                if text.strip() and not text.lstrip().startswith("#")]
    found = []
    for i, text in enumerate(block.lines):
        if text.startswith("$ "):
            found.append((block.line + i, text[2:], []))
        else:
            assert found, f"line {block.line + i}: a console block starts with a `$ ` command"
            found[-1][2].append(text)
    return found


def run_console(path: Path, block: Block, shell: Shell) -> None:
    """Run a console or sh block's commands in turn; each must exit and print as the block says."""
    for line, command, expected in commands(block):
        result = shell.run(command)
        if result is None:
            continue
        status, output = result
        m = EXIT.search(command)
        want = int(m.group(1)) if m else 0
        where = f"{path.relative_to(ROOT)}:{line}: $ {command}"
        shown = "\n".join(output)
        assert status == want, f"{where}\nexit {status}, the example says {want}; it printed:\n{shown}"
        if expected is not None:
            got = "".join(f"{text}\n" for text in normalized(output))
            exp = normalized(expected)
            assert output_pattern(exp).fullmatch(got), (
                f"{where}\n--- the example says:\n" + "\n".join(exp) + "\n--- it printed:\n" + shown)


def run_pycon(path: Path, block: Block, globs: dict) -> None:
    """Run a pycon block as a doctest in ``globs`` (the file's namespace, kept for its next blocks)."""
    name = f"{path.relative_to(ROOT)}:{block.line}"
    test = doctest.DocTestParser().get_doctest("\n".join(block.lines) + "\n", globs, name, str(path), block.line - 1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    runner.run(test, out=report.append, clear_globs=False)
    assert not runner.failures, "".join(report)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_of_the_file_runs_and_prints_what_it_says(path, tmp_path, bin_dir, monkeypatch):
    for name in ("examples", "tools"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    shell, globs = Shell(tmp_path, bin_dir), {"__name__": "__docs__"}
    for block in blocks(path):
        if block.lang == "pycon":
            run_pycon(path, block, globs)
        elif block.lang in RUN:
            run_console(path, block, shell)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_example_escapes_the_test_by_its_fence(path):
    for block in blocks(path):
        where = f"{path.relative_to(ROOT)}:{block.line - 1}"
        assert block.lang in RUN | NOT_RUN, f"{where}: a ```{block.lang} block (run: {sorted(RUN)}; not run: {sorted(NOT_RUN)})"
        if block.lang in {"", "text"}:
            assert not any(t.startswith("$ ") for t in block.lines), f"{where}: `$ ` commands belong in a ```console block"
        if block.lang == "python":
            assert not any(t.startswith(">>>") for t in block.lines), f"{where}: `>>>` examples belong in a ```pycon block"


def test_the_readme_is_a_users_guide_of_about_300_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 310


@pytest.mark.parametrize("expected, output, matches", [
    (["a", "...", "z"], ["a", "z"], True),
    (["a", "...", "z"], ["a", "b", "c", "z"], True),
    (["in ... s: ... states/s"], ["in 0.3 s: 1,695 states/s"], True),
    (["start ..."], ["start and the rest"], True),
    (["a", "z"], ["a", "b", "z"], False),
    (["in ... s"], ["in 0.3 s", "more"], False),
    (["x ... y"], ["x 1", "2 y"], False),
    ([], [], True),
    ([], ["printed"], False),
])
def test_output_matching_follows_the_convention(expected, output, matches):
    assert bool(output_pattern(expected).fullmatch("".join(f"{t}\n" for t in output))) == matches


# -- docs/benchmarks.md: written by the bench tools, section by section ---------------------------

BENCH_TOOLS = {"explore": "bench_explore.py", "pgalloc": "bench_pgalloc.py", "translate": "bench_translate.py"}


def benchlib():
    spec = importlib.util.spec_from_file_location("benchlib", ROOT / "tools" / "benchlib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, tool", BENCH_TOOLS.items())
def test_each_bench_tool_wrote_its_section_of_benchmarks_md_with_its_command_line(name, tool):
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = text.split(f"<!-- bench:{name} -->", 1)[1].split(f"<!-- /bench:{name} -->", 1)[0]
    assert section.lstrip().startswith("Measured ") and f"`python tools/{tool} " in section
    assert "| ---" in section


def test_a_section_rewrite_keeps_everything_outside_its_markers(tmp_path):
    lib, path = benchlib(), tmp_path / "b.md"
    lib.write_section(path, "one", "first")                       # a new file: just the section
    path.write_text("# Mine\n\n" + path.read_text() + "\nafter, mine too\n")
    lib.write_section(path, "one", "second")
    lib.write_section(path, "two", "other")                       # no markers yet: appended
    assert path.read_text() == ("# Mine\n\n<!-- bench:one -->\nsecond\n<!-- /bench:one -->\n\nafter, mine too\n"
                                "\n<!-- bench:two -->\nother\n<!-- /bench:two -->\n")


@pytest.mark.parametrize("tool, argument", [("bench_explore.py", "--versions=v99"), ("bench_explore.py", "--max-ops=0"),
                                            ("bench_explore.py", "--engines=local,bogus"),
                                            ("bench_pgalloc.py", "--sizes=10,x"), ("bench_translate.py", "--batch=-1"),
                                            ("bench_pgalloc.py", "--markdown=no/such/dir/b.md")])
def test_a_bench_tool_refuses_a_bad_argument_with_its_usage_and_exit_2(tool, argument):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / tool), argument], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=TIMEOUT)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("usage: ") and "Traceback" not in p.stderr


def test_of_the_quick_start_only_the_pip_install_and_the_test_run_itself_are_left_out(bin_dir, tmp_path):
    shell = Shell(tmp_path, bin_dir)
    assert shell.run("pip install -e '.[test]' && python -m pytest -q") is None
    status, output = shell.run("pip install -e . && s390emu --version")
    assert status == 0 and "s390emu" in output[0]
