"""Every field ``dump.save`` writes into a note, read back at the offset the real layout has.

The layouts are not ours: they are those of s390-tools' zgetdump (``zdump/df_elf.h``:
``struct nt_prstatus_64``, ``nt_fpregset_64``, ``nt_prpsinfo_64``) and of the kernel's
``struct elf_prstatus`` on s390x (``include/linux/elfcore.h``: a 12-byte ``elf_siginfo``,
``pr_cursig``, two ``unsigned long`` signal sets, then ``pr_pid`` at 32; the s390
``pr_reg`` at 112: PSW, 16 GPRs, 16 access registers, ``orig_gpr2``; ``pr_fpvalid`` at
328; 336 bytes).  They are declared once below, then each note is read three ways:

* from the file's bytes, with the ELF layout (``Elf64_Phdr[0]`` -> ``Elf64_Nhdr`` chain);
* by ``readelf -n`` (binutils: owner, size, type name and, for the s390 notes, the
  descriptor bytes) and pyelftools (which decodes ``NT_PRPSINFO``);
* by drgn, which takes each thread's id from ``pr_pid`` of its ``NT_PRSTATUS``;

and compared with what was written: the machine's prefixes and control registers, the
``pr_pid`` zgetdump writes (CPU number + 1) and the VMCOREINFO text.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from s390emu import dump
from s390emu.machine import Machine
from s390emu.memory import PhysicalMemory

# -- the layouts (zgetdump df_elf.h, kernel elfcore.h), declared once ---------------------

PRSTATUS = {"size": 336, "pr_pid": 32, "psw": 112, "gprs": 128, "acrs": 256, "orig_gpr2": 320,
            "pr_fpvalid": 328}
FPREGSET = {"size": 136, "fpc": 0, "fprs": 8}
PRPSINFO = {"size": 136, "pr_state": 0, "pr_sname": 1, "pr_flag": 8, "pr_uid": 16, "pr_pid": 24,
            "pr_fname": 40, "pr_psargs": 56}
S390_SIZES = {dump.NT_S390_TIMER: 8, dump.NT_S390_TODCMP: 8, dump.NT_S390_TODPREG: 4,
              dump.NT_S390_CTRS: 128, dump.NT_S390_PREFIX: 4}
#: zgetdump's order of the per-CPU notes, with their owner names
CPU_NOTES = [("CORE", dump.NT_PRSTATUS), ("CORE", dump.NT_FPREGSET), ("LINUX", dump.NT_S390_TIMER),
             ("LINUX", dump.NT_S390_TODCMP), ("LINUX", dump.NT_S390_TODPREG),
             ("LINUX", dump.NT_S390_CTRS), ("LINUX", dump.NT_S390_PREFIX)]
#: readelf's description of each note type
READELF_TYPE = {dump.NT_PRSTATUS: "NT_PRSTATUS", dump.NT_FPREGSET: "NT_FPREGSET",
                dump.NT_PRPSINFO: "NT_PRPSINFO", dump.NT_S390_TIMER: "NT_S390_TIMER",
                dump.NT_S390_TODCMP: "NT_S390_TODCMP", dump.NT_S390_TODPREG: "NT_S390_TODPREG",
                dump.NT_S390_CTRS: "NT_S390_CTRS", dump.NT_S390_PREFIX: "NT_S390_PREFIX",
                dump.NT_VMCOREINFO: "Unknown note type: (0x00000000)"}

NCPUS = 3


def control_registers(cpu: int) -> tuple[int, ...]:
    """Distinct values in every byte position: CR n of CPU c."""
    return tuple((0x0102_0304_0506_0000 + (cpu << 12) + (n << 4) + 7) | (n << 56) for n in range(16))


@pytest.fixture(scope="module")
def machine() -> Machine:
    m = Machine(8 << 20, ncpus=NCPUS)
    for cpu in range(NCPUS):
        for n, value in enumerate(control_registers(cpu)):
            m.set_control_register(cpu, n, value)
    return m


@pytest.fixture
def path(machine, tmp_path_factory):
    # function scope, not module: a mutation run gives a mutant of the writer only the
    # tests that call it, and with a shared file only the first test would
    p = tmp_path_factory.mktemp("notes") / "vmcore"
    dump.save(p, machine)
    return p


def raw_notes(data: bytes) -> list[tuple[str, int, bytes, int]]:
    """``(name, type, desc, desc offset)`` of every note, parsed from the file's bytes by the
    ELF layout alone (phdr[0] is PT_NOTE; Elf64_Nhdr = namesz, descsz, type; 4-byte padding)."""
    phoff = struct.unpack_from(">Q", data, 32)[0]
    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(">IIQQQQ", data, phoff)
    assert p_type == 4
    out, off, end = [], p_offset, p_offset + p_filesz
    while off < end:
        namesz, descsz, ntype = struct.unpack_from(">III", data, off)
        name = data[off + 12:off + 12 + namesz]
        assert name.endswith(b"\0"), name
        desc_at = off + 12 + -(-namesz // 4) * 4
        out.append((name[:-1].decode(), ntype, data[desc_at:desc_at + descsz], desc_at))
        off = desc_at + -(-descsz // 4) * 4
    assert off == end
    return out


def cpu_blocks(notes):
    """The per-CPU runs of notes (each starts at an NT_PRSTATUS)."""
    starts = [i for i, n in enumerate(notes) if n[1] == dump.NT_PRSTATUS]
    return [notes[s:s + len(CPU_NOTES)] for s in starts]


# -- the file's bytes -------------------------------------------------------------------------

def test_the_notes_come_in_zgetdumps_order_with_their_owner_names(path):
    notes = raw_notes(path.read_bytes())
    assert (notes[0][0], notes[0][1]) == ("CORE", dump.NT_PRPSINFO)
    assert [(n, t) for n, t, _, _ in notes[1:-1]] == CPU_NOTES * NCPUS
    assert (notes[-1][0], notes[-1][1]) == ("VMCOREINFO", dump.NT_VMCOREINFO)


def test_every_note_has_the_size_of_its_real_layout(path):
    sizes = {dump.NT_PRSTATUS: PRSTATUS["size"], dump.NT_FPREGSET: FPREGSET["size"],
             dump.NT_PRPSINFO: PRPSINFO["size"], **S390_SIZES}
    for name, ntype, desc, _ in raw_notes(path.read_bytes())[:-1]:
        assert len(desc) == sizes[ntype], (name, hex(ntype))


def test_prstatus_holds_pr_pid_at_offset_32_and_nothing_else(path):
    for cpu, block in enumerate(cpu_blocks(raw_notes(path.read_bytes()))):
        desc = block[0][2]
        off = PRSTATUS["pr_pid"]
        assert struct.unpack_from(">I", desc, off)[0] == cpu + 1
        # PSW, GPRs, access registers, orig_gpr2, pr_fpvalid: zero (no register state).
        assert desc[:off] == bytes(off) and desc[off + 4:] == bytes(len(desc) - off - 4)


def test_fpregset_timer_todcmp_todpreg_are_zero(path):
    for block in cpu_blocks(raw_notes(path.read_bytes())):
        for _, ntype, desc, _ in block[1:5]:
            assert desc == bytes(len(desc)), hex(ntype)


def test_control_register_note_is_16_big_endian_doublewords_in_order(path):
    for cpu, block in enumerate(cpu_blocks(raw_notes(path.read_bytes()))):
        name, ntype, desc, _ = block[5]
        assert ntype == dump.NT_S390_CTRS
        assert struct.unpack(">16Q", desc) == control_registers(cpu)


def test_prefix_note_is_the_cpus_prefix_register_as_a_big_endian_word(path, machine):
    for cpu, block in enumerate(cpu_blocks(raw_notes(path.read_bytes()))):
        assert block[6][2] == struct.pack(">I", machine.prefix(cpu))
    assert len({machine.prefix(c) for c in range(NCPUS)}) == NCPUS     # the values tell CPUs apart


def test_prpsinfo_holds_state_r_and_fname_vmlinux_at_their_offsets(path):
    desc = raw_notes(path.read_bytes())[0][2]
    assert desc[PRPSINFO["pr_sname"]:PRPSINFO["pr_sname"] + 1] == b"R"
    assert desc[PRPSINFO["pr_fname"]:PRPSINFO["pr_fname"] + 16] == b"vmlinux".ljust(16, b"\0")
    assert desc[PRPSINFO["pr_psargs"]:] == bytes(80)


def test_vmcoreinfo_note_is_the_text_the_machine_keeps(path, machine):
    text = raw_notes(path.read_bytes())[-1][2]
    assert b"\0" not in text
    parsed = dict(line.split("=", 1) for line in text.decode().splitlines())
    assert parsed == machine.vmcoreinfo()


# -- our reader -------------------------------------------------------------------------------

def test_read_info_returns_each_cpus_prefix_and_control_registers(path, machine):
    info = dump.read_info(path)
    assert [tuple(c) for c in info.cpus] == [
        (cpu, machine.prefix(cpu), control_registers(cpu)[1], control_registers(cpu)[7],
         control_registers(cpu)[13], 0, 0, True) for cpu in range(NCPUS)]      # our PSWs are zero
    assert info.control_registers == [control_registers(cpu) for cpu in range(NCPUS)]
    assert info.vmcoreinfo == machine.vmcoreinfo()


def test_read_info_notes_are_the_file_notes_byte_for_byte(path):
    ours = [(n.name, n.type, n.desc) for n in dump.read_info(path).notes]
    assert ours == [(n, t, d) for n, t, d, _ in raw_notes(path.read_bytes())]


def test_a_dump_loaded_and_saved_again_has_the_same_notes(path, tmp_path):
    dump.save(tmp_path / "again", dump.load(path).machine)
    assert raw_notes((tmp_path / "again").read_bytes()) == raw_notes(path.read_bytes())


# -- readelf, pyelftools and drgn -------------------------------------------------------------

_LINE = re.compile(r"^\s+(\S+)\s+0x([0-9a-f]+)\s+(.*?)\s*$")


def readelf_notes(path) -> list[tuple[str, int, str, bytes | None]]:
    """``(owner, size, description, data)`` per note as ``readelf -n`` prints them."""
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    notes: list = []
    for line in out.splitlines():
        if "description data:" in line and notes:
            notes[-1][3] = bytes.fromhex(line.split(":", 1)[1])
            continue
        m = _LINE.match(line)
        if m and m.group(1) != "Owner":
            notes.append([m.group(1), int(m.group(2), 16), m.group(3), None])
    return [tuple(n) for n in notes]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf not installed")
def test_readelf_sees_every_note_with_its_owner_type_size_and_s390_data(path):
    theirs = readelf_notes(path)
    ours = raw_notes(path.read_bytes())
    assert len(theirs) == len(ours)
    for (owner, size, desc, data), (name, ntype, raw, _) in zip(theirs, ours):
        assert (owner, size) == (name, len(raw))
        assert desc.startswith(READELF_TYPE[ntype]), (desc, hex(ntype))
        if ntype in S390_SIZES:
            assert data == raw, READELF_TYPE[ntype]


def test_pyelftools_decodes_prpsinfo_fields(path):
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        notes = list(ELFFile(f).get_segment(0).iter_notes())
        ps = notes[0]["n_desc"]
        assert notes[0]["n_type"] == "NT_PRPSINFO"
        assert (ps["pr_sname"], ps["pr_fname"].rstrip(b"\0"), ps["pr_pid"]) == (b"R", b"vmlinux", 0)
        offsets = [n["n_offset"] for n in notes]
    # The same note chain as the ELF layout gives (each header 12 bytes before its name).
    name_sizes = [-(-(len(n) + 1) // 4) * 4 for n, _, _, _ in raw_notes(path.read_bytes())]
    descs = [d for _, _, _, d in raw_notes(path.read_bytes())]
    assert offsets == [d - 12 - size for d, size in zip(descs, name_sizes)]


def test_drgn_takes_each_threads_id_from_pr_pid_at_its_real_offset(tmp_path):
    drgn = pytest.importorskip("drgn")
    # Without VMCOREINFO drgn reads the file as a process core: threads are NT_PRSTATUS.
    notes = [n for cpu in range(NCPUS) for n in dump.cpu_notes(cpu, 0x10000 * (cpu + 1),
                                                                 control_registers(cpu))]
    from s390emu.memory import PhysicalMemory

    dump.save(tmp_path / "core", PhysicalMemory(1 << 20), notes=notes)
    prog = drgn.Program()
    prog.set_core_dump(str(tmp_path / "core"))
    assert prog.platform.arch == drgn.Architecture.S390X
    assert sorted(t.tid for t in prog.threads()) == [cpu + 1 for cpu in range(NCPUS)]


def test_the_psw_is_read_from_nt_prstatus_and_says_the_space_and_state(tmp_path):
    # A kernel CPU (home space, supervisor) and a user CPU (primary space, problem state),
    # as QEMU writes them: the PSW at pr_reg, offset 112 of NT_PRSTATUS.
    notes = []
    for cpu, psw in enumerate(((0x0704C00180000000, 0x11D63A2), (0x0705000180000000, 0x2AA0000110))):
        cpu_notes = dump.cpu_notes(cpu, 0x2000 * cpu, tuple(range(16)))
        desc = bytearray(cpu_notes[0].desc)
        desc[112:128] = struct.pack(">QQ", *psw)
        notes += [cpu_notes[0]._replace(desc=bytes(desc))] + cpu_notes[1:]
    path = tmp_path / "psw"
    dump.save(path, PhysicalMemory(1 << 20), notes=notes)
    kernel, user = dump.read_info(path).cpus
    assert (kernel.psw_mask, kernel.psw_addr, kernel.asc, kernel.problem_state, kernel.dat_on) == (
        0x0704C00180000000, 0x11D63A2, "home", False, True)
    assert (user.asc, user.problem_state, user.dat_on) == ("primary", True, True)
