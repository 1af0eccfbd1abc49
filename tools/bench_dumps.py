#!/usr/bin/env python3
"""Benchmark opening dumps of any size: ``translate`` and ``ptdump`` on the demo's dump as
it is and grown to 64 GiB, side by side in one run, seconds and peak memory per command.

The demo machine (64 MiB, allocator v66) is written three ways into a scratch directory:
its own ELF dump; the same dump with a zero tail to 64 GiB of storage (a ``PT_LOAD``
whose ``p_filesz`` is 0, as kdump writes unpopulated memory; the file stays small); and a
64 GiB sparse raw image.  Each command runs in a fresh process (``python -m
s390emu.cli``) ``--repeat`` times; the table gives the best wall time and the peak
resident memory of the child (``wait4``'s ru_maxrss), and the ratio 64 GiB / demo size.
A dump that were read whole could not even be opened at 64 GiB on a 24 GiB machine.

    python tools/bench_dumps.py
    python tools/bench_dumps.py --repeat 5 --markdown docs/benchmarks.md

The aim (issue 14): under 1 s and 150 MB per command at 64 GiB.  Exits 1 when a command
fails or when ``translate`` on the 64 GiB dumps does not print what it prints on the small
one (``ptdump``'s identity-map markers rightly move with the storage size).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgalloc.demo import build_demo  # noqa: E402
from s390emu import dump, elfcore  # noqa: E402
from benchlib import add_markdown_option, check_markdown, positive, provenance, table, write_section  # noqa: E402

BIG = 64 << 30


def write_dumps(d: Path) -> dict[str, Path]:
    """The demo's dump, the same grown to 64 GiB, and a 64 GiB sparse raw image."""
    m = build_demo("v66").machine
    small = d / "demo.elf"
    dump.save(small, m)
    notes = dump._machine_notes(m)
    chunks = dump._chunks(m.mem, dump.ZERO_RUN) + [(m.mem.size, 0, BIG - m.mem.size)]
    header, loads, data_start, _ = elfcore.header(notes, chunks)
    big = d / "demo-64g.elf"
    with open(big, "wb") as f:
        f.write(header + bytes(data_start - len(header)))
        for l in loads:
            f.write(memoryview(m.mem.data[l.paddr:l.paddr + l.filesz]))
    raw = d / "demo-64g.raw"
    with open(raw, "wb") as f:
        f.write(memoryview(m.mem.data))
        f.truncate(BIG)
    return {"demo": small, "64 GiB ELF": big, "64 GiB raw": raw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=positive, default=3, help="runs per command (best taken)")
    add_markdown_option(ap)
    args = ap.parse_args()
    check_markdown(ap, args.markdown)
    commands = {"translate": ["translate", "--cpu", "0", "--space", "primary", "0x10000000"],
                "ptdump": ["ptdump"]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dumps-") as tmp:
        files = write_dumps(Path(tmp))
        for name, argv in commands.items():
            best = {}
            for _ in range(args.repeat):           # interleaved: noise hits every file alike
                for kind, path in files.items():
                    s, mb, out = run(argv + ["--dump", str(path)])
                    out = out.replace(str(path), "DUMP")
                    prev = best.get(kind)
                    best[kind] = (min(s, prev[0]), max(mb, prev[1]), out) if prev else (s, mb, out)
            base = best["demo"]
            for kind, (s, mb, out) in best.items():
                if name == "translate" and out != base[2]:
                    sys.exit(f"bench_dumps: translate on {kind} printed something else than on the demo's dump")
                rows.append([name, kind, f"{s:.2f}", f"{mb:.0f}", f"{s / base[0]:.2f}", f"{mb / base[1]:.2f}"])
    text = table(["command", "dump", "seconds", "peak MB", "time x", "memory x"], rows)
    print(text)
    if args.markdown:
        write_section(args.markdown, "dumps", f"{provenance()}\n\n{text}")


def run(argv: list[str]) -> tuple[float, float, str]:
    """``(seconds, peak MB, stdout)`` of ``python -m s390emu.cli ARGV`` in a fresh process;
    the peak is the child's own (``wait4``), not this process's."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "s390emu.cli", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"bench_dumps: {' '.join(argv)} failed: {err.decode().strip()}")
    return seconds, usage.ru_maxrss / 1024, out.decode()


if __name__ == "__main__":
    main()
