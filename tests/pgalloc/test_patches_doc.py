"""Every example in docs/patches.md is run: each ``console`` command must print what the
page shows (lines compared without trailing blanks), each ``pycon`` session must pass as
a doctest."""

import doctest
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "patches.md").read_text()


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC, re.S)


def _commands(block: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            out[-1][1].append(line.rstrip())
    return out


COMMANDS = [c for block in _blocks("console") for c in _commands(block)]


@pytest.mark.parametrize("command, expected", COMMANDS, ids=[c[:60] for c, _ in COMMANDS])
def test_each_shell_example_prints_what_the_page_shows(command, expected):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert [line.rstrip() for line in r.stdout.splitlines()] == expected, r.stderr


def test_the_python_sessions_pass_as_doctests(monkeypatch):
    monkeypatch.chdir(ROOT)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(_blocks("pycon")):
        runner.run(parser.get_doctest(block, {}, f"patches.md[{i}]", str(ROOT / "docs" / "patches.md"), 0))
    assert runner.summarize(verbose=False).failed == 0
    assert _blocks("pycon") and COMMANDS
