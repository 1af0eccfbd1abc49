"""Mutation testing, one package at a time: ``python tools/mutation.py PACKAGE``.

PACKAGE is one of ``dat``, ``checks``, ``versions``, ``dump``, ``inspect`` (the table
``PACKAGES`` below: which files are mutated and which tests may kill their mutants).
The tool is mutmut 3 (``pip install mutmut``), configured in ``pyproject.toml``'s
``[tool.mutmut]``; mutmut reads that section from the current directory only, so this
runner copies the project's tracked files into ``build/mutation/PACKAGE/`` and narrows
the section there (``only_mutate`` and the test selection).  The copy keeps mutmut's
``mutants/`` cache, so a second run re-tests only what changed.  mutmut runs each
mutant against only the selected tests that execute the mutated function.

Options: ``--max-children N`` (default 1: the machine is shared), ``--only GLOB`` (a
subset of mutants by mutmut name, e.g. ``'pgalloc.checks.x_legal_byte*'``; repeatable), ``--list``
(print the survivors of the last run and the score without running), ``--survivors``
(re-test only the mutants the last run did not kill: survived, suspicious, not checked; after new tests).  The last line
printed is ``PACKAGE: killed K of T non-skipped mutants, P % (S survived, N with no test)``;
mutmut's own output goes to ``build/mutation/PACKAGE/mutmut.log`` (exit 2 if it failed,
e.g. a test that fails without any mutant); otherwise the exit code is 0 whatever the
score, unless ``--fail-under PCT`` is given (the CI sample, docs/testing.md).

mutmut is run through ``tools/mutmut_steps.py``, which also mutates the ``@step``
methods of the kernel functions (mutmut alone skips every decorated function).

``PYTHONPATH`` is dropped for mutmut: it puts the mutated copy first on ``sys.path``
itself, and a worktree on ``PYTHONPATH`` would shadow it.  ``OMP_NUM_THREADS=1``: drgn's
OpenMP threads do not survive mutmut's fork (a forked run would hang, a false kill).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: package -> (mutated files, as mutmut's only_mutate globs; the tests that may kill them, with
#: any pytest arguments that narrow them, e.g. "-k", EXPR)
PACKAGES = {
    "dat": (["dat/*"], ["tests/dat", "tests/dump/test_ptdump.py", "tests/dump/test_ptdump_large_frames.py",
                        "tests/pgalloc/test_checks_edges.py", "tests/pgalloc/test_invariants.py",
                        "tests/cli/test_translate.py"]),
    # the invariants: those of the bytes (checks.py) and those of the readers in flight (inflight.py)
    "checks": (["pgalloc/checks.py", "pgalloc/inflight.py"],
               ["tests/pgalloc/test_checks_edges.py", "tests/pgalloc/test_invariants.py",
                "tests/pgalloc/test_state_machine.py", "tests/pgalloc/test_dat_after_free.py",
                "tests/pgalloc/test_inflight.py", "tests/pgalloc/test_testing.py",
                "tests/explore/test_walkers.py", "tests/explore/test_trace_inflight.py",
                "tests/dump/test_check.py",       # check --dump runs the checks on a dump's kernel
                # Left out: the explorer's searches of whole versions. The merged versions' clean
                # searches at --max-ops 3 and 4 take 13 of the 13.5 minutes these tests take under
                # mutmut's tracing (a weakened check cannot fail a clean search; the invariants'
                # clean neighbours catch a stricter one), and the calibration patch's two searches
                # at --max-ops 3 (a module fixture) take about a minute per mutant of inflight.py.
                # Each invariant is pinned by its smallest state in process (test_inflight,
                # test_testing, test_invariants); a mutant only a search kills is a missing test.
                "-k", "not merged_versions_are_clean and not patch_looks_clean "
                      "and not setpageactive_is_found_by_a_walker"]),
    "versions": (["pgalloc/versions/*"], ["tests/pgalloc"]),
    "dump": (["s390emu/dump.py", "s390emu/elfcore.py", "s390emu/kdump.py", "s390emu/vmcoreinfo.py"],
             ["tests/dump", "tests/realguest"]),
    "inspect": (["s390emu/inspect/*"], ["tests/dump", "tests/cli", "tests/realguest"]),
}

#: mutmut's exit-code statuses that count as killed (a timeout is a kill: the mutant hung;
#: a segfault too: the mutant crashed the test process, e.g. ctypes declared wrong for libkdumpfile)
KILLED = ("killed", "timeout", "segfault")


def _copy_project(dest: Path) -> None:
    """Copy the tracked (and new, unignored) files into ``dest``, leaving its ``mutants/``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _narrow_config(dest: Path, mutate: list[str], tests: list[str]) -> None:
    """Rewrite the copy's ``[tool.mutmut]`` so that it mutates ``mutate`` against ``tests``."""
    text = (dest / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.mutmut\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    body = section.group(1)
    # paths that exist in the copy; other arguments ("-k", an expression) passed as they are
    existing = [t for i, t in enumerate(tests) if (dest / t).exists() or t.startswith("-")
                or (i and tests[i - 1].startswith("-"))]
    body = re.sub(r"^only_mutate = .*$", f"only_mutate = {json.dumps(mutate)}", body, flags=re.M)
    body = re.sub(r"^pytest_add_cli_args_test_selection = .*$",
                  f"pytest_add_cli_args_test_selection = {json.dumps(existing)}", body, flags=re.M)
    (dest / "pyproject.toml").write_text(text[:section.start(1)] + body + text[section.end(1):])


def _statuses(dest: Path) -> dict[str, str]:
    """``mutant name -> status`` of the last run in ``dest``."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=dest,
                         capture_output=True, text=True, env=_env()).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    return {name: status for name, status in pairs}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # mutmut forks each mutant's run from a process whose tests already ran drgn, whose
    # DWARF indexing uses an OpenMP team: libgomp's threads do not survive fork, so the
    # child's next index waits on a barrier forever and the mutant "times out" (counted
    # killed).  With one OpenMP thread there is no team to lose.
    env["OMP_NUM_THREADS"] = "1"
    return env


def main(argv: list[str] | None = None) -> int:
    """Run (or with ``--list`` only report) mutation testing of one package."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", choices=sorted(PACKAGES))
    ap.add_argument("--max-children", type=int, default=1)
    ap.add_argument("--only", action="append", default=[], help="a glob over mutmut's mutant names (repeatable)")
    ap.add_argument("--fail-under", type=float, default=None, help="exit 1 if the score (%%) is lower")
    ap.add_argument("--list", action="store_true", help="report the last run, do not run")
    ap.add_argument("--survivors", action="store_true", help="re-test only what the last run did not kill")
    a = ap.parse_args(argv)
    dest = ROOT / "build" / "mutation" / a.package
    # everything the last run did not kill: survived, suspicious (slow, finished), no tests, not checked
    again = ([n for n, s in _statuses(dest).items() if s not in KILLED + ("skipped",)]
             if a.survivors and dest.exists() else [])
    if not a.list and not (a.survivors and not again):
        dest.mkdir(parents=True, exist_ok=True)
        _copy_project(dest)
        _narrow_config(dest, *PACKAGES[a.package])
        # mutmut itself, but with the @step methods mutated too (tools/mutmut_steps.py)
        cmd = [sys.executable, str(ROOT / "tools" / "mutmut_steps.py"), "run", "--max-children", str(a.max_children)]
        cmd += a.only or again
        with open(dest / "mutmut.log", "w") as log:
            done = subprocess.run(cmd, cwd=dest, env=_env(), stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            print(f"mutmut failed (exit {done.returncode}): see {dest / 'mutmut.log'}", file=sys.stderr)
            return 2
    status = _statuses(dest)
    if a.only:
        status = {n: s for n, s in status.items() if any(fnmatch.fnmatch(n, g) for g in a.only)}
    for name, s in sorted(status.items()):
        if s not in KILLED:
            print(f"{name}: {s}")
    counted = [s for s in status.values() if s not in ("skipped", "not checked")]
    killed = sum(s in KILLED for s in counted)
    score = 100.0 * killed / len(counted) if counted else 100.0
    print(f"{a.package}: killed {killed} of {len(counted)} non-skipped mutants, {score:.1f} % "
          f"({sum(s == 'survived' for s in counted)} survived, {sum(s == 'no tests' for s in counted)} with no test)")
    return 1 if a.fail_under is not None and score < a.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
