"""QEMU for the real-guest fixture (tools/real_guest.py): qemu-system-s390x run with a QMP
and a gdb-stub socket, a QMP client (commands and human-monitor lines on a chosen CPU),
the least of the GDB remote protocol needed to set a CPU's control register, and QEMU's
own answers: `info registers` and `gva2gpa`, also under an ASCE the CPU has not loaded."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

MARKER = "S390EMU-REAL-GUEST-READY"      # tools/real_guest_init.sh prints it when the report is out
PSW_PROBLEM = 1 << 48                   # PSW bit 15: problem state


class QemuError(Exception):
    """QEMU or the guest failed (one line)."""


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
                raise QemuError("QEMU closed its QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name: str, **args):
        """Run QMP command ``name``; its ``return`` value, or ``QemuError`` with QMP's reason."""
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise QemuError(f"QMP {name}: {reply['error'].get('desc')}")
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
            raise QemuError("QEMU closed its gdb socket")
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
                raise QemuError(f"gdb stub: no {annex} ({r!r})")
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
        """The stub's thread ids, one per CPU in CPU order (QEMU: cpu_index + 1)."""
        ids, r = [], self.packet("qfThreadInfo")
        while r.startswith("m"):
            ids += r[1:].split(",")
            r = self.packet("qsThreadInfo")
        return ids

    def select(self, thread: str) -> None:
        """Make ``thread`` (a CPU) the one register reads and writes go to."""
        if self.packet(f"Hg{thread}") != "OK":
            raise QemuError(f"gdb stub refused thread {thread}")

    def read(self, name: str) -> int:
        """Register ``name`` (target.xml's name, e.g. cr1) of the selected CPU."""
        return int(self.packet(f"p{self.regs[name]:x}"), 16)

    def write(self, name: str, value: int) -> None:
        """Set 64-bit register ``name`` of the selected CPU (big-endian hex, as s390x's stub reads it)."""
        if self.packet(f"P{self.regs[name]:x}={value:016x}") != "OK":
            raise QemuError(f"gdb stub refused to write {name}")


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
            raise QemuError(f"gva2gpa {va:#x}: {r.strip()!r}")
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
        """The console's text once the marker is on it (QMP connected meanwhile)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                err = (self.work / "qemu.stderr").read_text().strip().splitlines()[-1:] or [""]
                raise QemuError(f"QEMU exited ({self.proc.returncode}) before the marker: {err[0]}")
            if self.qmp is None and (self.work / "qmp.sock").exists():
                self.qmp = Qmp(self.work / "qmp.sock")
            if self.console.exists():
                text = self.console.read_text(errors="replace")
                if MARKER in text:
                    return text
            time.sleep(0.5)
        raise QemuError(f"no {MARKER} on the console after {timeout:.0f} s (see {self.console})")

    def stop(self):
        """End this QEMU (the process this object started)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def registers(qmp: Qmp, ncpu: int) -> list[dict]:
    """`info registers` of each CPU, parsed."""
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
            raise QemuError(f"{cr} of CPU {cpu} not restored")
