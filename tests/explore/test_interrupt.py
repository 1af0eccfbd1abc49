"""Progress on stderr only when asked or on a terminal, and Ctrl-C: one line, the findings
so far, exit 5, no worker tracebacks (issue 15)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from s390emu.cli import main; main()", "explore"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_progress_is_shown_when_asked_and_not_when_stderr_is_not_a_terminal():
    args = CLI + ["--version", "v64", "--max-ops", "1", "--workers", "1"]
    quiet = subprocess.run(args, env=_env(), capture_output=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == b""
    shown = subprocess.run(args + ["--progress", "--max-seconds", "100"], env=_env(), capture_output=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.splitlines()[2:] == quiet.stdout.splitlines()[2:]
    first = shown.stderr.decode().split("\r")[1]     # each level rewrites the line ("\r"), bytes kept as written
    assert first.startswith("explore v64: depth 1, ") and "% of --max-states), " in first
    assert " states/s, frontier " in first and first.endswith(" s left (--max-seconds)")


def _sigint_default() -> None:
    """In the child before exec: Ctrl-C's default action. A shell's background job (CI
    started with ``&``) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt: the search ran on and the test timed out."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _search_until(depth: int) -> tuple[subprocess.Popen, bytes]:
    """A 2-worker search of v64 at --max-ops 5 in a session of its own, and its progress
    on stderr read until it reports ``depth`` (or 120 s passed)."""
    p = subprocess.Popen(CLI + ["--version", "v64", "--max-ops", "5", "--workers", "2", "--progress"], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=_sigint_default)
    seen = b""
    deadline = time.monotonic() + 120
    while f"depth {depth},".encode() not in seen and time.monotonic() < deadline:
        seen += os.read(p.stderr.fileno(), 4096)
    return p, seen


def test_ctrl_c_prints_one_line_and_the_findings_so_far_and_exits_5():
    p, seen = _search_until(8)              # the workers share the levels by now
    os.killpg(p.pid, signal.SIGINT)         # as a terminal's Ctrl-C: the whole process group, workers too
    out, err = p.communicate(timeout=120)
    err = (seen + err).decode()
    assert p.returncode == 5, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    said = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]        # what stays on the terminal
    assert [line for line in said if line.strip()] == [next(line for line in said if line.startswith("s390emu: interrupted"))]
    report = out.decode().splitlines()
    assert report[-1].startswith("INCOMPLETE: the search was cut by an interrupt (Ctrl-C) after ")
    assert "no violation found in what was explored" in report


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def test_a_worker_killed_mid_search_ends_it_as_incomplete_with_the_findings_so_far():
    # A pool would wait for the dead worker's result for ever; the search reports it instead.
    p, seen = _search_until(6)
    workers = _children(p.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    err = (seen + err).decode()
    assert p.returncode == 5, (out, err)
    assert "Traceback" not in err
    said = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if line.rsplit("\r", 1)[-1].strip()]
    assert len(said) == 1 and said[0].startswith("s390emu: a worker process died (killed, or out of memory) after ")
    report = out.decode().splitlines()
    assert report[-1].startswith("INCOMPLETE: the search was cut by a dead worker process after ")
    assert not _children(p.pid)
