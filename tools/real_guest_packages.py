"""The real-guest fixture's parts from Debian (tools/real_guest.py): the s390x kernel, its
debug vmlinux and busybox-static fetched with apt-get download and unpacked with
dpkg-deb, never installed; and the initramfs built from them (cpio newc + gzip, written
here: the host needs no cpio)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

INIT = Path(__file__).with_name("real_guest_init.sh")


class PackageError(Exception):
    """A package could not be found, fetched or unpacked (one line)."""


def log(msg: str) -> None:
    """A progress line on stderr (stdout is the built directory's path)."""
    print(f"real_guest: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure is a ``PackageError`` naming ``what`` and the tool's last line."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise PackageError(f"{what}: {cmd[0]} not found") from None
    if p.returncode:
        last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or [f"exit {p.returncode}"]
        raise PackageError(f"{what}: {last[0]}")
    return p


def kernel_packages() -> list[str]:
    """The bookworm 6.1 s390x kernel image packages apt knows (no -dbg, no -unsigned);
    the s390x architecture added and the lists updated first when apt knows none."""
    def search():
        p = run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-s390x$"], "apt-cache search")
        return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    names = search()
    if not names:
        if "s390x" not in run(["dpkg", "--print-foreign-architectures"], "dpkg").stdout.split():
            log("dpkg --add-architecture s390x")
            run(["dpkg", "--add-architecture", "s390x"], "dpkg --add-architecture s390x")
        log("apt-get update")
        run(["apt-get", "update", "-qq"], "apt-get update")
        names = search()
    return names


def candidates(pkgs: list[str]) -> dict[str, str]:
    """apt's candidate version of each of ``pkgs`` (``name:arch``), in one apt-cache call."""
    out = run(["apt-cache", "policy", *pkgs], "apt-cache policy").stdout
    found = dict(re.findall(r"^(\S+):\n\s+Installed:.*\n\s+Candidate:\s*(\S+)", out, re.M))
    for pkg in pkgs:
        if found.get(pkg, "(none)") == "(none)":
            raise PackageError(f"apt has no candidate for {pkg}")
    return found


def choose_packages(kernel: str | None) -> dict[str, dict]:
    """The three packages to fetch: {role: {name, version}}; the newest ABI unless ``kernel``."""
    if kernel is None:
        names = kernel_packages()
        if not names:
            raise PackageError("apt knows no linux-image-6.1.0-*-s390x (is bookworm in sources.list?)")
        kernel = max(names, key=lambda n: int(re.search(r"6\.1\.0-(\d+)-", n).group(1)))
    pk = {"kernel": kernel, "dbg": f"{kernel}-dbg", "busybox": "busybox-static"}
    versions = candidates([f"{name}:s390x" for name in pk.values()])
    return {role: {"name": name, "version": versions[f"{name}:s390x"]} for role, name in pk.items()}


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
                run(["apt-get", "download", f"{p['name']}:s390x={p['version']}"],
                    f"apt-get download {p['name']}", cwd=tmp)
                got = list(Path(tmp).glob("*.deb"))
                if len(got) != 1:
                    raise PackageError(f"apt-get download {p['name']} left {len(got)} files")
                got[0].rename(path)
                log(f"fetched {path.name} ({path.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s)")
        found[role] = path
    return found


def deb_member(deb: Path, member: str, dest: Path) -> None:
    """Extract one file of ``deb``'s data (path inside, ``./...``) to ``dest``, without
    unpacking the rest (the -dbg package's modules are most of its 430 MB)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dp:
        with tarfile.open(fileobj=dp.stdout, mode="r|") as tar:
            for ti in tar:
                if ti.name == member:
                    with tar.extractfile(ti) as src, open(dest, "xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    dp.kill()
                    return
    raise PackageError(f"{deb.name} has no {member}")


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
    run(["dpkg-deb", "-x", str(debs["kernel"]), str(tree)], "dpkg-deb -x kernel")
    bb = work / "busybox-pkg"
    run(["dpkg-deb", "-x", str(debs["busybox"]), str(bb)], "dpkg-deb -x busybox")
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


# ---------------------------------------------------------------- build

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
