#!/usr/bin/env python3
"""Build the real-guest fixture: a real Debian s390x Linux guest under QEMU, stopped with
live processes, its dumps in every format QEMU writes, and what QEMU and the kernel said
about it (truth.json).  The tests in tests/realguest/ compare s390emu with these answers.

What it does, in order:

  1. fetch    `apt-get download` of the newest bookworm linux-image-6.1.0-*-s390x, its -dbg
              package (the debug vmlinux drgn needs, about 430 MB) and busybox-static, all
              :s390x (adds the s390x architecture and runs apt-get update when needed);
              kept in BASE/debs and never installed: dpkg-deb -x unpacks the kernel and
              busybox; of the -dbg package only vmlinux and System.map are taken out
              (dpkg-deb --fsys-tarfile, stopped once they are read: 5 s instead of 40).
  2. build    an initramfs (cpio newc + gzip, written here in Python) with busybox and
              tools/real_guest_init.sh as /init: a sleep, httpd, a shell holding 4 MiB in a
              variable and an awk loop in user mode; a reporter prints every process's
              /proc/PID/maps and /proc/PID/pagemap on the console, then a marker.
  3. boot     qemu-system-s390x (TCG, -smp 2 -m 256) with a QMP and a gdb socket; waits
              for the marker; `stop`s, re-stopping until one CPU is in problem state and
              one in the kernel (a few tries, then it keeps what it has).
  4. record   `info registers` per CPU; `dump-guest-memory` as ELF (paging false) and in
              each kdump format QEMU offers (query-dump-guest-memory-capability: Debian's
              7.2 has kdump-zlib, no lzo or snappy); each CPU's prefix from the ELF's
              notes; the VMCOREINFO note the kernel keeps in storage (the absolute
              lowcore's vmcore_info); through drgn and the debug vmlinux every process's
              mm->context.asce and pgtable_list; the tables a walk of each ASCE reaches
              and their struct pages; then QEMU's own gva2gpa for every page of every
              mapping under that process's ASCE (the CR the CPU's PSW selects is set
              through QEMU's gdb stub, asked, and restored) and for a sample of kernel
              addresses in each CPU's current space.

Output: DIR (--out; default BASE/KEY, KEY naming the kernel's and busybox's package
versions, BASE $S390EMU_REAL_GUEST or ~/.cache/s390emu/real-guest) with guest.elf,
guest-kdump-*.dump, vmcoreinfo.txt, console.log, vmlinux, System.map, vmlinuz, initrd.gz
and truth.json (its schema: docs/real-guest.md).  BASE/latest names the last DIR built
there; BASE/debs and BASE/unpacked keep the packages and what was taken out of them.  A
DIR that holds a truth.json is reused unless --rebuild; one holding anything else is
never written into.

Exit codes: 0 built or reused; 2 bad usage or a DIR that is not ours; 3 qemu-system-s390x
missing; 4 a package could not be fetched or unpacked; 5 the guest did not come up or
QEMU failed; 6 drgn is missing or could not read the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_guest_packages import PackageError, build_initramfs, choose_packages, fetch, log, unpacked  # noqa: E402
from real_guest_qemu import (  # noqa: E402
    PSW_PROBLEM, GdbStub, Guest, QemuError, gva2gpa, gva2gpa_under, psw_space, registers, stop_mixed,
)

SCHEMA_VERSION = 1
EXIT_USAGE, EXIT_NO_QEMU, EXIT_FETCH, EXIT_GUEST, EXIT_DRGN = 2, 3, 4, 5, 6
DUMP_FORMATS = {"elf": "guest.elf", "kdump-zlib": "guest-kdump-zlib.dump",
                "kdump-lzo": "guest-kdump-lzo.dump", "kdump-snappy": "guest-kdump-snappy.dump"}
PAGE = 4096


class Failure(Exception):
    """A step failed: one line for the user and the exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def default_base() -> Path:
    """BASE: $S390EMU_REAL_GUEST or ~/.cache/s390emu/real-guest."""
    return Path(os.environ.get("S390EMU_REAL_GUEST") or Path.home() / ".cache/s390emu/real-guest")


# ---------------------------------------------------------------- record

def parse_report(console: str) -> list[dict]:
    """The processes the guest's reporter printed: pid, comm, maps and pagemap entries."""
    body = console.split("@@report begin", 1)[1].split("@@report end", 1)[0]
    procs, cur, pm = [], None, None
    for line in body.replace("\r", "").splitlines():
        if line.startswith("@@proc "):
            _, pid, comm = line.split(" ", 2)
            cur = {"pid": int(pid), "comm": comm, "maps": [], "pagemap": {}}
            procs.append(cur)
        elif line.startswith("@@pagemap "):
            lo, _hi = (int(x, 16) for x in line.split()[1].split("-"))
            pm = {"base": lo, "last": None}
        elif pm is not None and (line == "*" or re.fullmatch(r"[0-9a-f]+( [0-9a-f]{16})*", line.strip())):
            _od_line(cur["pagemap"], pm, line.strip())
        elif cur is not None and re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            pm = None
            cur["maps"].append(line)
    return procs


def _od_line(out: dict, pm: dict, line: str) -> None:
    """One line of `od -A x -t x8` (two entries per 16 bytes; `*` repeats the last line
    up to the next offset) into ``out``: {va: pagemap entry}."""
    if line == "*":
        pm["repeat"] = True
        return
    off, *vals = line.split()
    off = int(off, 16)
    if pm.pop("repeat", False) and pm["last"] is not None:
        last_off, last_vals = pm["last"]
        for o in range(last_off + 16, off, 16):
            for i, v in enumerate(last_vals):
                out[pm["base"] + (o // 8 + i) * PAGE] = v
    for i, v in enumerate(vals):
        out[pm["base"] + (off // 8 + i) * PAGE] = int(v, 16)
    if vals:
        pm["last"] = (off, [int(v, 16) for v in vals])


def pagemap_address(entry: int) -> int | None:
    """The physical address a pagemap entry names, None unless present (bit 63)."""
    return (entry & ((1 << 55) - 1)) * PAGE if entry >> 63 else None


def elf_reader(path: Path):
    """read(addr, size) over the PT_LOADs (physical addresses) of QEMU's big-endian ELF core."""
    f = open(path, "rb")
    hdr = f.read(64)
    phoff, = struct.unpack_from(">Q", hdr, 32)
    phentsize, phnum = struct.unpack_from(">HH", hdr, 54)
    loads, notes = [], []
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        ptype, _fl, off, _va, pa, filesz = struct.unpack(">IIQQQQ", f.read(40))
        if ptype == 1:
            loads.append((pa, off, filesz))
        elif ptype == 4:
            f.seek(off)
            data, pos = f.read(filesz), 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from(">III", data, pos)
                pos += 12 + (namesz + 3) // 4 * 4
                notes.append((ntype, data[pos:pos + descsz]))
                pos += (descsz + 3) // 4 * 4

    def read(addr: int, size: int) -> bytes:
        for pa, off, sz in loads:
            if pa <= addr and addr + size <= pa + sz:
                f.seek(off + addr - pa)
                return f.read(size)
        raise Failure(EXIT_GUEST, f"{path.name} has no bytes at {addr:#x}")
    read.notes, read.loads = notes, loads
    return read


NT_S390_PREFIX = 0x305


def elf_prefixes(elf: Path) -> list[int]:
    """Each CPU's prefix register, from QEMU's NT_S390_PREFIX notes, in CPU order."""
    return [struct.unpack(">I", d[:4])[0] for t, d in elf_reader(elf).notes if t == NT_S390_PREFIX]


# struct lowcore.vmcore_info in 6.1's arch/s390/include/asm/lowcore.h: a __u64 at 0x0e0c
# (the struct is packed; ipib_checksum, a __u32 at 0x0e08, comes before it)
VMCORE_INFO_LOWCORE = 0xE0C


def read_vmcoreinfo(elf: Path) -> str:
    """The VMCOREINFO text: the absolute lowcore's vmcore_info field points to an ELF note
    (Elf64_Nhdr, name "VMCOREINFO") that the kernel keeps in memory."""
    read = elf_reader(elf)
    addr, = struct.unpack(">Q", read(VMCORE_INFO_LOWCORE, 8))
    namesz, descsz, _type = struct.unpack(">III", read(addr, 12))
    name = read(addr + 12, min(namesz, 16)).rstrip(b"\0")
    if name != b"VMCOREINFO" or descsz > 1 << 16:
        raise Failure(EXIT_GUEST, f"no VMCOREINFO note at {addr:#x} (lowcore vmcore_info), found {name[:16]!r}")
    return read(addr + 12 + (namesz + 3) // 4 * 4, descsz).decode().rstrip("\0")


def drgn_program(elf: Path, vmlinux: Path, vmcoreinfo: str):
    """drgn over QEMU's ELF with the kernel's VMCOREINFO and debug info.  drgn 0.3.0 makes
    physical segments only from PT_LOADs with a nonzero p_paddr, and QEMU's one PT_LOAD
    has p_paddr 0: the storage is added as physical memory here, or no page table reads."""
    try:
        import drgn
    except ImportError:
        raise Failure(EXIT_DRGN, "drgn is not installed (pip install drgn; the test extra has it)") from None
    prog = drgn.Program(vmcoreinfo=vmcoreinfo.encode())
    prog.set_core_dump(str(elf))
    prog.load_debug_info([str(vmlinux)])
    read = elf_reader(elf)
    for paddr, _off, size in read.loads:
        prog.add_memory_segment(paddr, size, lambda a, n, off, phys, base=paddr: read(base + off, n), True)
    return prog


def kernel_mms(prog) -> dict:
    """Through drgn: {pid: {comm, mm, asce, pgtable_list}} of every user task (the list as
    the frames of the struct pages on mm->context.pgtable_list), and the kernel's
    swapper_pg_dir, lowcore_ptr and vmemmap."""
    import drgn
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import page_to_phys
    from drgn.helpers.linux.pid import for_each_task
    try:
        tasks = {}
        for t in for_each_task(prog):
            if not t.mm:
                continue
            listed = [page_to_phys(pg).value_() for pg in list_for_each_entry(
                "struct page", t.mm.context.pgtable_list.address_of_(), "lru")]
            tasks[int(t.pid)] = {"comm": t.comm.string_().decode(), "mm": t.mm.value_(),
                                 "asce": int(t.mm.context.asce), "pgtable_list": listed}
        kernel = {"swapper_pg_dir": prog.symbol("swapper_pg_dir").address,
                  "lowcore_ptr": [int(prog["lowcore_ptr"][i]) for i in range(len(prog["lowcore_ptr"]))
                                  if prog["lowcore_ptr"][i]],
                  "vmemmap": int(prog["vmemmap"].value_()), "drgn": drgn.__version__}
    except (drgn.FaultError, drgn.MissingDebugInfoError, LookupError, ValueError, OSError) as e:
        raise Failure(EXIT_DRGN, f"drgn could not read the kernel: {e}") from None
    return {"tasks": tasks, "kernel": kernel}


ENTRY_INVALID, STE_LARGE = 0x20, 0x400      # region/segment entry I bit; segment entry FC (EDAT-1 frame)


def tables_of(read_phys, asce: int) -> dict[str, list[int]]:
    """The tables a walk of ``asce`` reaches: {"crst": origins, "pte": 2K page-table
    origins}.  A walker of its own (not s390emu's dat/): region entries by the ASCE's DT
    and TL and each entry's TF..TL, segment entries to their page tables."""
    crst, pte = [], []

    def walk(origin: int, level: int, tf: int, tl: int):       # level 3..1 region, 0 segment
        crst.append(origin)
        n = (tl + 1 - tf) * 512
        raw = read_phys(origin + tf * 4096, 8 * n)
        for k in range(n):
            e, = struct.unpack_from(">Q", raw, 8 * k)
            if e & ENTRY_INVALID:
                continue
            if level:
                walk(e & ~0xFFF, level - 1, (e >> 6) & 3, e & 3)
            elif not e & STE_LARGE:
                pte.append(e & ~0x7FF)
    walk(asce & ~0xFFF, (asce >> 2) & 3, 0, asce & 3)
    return {"crst": crst, "pte": pte}


def struct_pages(prog, frames) -> dict[int, dict]:
    """drgn's reading of each frame's struct page: its address, flags, _refcount (its top
    byte holds the 2K fragments' bits) and _mapcount (page_type)."""
    from drgn.helpers.linux.mm import phys_to_page
    out = {}
    for f in sorted(set(frames)):
        pg = phys_to_page(prog, f)
        out[f] = {"page": pg.value_(), "flags": int(pg.flags), "refcount": int(pg._refcount.counter) & 0xFFFFFFFF,
                  "mapcount": int(pg._mapcount.counter) & 0xFFFFFFFF}
    return out


def pages_of(maps: list[str]) -> list[int]:
    """Every page address of every mapping line."""
    out = []
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        out.extend(range(lo, hi, PAGE))
    return out


def kernel_sample(regs_all: list[dict], kernel: dict, memory: int) -> list[int]:
    """Kernel addresses worth asking: the first 2 MiB page by page, the identity map every
    1 MiB, the prefix pages, vmemmap, the top of the space (abs_lowcore, memcpy_real window)."""
    s = set(range(0, 2 << 20, PAGE)) | set(range(0, memory, 1 << 20))
    for r in regs_all:
        s |= {r["prefix"], r["prefix"] + PAGE}
    s |= {kernel["swapper_pg_dir"], kernel["vmemmap"], kernel["vmemmap"] + (memory // PAGE) * 64 - PAGE}
    s |= set(range((1 << 42) - (16 << 20), 1 << 42, 64 * PAGE)) | {(1 << 42) - PAGE, (1 << 42) - 2 * PAGE}
    return sorted(s)


def record(guest: Guest, out: Path, files: dict, memory_mb: int, ncpu: int, tries: int) -> dict:
    """Everything truth.json holds, and the dumps, with the guest stopped."""
    qmp = guest.qmp
    t0 = time.monotonic()
    regs_all, n_stops = stop_mixed(qmp, ncpu, tries)
    offered = {f["format"] if isinstance(f, dict) else f
               for f in qmp.cmd("query-dump-guest-memory-capability")["formats"]}
    dumps = {fmt: name for fmt, name in DUMP_FORMATS.items() if fmt in offered}
    for fmt, name in dumps.items():
        t = time.monotonic()
        qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{out / name}",
                **({} if fmt == "elf" else {"format": fmt}))
        (out / name).chmod(0o644)                  # QEMU writes 0400
        log(f"dump-guest-memory {fmt}: {(out / name).stat().st_size / 1e6:.1f} MB in {time.monotonic() - t:.1f} s")
    prefixes = elf_prefixes(out / DUMP_FORMATS["elf"])
    if len(prefixes) != ncpu:
        raise Failure(EXIT_GUEST, f"{DUMP_FORMATS['elf']} has {len(prefixes)} NT_S390_PREFIX notes for {ncpu} CPUs")
    for r, pfx in zip(regs_all, prefixes):
        r["prefix"] = pfx
    vmcoreinfo = read_vmcoreinfo(out / DUMP_FORMATS["elf"])
    (out / "vmcoreinfo.txt").write_text(vmcoreinfo)
    procs = parse_report(guest.console.read_text(errors="replace"))
    prog = drgn_program(out / DUMP_FORMATS["elf"], files["vmlinux"], vmcoreinfo)
    kern = kernel_mms(prog)

    def read_phys(addr, size):
        return prog.read(addr, size, True)
    kern["kernel"]["asce"] = regs_all[0]["cr"][13]           # the home space is the kernel's
    kern["kernel"]["tables"] = tables_of(read_phys, kern["kernel"]["asce"])
    gdb = GdbStub(guest.work / "gdb.sock")
    threads = gdb.thread_ids()
    if len(threads) != ncpu:
        raise Failure(EXIT_GUEST, f"gdb stub lists {len(threads)} CPUs, QMP {ncpu}")
    t_ask = time.monotonic()
    n_asked = 0
    for p in procs:
        task = kern["tasks"].get(p["pid"])
        if task is None:
            raise Failure(EXIT_GUEST, f"drgn finds no task {p['pid']} ({p['comm']}) the guest reported")
        p["asce"], p["mm"], p["pgtable_list"] = task["asce"], task["mm"], task["pgtable_list"]
        p["tables"] = tables_of(read_phys, p["asce"])
        vas = pages_of(p["maps"])
        if sorted(p["pagemap"]) != vas:
            raise Failure(EXIT_GUEST, f"the console's report of {p['pid']} ({p['comm']}) has "
                          f"{len(p['pagemap'])} pagemap entries for {len(vas)} pages: garbled, build again")
        answers = gva2gpa_under(qmp, gdb, threads[0], 0, regs_all[0], p["asce"], vas)
        p["gva2gpa"] = {f"{va:#x}": a for va, a in zip(vas, answers)}
        p["pagemap"] = {f"{va:#x}": pagemap_address(e) for va, e in sorted(p["pagemap"].items())}
        n_asked += len(vas)
    sample = kernel_sample(regs_all, kern["kernel"], memory_mb << 20)
    cpus = []
    for i, r in enumerate(regs_all):
        # a CPU in primary space runs a process: its pages too, through the CR1 it has
        # loaded itself (no gdb stub), a second way to the answers asked under that ASCE
        own = [pages_of(p["maps"]) for p in procs if psw_space(r["psw_mask"]) == "primary" and p["asce"] == r["cr"][1]]
        vas = sorted(set(sample).union(*own))
        answers = gva2gpa(qmp, i, vas)
        cpus.append({"index": i, "psw_mask": r["psw_mask"], "psw_addr": r["psw_addr"],
                     "problem_state": bool(r["psw_mask"] & PSW_PROBLEM), "space": psw_space(r["psw_mask"]),
                     "prefix": r["prefix"], "gr": r["gr"], "cr": r["cr"],
                     "gva2gpa": {f"{va:#x}": a for va, a in zip(vas, answers)}})
        n_asked += len(vas)
    if [r | {"prefix": p} for r, p in zip(registers(qmp, ncpu), prefixes)] != regs_all:
        raise Failure(EXIT_GUEST, "the CPUs' registers changed while recording")
    log(f"recorded: {n_stops} stop(s), {n_asked} gva2gpa in {time.monotonic() - t_ask:.1f} s, "
        f"{time.monotonic() - t0:.1f} s in all")
    frames = [t & ~0xFFF for q in [kern["kernel"], *procs] for kind in ("crst", "pte") for t in q["tables"][kind]]
    frames += [f for p in procs for f in p["pgtable_list"]]
    release = re.search(r"OSRELEASE=(\S+)", vmcoreinfo).group(1)
    return {"release": release, "dumps": dumps, "dump_formats_offered": sorted(offered), "cpus": cpus,
            "processes": procs, "kernel": kern["kernel"], "vmcoreinfo": "vmcoreinfo.txt",
            "struct_pages": {f"{f:#x}": v for f, v in struct_pages(prog, frames).items()}}


# ---------------------------------------------------------------- main

def hexify(doc):
    """64-bit values as "0x..." strings, as s390emu's --json writes them."""
    if isinstance(doc, dict):
        return {k: v if k in ("pid", "index", "memory_mb", "schema", "smp") else hexify(v)
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [hexify(v) for v in doc]
    if isinstance(doc, int) and not isinstance(doc, bool):
        return f"{doc:#x}"
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="the output directory (default BASE/<versions>)")
    ap.add_argument("--rebuild", action="store_true", help="build again even when DIR holds a truth.json")
    ap.add_argument("--kernel", metavar="PKG", help="the kernel package (default: the newest "
                    "linux-image-6.1.0-N-s390x apt knows)")
    ap.add_argument("--qemu", default="qemu-system-s390x", help="the QEMU binary (default: on PATH)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the guest's marker")
    ap.add_argument("--stop-tries", type=int, default=20, help="stops to catch one CPU in user mode and "
                    "one in the kernel (default 20)")
    args = ap.parse_args(argv)
    try:
        return build(args)
    except (Failure, PackageError, QemuError) as e:
        code = {PackageError: EXIT_FETCH, QemuError: EXIT_GUEST}.get(type(e)) or e.code
        print(f"real_guest: {e}", file=sys.stderr)
        return code


def build(args) -> int:
    qemu = shutil.which(args.qemu)
    if qemu is None:
        raise Failure(EXIT_NO_QEMU, f"{args.qemu} not found: apt-get install qemu-system-misc")
    base = default_base()
    t0 = time.monotonic()
    pkgs = choose_packages(args.kernel)
    key = f"{pkgs['kernel']['name'].removeprefix('linux-image-')}_{pkgs['kernel']['version']}" \
          f"+busybox_{pkgs['busybox']['version']}".replace(":", "%3a")
    out = args.out or base / key
    if (out / "truth.json").exists() and not args.rebuild:
        log(f"reusing {out} (--rebuild builds it again)")
        print(out)
        return 0
    if out.exists() and any(out.iterdir()) and not (out / "truth.json").exists():
        raise Failure(EXIT_USAGE, f"{out} holds files that are not a real guest's: not writing there")
    debs = fetch(pkgs, base / "debs")
    t_fetch = time.monotonic() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    guest = None
    try:
        t = time.monotonic()
        (base / "unpacked").mkdir(exist_ok=True)
        files = unpacked(debs, pkgs, base / "unpacked" / key, work)
        build_initramfs(files["busybox"], work / "initrd.gz")
        files.pop("busybox").unlink()
        t_build = time.monotonic() - t
        t = time.monotonic()
        guest = Guest(qemu, work, files["vmlinuz"], work / "initrd.gz", 256, 2)
        guest.wait_marker(args.timeout)
        t_boot = time.monotonic() - t
        t = time.monotonic()
        truth = record(guest, work, files, 256, 2, args.stop_tries)
        t_record = time.monotonic() - t
    except BaseException:
        if guest:
            guest.stop()
            if guest.console.exists():          # what the guest said, for the one-line error
                shutil.copy(guest.console, out.parent / f"{out.name}.failed-console.log")
                log(f"the guest's console: {out.parent / f'{out.name}.failed-console.log'}")
        shutil.rmtree(work, ignore_errors=True)
        raise
    guest.stop()
    for sock in ("qmp.sock", "gdb.sock"):
        (work / sock).unlink(missing_ok=True)
    truth = {"schema": SCHEMA_VERSION, "packages": pkgs, "memory_mb": 256, "smp": 2,
             "vmlinux": "vmlinux", "system_map": "System.map",
             "timings_s": {"fetch": round(t_fetch, 1), "build": round(t_build, 1), "boot": round(t_boot, 1),
                           "record": round(t_record, 1)}} | truth
    (work / "truth.json").write_text(json.dumps(hexify(truth), indent=1) + "\n")
    if out.exists():                          # ours (it has a truth.json): replaced whole
        shutil.rmtree(out)
    work.rename(out)
    if args.out is None:
        (base / "latest").write_text(key + "\n")
    log(f"built {out}: fetch {t_fetch:.1f} s, build {t_build:.1f} s, boot {t_boot:.1f} s, record {t_record:.1f} s")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
