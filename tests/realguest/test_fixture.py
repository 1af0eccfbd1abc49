"""The fixture never skips silently in CI: without a built guest the tests skip locally
(saying how to build one) and fail when CI is set."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT


def run_without_guest(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"S390EMU_REAL_GUEST": str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
                           "tests/realguest/test_translate.py::test_the_dumps_cpu_notes_are_qemus_registers"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_without_a_guest_the_tests_skip_locally_and_say_how_to_build_one(tmp_path):
    p = run_without_guest(tmp_path, None)
    assert p.returncode == 0 and "1 skipped" in p.stdout, p.stdout
    assert f"no real guest in {tmp_path}" in p.stdout and "tools/real_guest.py" in p.stdout


def test_without_a_guest_the_tests_fail_in_ci(tmp_path):
    p = run_without_guest(tmp_path, "true")
    assert p.returncode == 1 and "1 error" in p.stdout and "CI has no real guest" in p.stdout, p.stdout
