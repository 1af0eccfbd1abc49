"""s390emu's DAT walk on a real Linux guest's dump equals QEMU's own gva2gpa, page by page.

The truth comes from QEMU and the kernel, never from s390emu: QEMU's gva2gpa under each
process's mm->context.asce (read by drgn from the debug vmlinux), its `info registers`, and
the guest's own /proc/PID/pagemap (tools/real_guest.py records them; docs/real-guest.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import dat
from dat.batch import translate_many
from s390emu.inspect import open_dump

from .conftest import ROOT

PAGE_PRESENT, PAGE_INVALID = 0x001, 0x400     # arch/s390/include/asm/pgtable.h: software present, hardware I


def s390emu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s390emu.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def translate_json(*args) -> dict[int, int | None]:
    """``s390emu translate --json ARGS``: {vaddr: absolute or None (an exception)}."""
    p = s390emu("translate", "--json", *args)
    assert p.returncode in (0, 3), p.stderr
    return {int(r["vaddr"], 16): int(r["absolute"], 16) if "absolute" in r else None
            for r in json.loads(p.stdout)["results"]}


def differences(ours: dict, qemu: dict) -> list[tuple[str, str, str]]:
    def show(a):
        return "unmapped" if a is None else f"{a:#x}"
    return [(f"{va:#x}", show(qemu[va]), show(ours.get(va))) for va in qemu if ours.get(va, "absent") != qemu[va]]


def test_the_guest_was_stopped_with_a_process_on_one_cpu_and_the_kernel_on_another(real_guest):
    """The fixture holds what its tests need: a CPU in problem state running a recorded
    process (CR1 is its ASCE) and a CPU in the kernel in home space (CR13 the kernel's)."""
    asces = {p["asce"] for p in real_guest.processes}
    user = [c for c in real_guest.cpus if c["problem_state"]]
    kernel = [c for c in real_guest.cpus if not c["problem_state"]]
    assert user and kernel, "tools/real_guest.py did not catch one CPU in each state (--stop-tries)"
    assert all(c["space"] == "primary" and c["cr"][1] in asces for c in user)
    swapper = real_guest.truth["kernel"]["swapper_pg_dir"]
    assert all(c["space"] == "home" and c["cr"][13] & ~0xFFF == swapper for c in kernel)
    assert {"sleep", "httpd", "sh", "awk"} <= {p["comm"] for p in real_guest.processes}


def test_the_dumps_cpu_notes_are_qemus_registers(real_guest):
    """The prefix and the ASCE control registers s390emu reads from the ELF dump's notes
    are the ones QEMU's `info registers` showed for each CPU."""
    st = open_dump(real_guest.elf)
    assert len(st.cpus) == len(real_guest.cpus)
    for cpu, c in zip(st.cpus, real_guest.cpus):
        assert (cpu.prefix, cpu.cr1, cpu.cr7, cpu.cr13) == (c["prefix"], c["cr"][1], c["cr"][7], c["cr"][13])


def test_translate_equals_gva2gpa_on_every_page_of_every_process(real_guest):
    """`s390emu translate --dump guest.elf --asce A VADDR...` answers, on every page of every
    mapping of every process, what QEMU's gva2gpa answered under that process's ASCE
    (asked on CPU 0: the default --cpu gives the same prefix)."""
    for p in real_guest.processes:
        qemu = p["gva2gpa"]
        ours = translate_json("--dump", real_guest.elf, "--asce", hex(p["asce"]), *map(hex, qemu))
        assert not differences(ours, qemu), (p["pid"], p["comm"], differences(ours, qemu)[:5])
        assert sum(a is not None for a in qemu.values()) > len(qemu) // 2, "most pages are mapped"
        assert ours.keys() == qemu.keys()


def test_the_batch_walker_equals_gva2gpa_on_every_page(real_guest):
    """The library's batch walker (dat.batch.translate_many) over the same dump agrees too."""
    st = open_dump(real_guest.elf)
    prefix = real_guest.cpus[0]["prefix"]
    for p in real_guest.processes:
        va = np.array(list(p["gva2gpa"]), dtype=np.uint64)
        addr, codes = translate_many(st.mem, p["asce"], va, prefix=prefix)
        ours = {int(v): (int(a) if c == 0 else None) for v, a, c in zip(va, addr, codes)}
        assert not differences(ours, p["gva2gpa"]), (p["pid"], differences(ours, p["gva2gpa"])[:5])


def test_translate_per_cpu_space_equals_gva2gpa_on_kernel_addresses(real_guest):
    """`translate --dump guest.elf --cpu N --space S`, S the space CPU N's PSW selects, agrees
    with gva2gpa asked on that CPU: the identity map page by page over the first 2 MiB and
    every MiB after, both CPUs' prefix pages (prefixing swaps them with absolute 0-8K),
    vmemmap and the top of the 4 TiB space; on the CPU in problem state also every page of
    its process, through the CR1 it loaded."""
    for c in real_guest.cpus:
        qemu = c["gva2gpa"]
        ours = translate_json("--dump", real_guest.elf, "--cpu", c["index"], "--space", c["space"], *map(hex, qemu))
        assert not differences(ours, qemu), (c["index"], differences(ours, qemu)[:5])
        # without --space: the space the PSW in the dump selects, which is the one QEMU named
        assert translate_json("--dump", real_guest.elf, "--cpu", c["index"], *map(hex, qemu)) == ours
    home = next(c for c in real_guest.cpus if c["space"] == "home")
    assert home["gva2gpa"][0] == home["prefix"] and home["gva2gpa"][home["prefix"]] == 0, "prefixing was asked"


def test_the_running_process_answers_the_same_through_the_cpu_and_the_gdb_stub(real_guest):
    """The CPU in problem state was asked about its process's pages through its own CR1,
    the process's pages were asked on CPU 0 with the ASCE set through the gdb stub: one
    answer (the fixture's two ways to the same truth)."""
    user = next(c for c in real_guest.cpus if c["problem_state"])
    proc = next(p for p in real_guest.processes if p["asce"] == user["cr"][1])
    assert {va: user["gva2gpa"][va] for va in proc["gva2gpa"]} == proc["gva2gpa"]


def test_the_guests_pagemap_agrees_with_dat(real_guest):
    """The guest kernel's own /proc/PID/pagemap, read before the stop, names the frame DAT
    reaches on every page, except pages the kernel made "old": s390 emulates the young bit
    by leaving _PAGE_PRESENT set and setting the hardware invalid bit, so pagemap says
    present where DAT raises page-translation; there the PTE must say exactly that and
    hold pagemap's frame."""
    st = open_dump(real_guest.elf)
    prefix = real_guest.cpus[0]["prefix"]
    old = 0
    for p in real_guest.processes:
        assert p["pagemap"].keys() == p["gva2gpa"].keys()
        for va, frame in p["pagemap"].items():
            qemu = p["gva2gpa"][va]
            if frame == qemu:
                continue
            assert qemu is None and frame is not None, (p["pid"], hex(va), frame, qemu)
            try:
                dat.translate(st.mem, p["asce"], va, prefix=prefix)
                raise AssertionError(f"{va:#x} translates, gva2gpa said unmapped")
            except dat.TranslationException as e:
                pte = e.path[-1]
                assert e.code == 0x11 and pte.level == "PTE", (hex(va), e)
                assert pte.entry & (PAGE_PRESENT | PAGE_INVALID) == PAGE_PRESENT | PAGE_INVALID
                assert pte.entry & ~0xFFF == frame, (hex(va), hex(pte.entry), hex(frame))
            old += 1
    assert old < sum(len(p["pagemap"]) for p in real_guest.processes) // 100
