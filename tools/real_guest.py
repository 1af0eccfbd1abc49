#!/usr/bin/env python3
"""Build the real-guest fixture: a real Debian s390x Linux guest under QEMU, stopped with
live processes, its dumps in every format QEMU writes, and what QEMU and the kernel said
about it (truth.json).  The tests in tests/realguest/ compare s390emu with these answers.

What it does, in order:

  1. fetch    `apt-get download` of the newest bookworm linux-image-6.1.0-*-s390x, its -dbg
              package (the debug vmlinux drgn needs, about 430 MB) and busybox-static, all
              :s390x (adds the s390x architecture and runs apt-get update when needed);
              kept in BASE/debs and never installed, only unpacked with dpkg-deb -x.
  2. build    an initramfs (cpio newc + gzip, written here in Python) with busybox and
              tools/real_guest_init.sh as /init: a sleep, httpd, a shell holding 4 MiB in a
              variable and an awk loop in user mode; a reporter prints every process's
              /proc/PID/maps and /proc/PID/pagemap on the console, then a marker.
  3. boot     qemu-system-s390x (TCG, -smp 2 -m 256) with a QMP and a gdb socket; waits
              for the marker; `stop`s, re-stopping until one CPU is in problem state and
              one in the kernel (a few tries, then it keeps what it has).
  4. record   `info registers` per CPU; `dump-guest-memory` as ELF (paging false),
              kdump-zlib, kdump-lzo and kdump-snappy; the VMCOREINFO note the kernel keeps
              in memory (the absolute lowcore's vmcore_info field); through drgn and the
              debug vmlinux, every process's mm->context.asce; then QEMU's own gva2gpa for
              every page of every mapping under that process's ASCE (the CR the CPU's PSW
              selects is set through QEMU's gdb stub, asked, and restored) and for a
              sample of kernel addresses in each CPU's current space.

Output: DIR (--out, default BASE/<kernel-version>+busybox-<version>, BASE being
$S390EMU_REAL_GUEST or ~/.cache/s390emu/real-guest) with guest.elf, guest-kdump-zlib.dump,
guest-kdump-lzo.dump and guest-kdump-snappy.dump (those of the formats this QEMU build
offers: query-dump-guest-memory-capability; Debian's has no lzo), vmcoreinfo.txt, console.log, vmlinux,
System.map, vmlinuz, initrd.gz and truth.json (schema: tools/real_guest_schema.md).
BASE/latest names the last DIR built there.  A DIR that holds a truth.json is reused
unless --rebuild; a DIR holding anything else is never written into.

Exit codes: 0 built or reused; 2 bad usage or a DIR that is not ours; 3 qemu-system-s390x
missing; 4 a package could not be fetched or unpacked; 5 the guest did not come up or
QEMU failed; 6 drgn is missing or could not read the kernel.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMA_VERSION = 1
EXIT_USAGE, EXIT_NO_QEMU, EXIT_FETCH, EXIT_GUEST, EXIT_DRGN = 2, 3, 4, 5, 6
MARKER = "S390EMU-REAL-GUEST-READY"
INIT = Path(__file__).with_name("real_guest_init.sh")
DUMP_FORMATS = {"elf": "guest.elf", "kdump-zlib": "guest-kdump-zlib.dump",
                "kdump-lzo": "guest-kdump-lzo.dump", "kdump-snappy": "guest-kdump-snappy.dump"}
PSW_PROBLEM = 1 << 48          # PSW bit 15: problem state
PAGE = 4096


class Failure(Exception):
    """A step failed: one line for the user and the exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def log(msg: str) -> None:
    print(f"real_guest: {msg}", file=sys.stderr, flush=True)


def default_base() -> Path:
    """BASE: $S390EMU_REAL_GUEST or ~/.cache/s390emu/real-guest."""
    return Path(os.environ.get("S390EMU_REAL_GUEST") or Path.home() / ".cache/s390emu/real-guest")


# ---------------------------------------------------------------- 1. fetch

def run(cmd: list[str], code: int, what: str, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure is ``Failure(code)`` naming ``what`` and the tool's last line."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise Failure(code, f"{what}: {cmd[0]} not found") from None
    if p.returncode:
        last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or [f"exit {p.returncode}"]
        raise Failure(code, f"{what}: {last[0]}")
    return p


def ensure_s390x_lists() -> None:
    """Add the s390x architecture and update the lists when apt does not know its kernels."""
    archs = run(["dpkg", "--print-foreign-architectures"], EXIT_FETCH, "dpkg").stdout.split()
    if "s390x" not in archs:
        log("dpkg --add-architecture s390x && apt-get update")
        run(["dpkg", "--add-architecture", "s390x"], EXIT_FETCH, "dpkg --add-architecture s390x")
        run(["apt-get", "update", "-qq"], EXIT_FETCH, "apt-get update")
    elif not kernel_packages():
        run(["apt-get", "update", "-qq"], EXIT_FETCH, "apt-get update")


def kernel_packages() -> list[str]:
    """The bookworm 6.1 s390x kernel image packages apt knows (no -dbg, no -unsigned)."""
    p = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-s390x$"],
                       capture_output=True, text=True)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def candidate(pkg: str) -> str:
    """apt's candidate version of ``pkg`` (``name:arch``)."""
    out = run(["apt-cache", "policy", pkg], EXIT_FETCH, f"apt-cache policy {pkg}").stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise Failure(EXIT_FETCH, f"apt has no candidate for {pkg}")
    return m.group(1)


def choose_packages(kernel: str | None) -> dict[str, dict]:
    """The three packages to fetch: {role: {name, version}}; the newest ABI unless ``kernel``."""
    ensure_s390x_lists()
    if kernel is None:
        names = kernel_packages()
        if not names:
            raise Failure(EXIT_FETCH, "apt knows no linux-image-6.1.0-*-s390x (is bookworm in sources.list?)")
        kernel = max(names, key=lambda n: int(re.search(r"6\.1\.0-(\d+)-", n).group(1)))
    pk = {"kernel": kernel, "dbg": f"{kernel}-dbg", "busybox": "busybox-static"}
    return {role: {"name": name, "version": candidate(f"{name}:s390x")} for role, name in pk.items()}


def fetch(pkgs: dict[str, dict], debs: Path) -> dict[str, Path]:
    """The .deb of each package in ``debs``, downloaded with apt-get download when absent."""
    debs.mkdir(parents=True, exist_ok=True)
    found = {}
    for role, p in pkgs.items():
        # apt-get download names files name_version_arch.deb, the epoch's ':' as %3a
        path = debs / f"{p['name']}_{p['version'].replace(':', '%3a')}_s390x.deb"
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=debs) as tmp:
                t0 = time.monotonic()
                run(["apt-get", "download", f"{p['name']}:s390x={p['version']}"], EXIT_FETCH,
                    f"apt-get download {p['name']}", cwd=tmp)
                got = list(Path(tmp).glob("*.deb"))
                if len(got) != 1:
                    raise Failure(EXIT_FETCH, f"apt-get download {p['name']} left {len(got)} files")
                got[0].rename(path)
                log(f"fetched {path.name} ({path.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s)")
        found[role] = path
    return found


def deb_member(deb: Path, member: str, dest: Path) -> None:
    """Extract one file of ``deb``'s data (path inside, ``./...``) to ``dest``, without
    unpacking the rest (the -dbg package's modules are most of its 430 MB)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dp:
        import tarfile
        with tarfile.open(fileobj=dp.stdout, mode="r|") as tar:
            for ti in tar:
                if ti.name == member:
                    with tar.extractfile(ti) as src, open(dest, "xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    dp.kill()
                    return
    raise Failure(EXIT_FETCH, f"{deb.name} has no {member}")


UNPACKED = ("vmlinuz", "busybox", "vmlinux", "System.map")


def unpacked(debs: dict[str, Path], pkgs: dict[str, dict], cache: Path, work: Path) -> dict[str, Path]:
    """vmlinuz, busybox, vmlinux and System.map in ``work``: linked from ``cache`` (the
    files unpacked from these packages before), unpacking them there first when absent."""
    if not all((cache / n).exists() for n in UNPACKED):
        tmp = Path(tempfile.mkdtemp(prefix=".unpack.", dir=cache.parent))
        try:
            unpack(debs, pkgs, tmp)
            if cache.exists():
                shutil.rmtree(cache)
            tmp.rename(cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for n in UNPACKED:
        files[n] = work / n
        try:
            os.link(cache / n, files[n])
        except OSError:
            shutil.copy2(cache / n, files[n])
    return files


def unpack(debs: dict[str, Path], pkgs: dict[str, dict], work: Path) -> dict[str, Path]:
    """vmlinuz, System.map, vmlinux and busybox from the packages, into ``work``."""
    release = pkgs["kernel"]["name"].removeprefix("linux-image-")
    tree = work / "kernel-pkg"
    run(["dpkg-deb", "-x", str(debs["kernel"]), str(tree)], EXIT_FETCH, "dpkg-deb -x kernel")
    bb = work / "busybox-pkg"
    run(["dpkg-deb", "-x", str(debs["busybox"]), str(bb)], EXIT_FETCH, "dpkg-deb -x busybox")
    files = {"vmlinuz": work / "vmlinuz", "busybox": work / "busybox"}
    (tree / f"boot/vmlinuz-{release}").rename(files["vmlinuz"])
    (bb / "bin/busybox").rename(files["busybox"])
    shutil.rmtree(tree)
    shutil.rmtree(bb)
    files["vmlinux"], files["System.map"] = work / "vmlinux", work / "System.map"
    t0 = time.monotonic()
    deb_member(debs["dbg"], f"./usr/lib/debug/boot/System.map-{release}", files["System.map"])
    deb_member(debs["dbg"], f"./usr/lib/debug/boot/vmlinux-{release}", files["vmlinux"])
    log(f"unpacked the debug vmlinux in {time.monotonic() - t0:.1f} s")
    return files


# ---------------------------------------------------------------- 2. build

def cpio_newc(entries) -> bytes:
    """A cpio archive in the newc format the kernel unpacks: ``entries`` are
    (name, mode, data, rdev_major, rdev_minor); the trailer is added."""
    out = bytearray()

    def pad():
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, major, minor) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0, 0)], 1):
        fields = [ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, major, minor,
                  len(name) + 1, 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        pad()
        out += data
        pad()
    return bytes(out)


def build_initramfs(busybox: Path, dest: Path) -> None:
    """initrd.gz: /bin/busybox, /bin/sh, /dev/console and /init (tools/real_guest_init.sh)."""
    d, f, lnk = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFLNK | 0o777
    entries = [(n, d, b"", 0, 0) for n in ("bin", "dev", "proc", "sys", "tmp")]
    entries += [("bin/busybox", f, busybox.read_bytes(), 0, 0), ("bin/sh", lnk, b"busybox", 0, 0),
                ("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1), ("init", f, INIT.read_bytes(), 0, 0)]
    dest.write_bytes(gzip.compress(cpio_newc(entries), mtime=0))


# ---------------------------------------------------------------- 3. QEMU, QMP and the gdb stub

class Qmp:
    """A QMP client over a unix socket: ``cmd`` sends one command and returns its result."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self._read()                                   # the greeting
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise Failure(EXIT_GUEST, "QEMU closed its QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name: str, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise Failure(EXIT_GUEST, f"QMP {name}: {reply['error'].get('desc')}")
        return reply["return"]

    def hmp(self, line: str, cpu: int | None = None) -> str:
        """A human-monitor command, on CPU ``cpu`` when given."""
        args = {"command-line": line} | ({"cpu-index": cpu} if cpu is not None else {})
        return self.cmd("human-monitor-command", **args)


class GdbStub:
    """The least of the GDB remote protocol needed to read and write a CPU's registers."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buf = b""
        self.regs = self._register_numbers()

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise Failure(EXIT_GUEST, "QEMU closed its gdb socket")
        return data

    def packet(self, body: str) -> str:
        """Send ``body``, return the reply's body (acks handled, notifications skipped)."""
        raw = body.encode()
        self.sock.sendall(b"$" + raw + b"#%02x" % (sum(raw) & 0xFF))
        while True:
            while b"#" not in self.buf or len(self.buf) < self.buf.index(b"#") + 3:
                self.buf += self._recv()
            start = self.buf.find(b"$")
            if start < 0:                                  # only acks so far
                self.buf = self.buf[self.buf.index(b"#"):]
                continue
            end = self.buf.index(b"#", start)
            reply, self.buf = self.buf[start + 1:end], self.buf[end + 3:]
            self.sock.sendall(b"+")
            return reply.decode()

    def _xfer(self, annex: str) -> str:
        text, off = "", 0
        while True:
            r = self.packet(f"qXfer:features:read:{annex}:{off:x},ffff")
            if not r or r[0] not in "ml":
                raise Failure(EXIT_GUEST, f"gdb stub: no {annex} ({r!r})")
            text += r[1:]
            off += len(r) - 1
            if r[0] == "l":
                return text

    def _register_numbers(self) -> dict[str, int]:
        """Register name -> gdb number, from target.xml and the features it includes."""
        self.packet("qSupported:xmlRegisters=s390")
        regs, n = {}, 0

        def walk(annex):
            nonlocal n
            xml = self._xfer(annex)
            for m in re.finditer(r'<xi:include href="([^"]+)"/>|<reg ([^>]*)>', xml):
                if m.group(1):
                    walk(m.group(1))
                    continue
                attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                n = int(attrs.get("regnum", n))
                regs[attrs["name"]] = n
                n += 1
        walk("target.xml")
        return regs

    def thread_ids(self) -> list[str]:
        ids, r = [], self.packet("qfThreadInfo")
        while r.startswith("m"):
            ids += r[1:].split(",")
            r = self.packet("qsThreadInfo")
        return ids

    def select(self, thread: str) -> None:
        if self.packet(f"Hg{thread}") != "OK":
            raise Failure(EXIT_GUEST, f"gdb stub refused thread {thread}")

    def read(self, name: str) -> int:
        return int(self.packet(f"p{self.regs[name]:x}"), 16)

    def write(self, name: str, value: int) -> None:
        if self.packet(f"P{self.regs[name]:x}={value:016x}") != "OK":
            raise Failure(EXIT_GUEST, f"gdb stub refused to write {name}")


def parse_registers(text: str) -> dict:
    """PSW, GRs and CRs from s390x `info registers` text (QEMU 7.2 prints no prefix there:
    it comes from the ELF dump's NT_S390_PREFIX notes)."""
    m = re.search(r"PSW=mask ([0-9a-f]+) addr ([0-9a-f]+)", text)
    regs = {"psw_mask": int(m.group(1), 16), "psw_addr": int(m.group(2), 16)}
    for kind, key in (("R", "gr"), ("C", "cr")):
        vals = dict(re.findall(rf"\b{kind}(\d\d)=([0-9a-f]{{16}})", text))
        regs[key] = [int(vals[f"{i:02d}"], 16) for i in range(16)]
    return regs


def psw_space(mask: int) -> str:
    """The space the PSW's ASC selects, as gva2gpa uses it (home, else primary)."""
    return "home" if (mask >> 46) & 3 == 3 else "primary"


def gva2gpa(qmp: Qmp, cpu: int, vaddrs) -> list[int | None]:
    """QEMU's own translation of each address on ``cpu``: absolute address or None."""
    out = []
    for va in vaddrs:
        r = qmp.hmp(f"gva2gpa {va:#x}", cpu)
        m = re.match(r"gpa: (0x[0-9a-f]+|0)\s*$", r)
        if not m and "Unmapped" not in r:
            raise Failure(EXIT_GUEST, f"gva2gpa {va:#x}: {r.strip()!r}")
        out.append(int(m.group(1), 16) if m else None)
    return out


class Guest:
    """A running qemu-system-s390x with its QMP, gdb and console files in ``work``."""

    def __init__(self, qemu: str, work: Path, vmlinuz: Path, initrd: Path, memory_mb: int, smp: int):
        self.work = work
        self.console = work / "console.log"
        self.proc = subprocess.Popen(
            [qemu, "-M", "s390-ccw-virtio", "-accel", "tcg", "-cpu", "max", "-smp", str(smp),
             "-m", str(memory_mb), "-kernel", str(vmlinuz), "-initrd", str(initrd),
             "-append", "console=ttysclp0 rdinit=/init", "-display", "none", "-nodefaults",
             "-serial", f"file:{self.console}", "-qmp", f"unix:{work}/qmp.sock,server=on,wait=off",
             "-gdb", f"unix:{work}/gdb.sock,server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(work / "qemu.stderr", "w"))
        self.qmp = None

    def wait_marker(self, timeout: float) -> str:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                err = (self.work / "qemu.stderr").read_text().strip().splitlines()[-1:] or [""]
                raise Failure(EXIT_GUEST, f"QEMU exited ({self.proc.returncode}) before the marker: {err[0]}")
            if self.qmp is None and (self.work / "qmp.sock").exists():
                self.qmp = Qmp(self.work / "qmp.sock")
            if self.console.exists():
                text = self.console.read_text(errors="replace")
                if MARKER in text:
                    return text
            time.sleep(0.5)
        raise Failure(EXIT_GUEST, f"no {MARKER} on the console after {timeout:.0f} s (see {self.console})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def registers(qmp: Qmp, ncpu: int) -> list[dict]:
    return [parse_registers(qmp.hmp("info registers", i)) for i in range(ncpu)]


def stop_mixed(qmp: Qmp, ncpu: int, tries: int) -> tuple[list[dict], int]:
    """``stop`` until one CPU is in problem state and one is not (at most ``tries``)."""
    for n in range(1, tries + 1):
        qmp.cmd("stop")
        regs = registers(qmp, ncpu)
        problem = [bool(r["psw_mask"] & PSW_PROBLEM) for r in regs]
        if any(problem) and not all(problem) or n == tries:
            return regs, n
        qmp.cmd("cont")
        time.sleep(0.3 + 0.1 * n)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- 4. record

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
    import struct
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
    read.notes = notes
    return read


NT_S390_PREFIX = 0x305


def elf_prefixes(elf: Path) -> list[int]:
    """Each CPU's prefix register, from QEMU's NT_S390_PREFIX notes, in CPU order."""
    import struct
    return [struct.unpack(">I", d[:4])[0] for t, d in elf_reader(elf).notes if t == NT_S390_PREFIX]


# struct lowcore.vmcore_info in 6.1's arch/s390/include/asm/lowcore.h: a __u64 at 0x0e0c
# (the struct is packed; ipib_checksum, a __u32 at 0x0e08, comes before it)
VMCORE_INFO_LOWCORE = 0xE0C


def read_vmcoreinfo(elf: Path) -> str:
    """The VMCOREINFO text: the absolute lowcore's vmcore_info field points to an ELF note
    (Elf64_Nhdr, name "VMCOREINFO") that the kernel keeps in memory."""
    import struct
    read = elf_reader(elf)
    addr, = struct.unpack(">Q", read(VMCORE_INFO_LOWCORE, 8))
    namesz, descsz, _type = struct.unpack(">III", read(addr, 12))
    name = read(addr + 12, min(namesz, 16)).rstrip(b"\0")
    if name != b"VMCOREINFO" or descsz > 1 << 16:
        raise Failure(EXIT_GUEST, f"no VMCOREINFO note at {addr:#x} (lowcore vmcore_info), found {name[:16]!r}")
    return read(addr + 12 + (namesz + 3) // 4 * 4, descsz).decode().rstrip("\0")


def kernel_mms(elf: Path, vmlinux: Path, vmcoreinfo: str) -> dict:
    """Through drgn and the debug vmlinux: {pid: {comm, mm, asce, pgd}} of every user task,
    and the kernel's swapper_pg_dir and lowcore_ptr values."""
    try:
        import drgn
        from drgn.helpers.linux.pid import for_each_task
    except ImportError:
        raise Failure(EXIT_DRGN, "drgn is not installed (pip install drgn; the test extra has it)") from None
    try:
        prog = drgn.Program(vmcoreinfo=vmcoreinfo.encode())
        prog.set_core_dump(str(elf))
        prog.load_debug_info([str(vmlinux)])
        tasks = {}
        for t in for_each_task(prog):
            if not t.mm:
                continue
            tasks[int(t.pid)] = {"comm": t.comm.string_().decode(), "mm": t.mm.value_(),
                                 "asce": int(t.mm.context.asce), "pgd": t.mm.pgd.value_()}
        kernel = {"swapper_pg_dir": prog.symbol("swapper_pg_dir").address,
                  "lowcore_ptr": [int(prog["lowcore_ptr"][i]) for i in range(2)],
                  "vmemmap": int(prog["vmemmap"].value_()), "drgn": drgn.__version__}
    except (drgn.FaultError, drgn.MissingDebugInfoError, LookupError, ValueError, OSError) as e:
        raise Failure(EXIT_DRGN, f"drgn could not read the kernel: {e}") from None
    return {"tasks": tasks, "kernel": kernel}


def pages_of(maps: list[str]) -> list[int]:
    """Every page address of every mapping line."""
    out = []
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        out.extend(range(lo, hi, PAGE))
    return out


def gva2gpa_under(qmp: Qmp, gdb: GdbStub, thread: str, cpu: int, regs: dict, asce: int, vaddrs) -> list:
    """gva2gpa on ``cpu`` with ``asce`` in the CR its PSW selects (CR13 home, else CR1),
    the CR restored afterwards and checked."""
    cr = "cr13" if psw_space(regs["psw_mask"]) == "home" else "cr1"
    gdb.select(thread)
    old = gdb.read(cr)
    gdb.write(cr, asce)
    try:
        return gva2gpa(qmp, cpu, vaddrs)
    finally:
        gdb.write(cr, old)
        if gdb.read(cr) != old:
            raise Failure(EXIT_GUEST, f"{cr} of CPU {cpu} not restored")


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
    kern = kernel_mms(out / DUMP_FORMATS["elf"], files["vmlinux"], vmcoreinfo)
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
        p["asce"], p["mm"] = task["asce"], task["mm"]
        vas = pages_of(p["maps"])
        answers = gva2gpa_under(qmp, gdb, threads[0], 0, regs_all[0], p["asce"], vas)
        p["gva2gpa"] = {f"{va:#x}": a for va, a in zip(vas, answers)}
        p["pagemap"] = {f"{va:#x}": pagemap_address(e) for va, e in sorted(p["pagemap"].items())}
        n_asked += len(vas)
    sample = kernel_sample(regs_all, kern["kernel"], memory_mb << 20)
    cpus = []
    for i, r in enumerate(regs_all):
        answers = gva2gpa(qmp, i, sample)
        cpus.append({"index": i, "psw_mask": r["psw_mask"], "psw_addr": r["psw_addr"],
                     "problem_state": bool(r["psw_mask"] & PSW_PROBLEM), "space": psw_space(r["psw_mask"]),
                     "prefix": r["prefix"], "gr": r["gr"], "cr": r["cr"],
                     "gva2gpa": {f"{va:#x}": a for va, a in zip(sample, answers)}})
        n_asked += len(sample)
    if [r | {"prefix": p} for r, p in zip(registers(qmp, ncpu), prefixes)] != regs_all:
        raise Failure(EXIT_GUEST, "the CPUs' registers changed while recording")
    log(f"recorded: {n_stops} stop(s), {n_asked} gva2gpa in {time.monotonic() - t_ask:.1f} s, "
        f"{time.monotonic() - t0:.1f} s in all")
    release = re.search(r"OSRELEASE=(\S+)", vmcoreinfo).group(1)
    return {"release": release, "dumps": dumps, "dump_formats_offered": sorted(offered), "cpus": cpus, "processes": procs, "kernel": kern["kernel"],
            "vmcoreinfo": "vmcoreinfo.txt"}


# ---------------------------------------------------------------- main

def hexify(doc):
    """64-bit values as "0x..." strings, as s390emu's --json writes them."""
    if isinstance(doc, dict):
        return {k: v if k in ("pid", "index", "memory_mb", "schema", "smp", "stops") else hexify(v)
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
    ap.add_argument("--stop-tries", type=int, default=8, help="stops to catch one CPU in user mode and "
                    "one in the kernel (default 8)")
    args = ap.parse_args(argv)
    try:
        return build(args)
    except Failure as e:
        print(f"real_guest: {e}", file=sys.stderr)
        return e.code


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
