"""The example test file a kernel developer would write (``examples/test_pte_free_defer.py``)
runs green in a pytest of its own, with the plugin loaded through its ``pytest11`` entry
point as an installed s390emu declares it (pyproject.toml); a bad ``--s390-version`` is
one line and pytest's usage-error exit code."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/test_pte_free_defer.py"
EXAMPLE_TESTS = 4


def _declared() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]


def _installed() -> bool:
    """Whether this environment's s390emu declares the plugin (an install since it landed)."""
    return any(ep.name == "s390emu" for ep in metadata.entry_points(group="pytest11"))


@pytest.fixture(scope="module")
def entry_point_path(tmp_path_factory) -> str:
    """A directory holding a distribution whose only content is pyproject's ``pytest11``
    declaration (what ``pip install`` writes into ``entry_points.txt``), to put on
    PYTHONPATH when the installed s390emu predates the plugin."""
    d = tmp_path_factory.mktemp("ep") / "s390emu_plugin-0.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: s390emu-plugin\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in _declared().items())
    (d / "entry_points.txt").write_text("[pytest11]\n" + lines)
    return str(d.parent)


def _pytest(args: list[str], entry_point_path: str) -> subprocess.CompletedProcess:
    paths = [str(ROOT)] + ([] if _installed() else [entry_point_path])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_entry_point_is_declared_and_importable():
    assert _declared() == {"s390emu": "pgalloc.testing"}
    plugin = importlib.import_module(_declared()["s390emu"])
    for hook in ("pytest_addoption", "pytest_configure", "s390_kernel", "s390_mm", "s390_version", "s390_new_mm"):
        assert callable(getattr(plugin, hook)), hook


def test_the_example_passes_with_the_plugin_from_its_entry_point(entry_point_path):
    r = _pytest([EXAMPLE], entry_point_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(rf"^{EXAMPLE_TESTS} passed in ", r.stdout, re.M), r.stdout


def test_the_example_is_not_collected_by_the_main_run():
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    assert "examples" not in testpaths          # it runs once, here, in its own pytest


def test_the_version_option_reaches_the_kernel(entry_point_path, tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\n"
                     "def test_default(s390_kernel):\n    assert s390_kernel.version == 'v64'\n\n"
                     "@pytest.mark.s390_version('v67')\n"
                     "def test_marker_wins(s390_kernel):\n    assert s390_kernel.version == 'v67'\n\n"
                     "@pytest.mark.s390_version('v99')\n"
                     "def test_bad_marker(s390_kernel):\n    pass\n")
    r = _pytest([str(probe), "--s390-version", "v64"], entry_point_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^2 passed, 1 error in ", r.stdout, re.M), r.stdout
    error = r.stdout.split("ERROR at setup of test_bad_marker")[1].split("\n=")[0]
    assert error.strip("_ \n") == ("s390_version: unknown version 'v99': one of v515, v64, seed, v66, v67, "
                                   "or a version file (.py)")


def test_a_bad_version_option_is_one_line_and_exit_4(entry_point_path):
    r = _pytest([EXAMPLE, "--s390-version", "nosuch.py"], entry_point_path)
    assert r.returncode == 4
    assert r.stderr.strip() == "ERROR: --s390-version: nosuch.py: no such version file"
