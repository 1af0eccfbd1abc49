#!/usr/bin/env python3
"""Benchmark the DAT walker against QEMU's (unicorn's LRAG), side by side in one run.

One 5-level image (R1 ASCE): an identity map of the low 128 MiB (where the benchmark's
own arrays live) plus 2^20 scattered 4K pages under several R1/R2/R3/segment entries, 5%
of them invalid. Then:

(a) batch: ``dat.translate_many`` over 1M addresses against an s390x loop run by unicorn
    in one ``emu_start`` (LG the address, LRAG, STG the result, BRCTG);
(b) scalar: ``dat.translate`` per address against one ``emu_start`` of a single LRAG per
    address (20k addresses).

Both sides' results are compared; the script exits 1 on any disagreement.
--markdown FILE also rewrites the "translate" section of FILE with the same table
(tools/benchlib.py).

    python tools/bench_translate.py            # about a minute
    python tools/bench_translate.py --batch 200000 --scalar 5000
    python tools/bench_translate.py --batch 200000 --scalar 5000 --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dat  # noqa: E402
from s390emu.memory import PhysicalMemory  # noqa: E402
from benchlib import add_markdown_option, check_markdown, positive, provenance, table, write_section  # noqa: E402
from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, Uc  # noqa: E402
from unicorn.s390x_const import (  # noqa: E402
    UC_S390X_REG_CR0, UC_S390X_REG_CR1, UC_S390X_REG_CR7, UC_S390X_REG_PSWM, UC_S390X_REG_R2,
    UC_S390X_REG_R3, UC_S390X_REG_R4, UC_S390X_REG_R5, UC_S390X_REG_R6,
)

STORAGE = 0x0800_0000          # 128 MiB, identity-mapped in the 5-level space
TABLES = 0x0010_0000           # tables are bump-allocated from here
DATA_LIMIT = 0x0300_0000       # scattered pages map frames below this
IN_ARRAY = 0x0400_0000         # the loop's input addresses (virtual == real)
OUT_ARRAY = 0x0500_0000        # the loop's results
CODE = 0x7F00_0000
PSWM = 0x0400_8001_8000_0000   # DAT on, secondary space, 64-bit
REAL_SPACE = 0x20

# LG r3,0(r4); LRAG r2,0(r3); STG r2,0(r5); LA r4,8(r4); LA r5,8(r5); BRCTG r6,<LG>
LOOP = (bytes.fromhex("E33040000004")      # LG    r3,0(,r4)
        + bytes.fromhex("E32030000003")    # LRAG  r2,0(,r3)
        + bytes.fromhex("E32050000024")    # STG   r2,0(,r5)
        + bytes.fromhex("41404008")        # LA    r4,8(,r4)
        + bytes.fromhex("41505008")        # LA    r5,8(,r5)
        + bytes.fromhex("A767FFF3"))       # BRCTG r6,*-26
LRAG_ONLY = bytes.fromhex("E32030000003")
LRAG_AT = CODE + 0x800


class Tables:
    """A bump allocator for 16K CRSTs and 2K page tables in ``mem``."""

    def __init__(self, mem: PhysicalMemory):
        self.mem, self.next = mem, TABLES

    def crst(self, empty: int) -> int:
        self.next = (self.next + 0x3FFF) & ~0x3FFF
        origin, self.next = self.next, self.next + 0x4000
        self.mem.table(origin, 2048)[:] = empty
        return origin

    def pt(self) -> int:
        origin, self.next = self.next, self.next + 0x800
        self.mem.table(origin, 256)[:] = 0x400
        return origin


def build_image(rng: np.random.Generator):
    """The 5-level image: returns ``(mem, asce, mapped_vaddr_pages)``."""
    mem = PhysicalMemory(STORAGE)
    t = Tables(mem)
    r1t = t.crst(0x2C)
    asce = r1t | 0xC | 3
    # identity map of storage: R1[0] -> R2[0] -> R3[0] -> ST[0..127] -> PTs
    r2, r3, st = t.crst(0x28), t.crst(0x24), t.crst(0x20)
    mem.write_u64(r1t, r2 | 0xF)
    mem.write_u64(r2, r3 | 0xB)
    mem.write_u64(r3, st | 0x7)
    for seg in range(STORAGE >> 20):
        pt = t.pt()
        mem.write_u64(st + 8 * seg, pt)
        mem.table(pt, 256)[:] = (np.arange(256, dtype=np.uint64) << np.uint64(12)) + np.uint64(seg << 20)
    # scattered: 8 R1 x 4 R2 x 4 R3 x 32 segments x 256 pages
    pages = []
    for rfx in rng.choice(np.arange(1, 0x800), 8, replace=False):
        r2 = t.crst(0x28)
        mem.write_u64(r1t + 8 * int(rfx), r2 | 0xF)
        for rsx in rng.choice(0x800, 4, replace=False):
            r3 = t.crst(0x24)
            mem.write_u64(r2 + 8 * int(rsx), r3 | 0xB)
            for rtx in rng.choice(0x800, 4, replace=False):
                st = t.crst(0x20)
                mem.write_u64(r3 + 8 * int(rtx), st | 0x7)
                for sx in rng.choice(0x800, 32, replace=False):
                    pt = t.pt()
                    mem.write_u64(st + 8 * int(sx), pt | 0x1)
                    frames = rng.integers(0, DATA_LIMIT >> 12, 256, dtype=np.uint64) << np.uint64(12)
                    frames[rng.random(256) < 0.05] |= np.uint64(0x400)      # invalid
                    mem.table(pt, 256)[:] = frames
                    base = (int(rfx) << 53 | int(rsx) << 42 | int(rtx) << 31 | int(sx) << 20)
                    pages.append(np.uint64(base) + (np.arange(256, dtype=np.uint64) << np.uint64(12)))
    assert t.next < IN_ARRAY, "tables overflow into the arrays"
    return mem, asce, np.concatenate(pages)


def new_cpu(mem: PhysicalMemory, asce: int) -> Uc:
    """A unicorn s390x CPU over a copy of ``mem`` with CR7 = ``asce``."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, mem.size)
    uc.mem_write(0, mem.data.tobytes())
    uc.mem_map(CODE, 0x1000)
    uc.mem_write(CODE, LOOP)
    uc.mem_write(LRAG_AT, LRAG_ONLY)
    uc.reg_write(UC_S390X_REG_CR0, 0)
    uc.reg_write(UC_S390X_REG_CR1, REAL_SPACE)     # instruction fetch untranslated
    uc.reg_write(UC_S390X_REG_CR7, asce)           # operands and LRAG: the 5-level space
    return uc


def expected_lrag(addrs: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """What LRAG leaves in R1 for these ``translate_many`` results (this QEMU zeroes the
    high word on cc 3)."""
    return np.where(codes == 0, addrs, np.uint64(0x8000_0000) | codes.astype(np.uint64))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=positive, default=1_000_000, help="addresses in the batch part")
    ap.add_argument("--scalar", type=positive, default=20_000, help="addresses in the scalar part")
    ap.add_argument("--seed", type=int, default=390)
    add_markdown_option(ap)
    args = ap.parse_args(argv)
    if args.batch * 8 > OUT_ARRAY - IN_ARRAY:
        ap.error("--batch: at most 2M addresses fit the arrays")
    if args.scalar > args.batch:
        ap.error("--scalar: at most --batch addresses (the scalar part walks the batch's first ones)")
    check_markdown(ap, args.markdown)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    mem, asce, pages = build_image(rng)
    vaddrs = pages[rng.integers(0, len(pages), args.batch)] | rng.integers(0, 0x1000, args.batch,
                                                                           dtype=np.uint64)
    mem.table(IN_ARRAY, args.batch)[:] = vaddrs           # the loop's input, big-endian
    uc = new_cpu(mem, asce)
    print(f"image: 5-level R1 ASCE {asce:#x}, {len(pages):,} scattered pages + "
          f"{STORAGE >> 12:,} identity pages, {STORAGE >> 20} MiB storage "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    bad = 0

    # (a) batch
    dat.translate_many(mem, asce, vaddrs[:1000])          # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        addrs, codes = dat.translate_many(mem, asce, vaddrs)
        best = min(best, time.perf_counter() - t)
    uc.reg_write(UC_S390X_REG_R4, IN_ARRAY)
    uc.reg_write(UC_S390X_REG_R5, OUT_ARRAY)
    uc.reg_write(UC_S390X_REG_R6, args.batch)
    uc.reg_write(UC_S390X_REG_PSWM, PSWM)
    t = time.perf_counter()
    uc.emu_start(CODE, CODE + len(LOOP))
    loop = time.perf_counter() - t
    got = np.frombuffer(uc.mem_read(OUT_ARRAY, 8 * args.batch), dtype=">u8").astype(np.uint64)
    mism = int(np.count_nonzero(got != expected_lrag(addrs, codes)))
    bad += mism
    n = args.batch
    print(f"\n(a) batch, {n:,} addresses ({np.count_nonzero(codes):,} faulting), results "
          f"{'identical' if not mism else f'DIFFER in {mism:,}'}")
    print(f"    dat.translate_many        {best:8.3f} s  {n / best / 1e6:8.2f} M addr/s  (best of 3)")
    print(f"    unicorn LRAG s390x loop   {loop:8.3f} s  {n / loop / 1e6:8.2f} M addr/s")
    print(f"    ratio translate_many / QEMU loop: {loop / best:.2f}x  (aim >= 2x)")
    rows = [["(a) batch: `dat.translate_many` vs an LRAG loop in one `emu_start`", f"{n:,}",
             f"{n / best / 1e6:.2f} M", f"{n / loop / 1e6:.2f} M", f"{loop / best:.2f}x (aim >= 2x)",
             "identical" if not mism else f"DIFFER in {mism:,}"]]

    # (b) scalar
    sv = [int(v) for v in vaddrs[:args.scalar]]
    translate = dat.translate
    t = time.perf_counter()
    ours = []
    for v in sv:
        try:
            ours.append(translate(mem, asce, v).absolute)
        except dat.TranslationException as e:
            ours.append(0x8000_0000 | e.code)
    scal = time.perf_counter() - t
    t = time.perf_counter()
    theirs = []
    for v in sv:
        uc.reg_write(UC_S390X_REG_R3, v)
        uc.reg_write(UC_S390X_REG_PSWM, PSWM)
        uc.emu_start(LRAG_AT, LRAG_AT + 6)
        theirs.append(uc.reg_read(UC_S390X_REG_R2))
    per = time.perf_counter() - t
    mism = sum(a != b for a, b in zip(ours, theirs))
    bad += mism
    n = len(sv)
    print(f"\n(b) scalar, {n:,} addresses, results {'identical' if not mism else f'DIFFER in {mism:,}'}")
    print(f"    dat.translate             {scal:8.3f} s  {n / scal / 1e3:8.1f} k addr/s")
    print(f"    unicorn emu_start/address {per:8.3f} s  {n / per / 1e3:8.1f} k addr/s")
    print(f"    ratio translate / emu_start-per-address: {per / scal:.2f}x  (aim >= 5x)")
    rows.append(["(b) scalar: `dat.translate` vs one `emu_start` per address", f"{n:,}",
                 f"{n / scal / 1e3:.1f} k", f"{n / per / 1e3:.1f} k", f"{per / scal:.2f}x (aim >= 5x)",
                 "identical" if not mism else f"DIFFER in {mism:,}"])
    if args.markdown:
        write_section(args.markdown, "translate",
                      f"{provenance()}  The image: a 5-level R1 ASCE, {len(pages):,} scattered pages "
                      f"(5 % invalid) and {STORAGE >> 12:,} identity-mapped ones.\n\n"
                      + table(["part", "addresses", "ours, addr/s", "unicorn, addr/s", "ours / unicorn",
                               "results"], rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
