#!/usr/bin/env python
"""Benchmark the page-table allocator emulation.

* alloc/free pairs per second for every version, checks off and on
  (``page_table_alloc`` + ``page_table_free`` run sequentially, one step at a time);
* the reachability check (``pgalloc.checks.reachability``) for 1k, 10k and 100k page
  tables in one mm, with how the cost grows.

Usage: python tools/bench_pgalloc.py [--pairs N] [--sizes 1000,10000,100000] [--markdown FILE]

--markdown FILE also rewrites the "pgalloc" section of FILE with the same tables
(tools/benchlib.py).
"""

from __future__ import annotations

import argparse
import time

from pgalloc import Kernel, VERSIONS, mm as MM
from pgalloc.checks import reachability

from benchlib import add_markdown_option, check_markdown, positive, provenance, table, write_section


def pairs_per_second(version: str, checks: bool, n: int) -> float:
    """``page_table_alloc`` + ``page_table_free`` pairs per second, one step at a time."""
    k = Kernel(version, mem_size=16 << 20, checks=checks)
    mm = MM.mm_alloc(k)
    keep = k.page_table_alloc(mm)                 # keep a half busy so pages get reused
    t0 = time.perf_counter()
    for _ in range(n):
        t = k.page_table_alloc(mm)
        k.page_table_free(mm, t)
    dt = time.perf_counter() - t0
    assert keep
    return n / dt


def reach_time(n_tables: int, version: str = "v64") -> tuple[float, int]:
    """The best of three reachability checks of one mm with ``n_tables`` page tables."""
    # n page tables = n MiB mapped; memory: ~n/2 4K pages of tables + CRSTs.
    mem = max(64 << 20, (n_tables * 2048 * 2 + (64 << 20)) & ~0xFFFFF)
    k = Kernel(version, mem_size=mem)
    mm = MM.mm_alloc(k)
    va = 0
    for _ in range(n_tables):                     # map 1 PTE per MiB: one page table each
        MM.map_range(k, mm, va, va + 4096)
        va += 1 << 20
    reachability(k)                               # warm up
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        v = reachability(k)
        best = min(best, time.perf_counter() - t0)
    assert v == []
    return best, n_tables


def sizes(text: str) -> list[int]:
    """An argparse type: comma-separated positive integers."""
    return [positive(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=positive, default=2000)
    ap.add_argument("--sizes", type=sizes, default=[1000, 10000, 100000],
                    help="page tables in the reachability check, comma-separated")
    add_markdown_option(ap)
    a = ap.parse_args()
    check_markdown(ap, a.markdown)
    print("alloc/free pairs per second (sequential, step by step)")
    print(f"{'version':8} {'checks off':>12} {'checks on':>12} {'on / off':>9}")
    pair_rows = []
    for v in VERSIONS:
        off = pairs_per_second(v, False, a.pairs)
        on = pairs_per_second(v, True, max(200, a.pairs // 5))
        print(f"{v:8} {off:12,.0f} {on:12,.0f} {on / off:9.2f}")
        pair_rows.append([v, f"{off:,.0f}", f"{on:,.0f}", f"{on / off:.2f}"])
    print("\nreachability check (one mm, every page table walked from the ASCE)")
    prev = None
    reach_rows = []
    for n in a.sizes:
        t, _ = reach_time(n)
        grow = f"x{t / prev[0]:.1f} time for x{n / prev[1]:.0f} tables" if prev else ""
        print(f"{n:>8} page tables: {t * 1e3:8.2f} ms  ({t / n * 1e6:.2f} us/table)" + (f"  {grow}" if grow else ""))
        reach_rows.append([f"{n:,}", f"{t * 1e3:.2f}", f"{t / n * 1e6:.2f}", grow or "-"])
        prev = (t, n)
    if a.markdown:
        write_section(a.markdown, "pgalloc", f"{provenance()}\n\n"
                      + table(["version", "pairs/s, checks off", "pairs/s, checks on", "on / off"], pair_rows)
                      + "\n\n" + table(["page tables", "ms", "us/table", "growth"], reach_rows))


if __name__ == "__main__":
    main()
