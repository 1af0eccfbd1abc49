"""``s390emu dump info --json``: the whole document of a saved demo, key by key, each value
taken independently of our reader (the file's ELF headers and notes read by pyelftools,
the CPUs' registers from the machine that was saved, the kernel's note type numbers).
Its keys are an interface promise: one renamed, dropped or filled wrongly fails here."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile

from pgalloc.demo import build_demo
from s390emu import dump
from s390emu.cli import main

# include/uapi/linux/elf.h
NT_NAMES = {1: "NT_PRSTATUS", 2: "NT_FPREGSET", 3: "NT_PRPSINFO", 0x301: "NT_S390_TIMER",
            0x302: "NT_S390_TODCMP", 0x303: "NT_S390_TODPREG", 0x304: "NT_S390_CTRS", 0x305: "NT_S390_PREFIX"}


def _type_name(note) -> str:
    """pyelftools names the CORE notes' types itself and leaves the others as numbers;
    VMCOREINFO's type 0 has no name."""
    t = note["n_type"]
    if isinstance(t, str):
        return t if note["n_name"] == "CORE" else "0x0"
    return NT_NAMES.get(t, f"{t:#x}")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    machine = build_demo("v66").machine
    path = tmp_path_factory.mktemp("info") / "demo.vmcore"
    dump.save(path, machine)
    return machine, path


def test_the_json_document_is_the_files_headers_notes_and_registers(saved):
    machine, path = saved
    r = CliRunner().invoke(main, ["dump", "info", "--json", str(path)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        loads = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        notes = [n for s in elf.iter_segments() if s["p_type"] == "PT_NOTE" for n in s.iter_notes()]
    vmcoreinfo = next(n for n in notes if n["n_name"] == "VMCOREINFO")
    text = vmcoreinfo["n_desc"] if isinstance(vmcoreinfo["n_desc"], str) else vmcoreinfo["n_desc"].decode()
    expected_vmci = dict(line.split("=", 1) for line in text.rstrip("\0").splitlines() if "=" in line)
    size = machine.mem.size
    cpus = []
    prstatus = [bytes(n["n_descdata"]) for n in notes if n["n_name"] == "CORE" and _type_name(n) == "NT_PRSTATUS"]
    for cpu in range(machine.nr_cpus):
        cr = machine.control_registers(cpu)
        mask, addr = (int.from_bytes(prstatus[cpu][112 + i:120 + i], "big") for i in (0, 8))
        cpus.append({"cpu": cpu, "prefix": f"{machine.prefix(cpu):#x}", "cr1": f"{cr[1]:#x}",
                     "cr7": f"{cr[7]:#x}", "cr13": f"{cr[13]:#x}",
                     "psw": {"mask": f"{mask:#018x}", "addr": f"{addr:#018x}",
                             "asc": ("primary", "access-register", "secondary", "home")[mask >> 46 & 3]}})
    assert doc == {
        "path": str(path),
        "format": "elf",
        "architecture": "s390x",
        "file_size": path.stat().st_size,
        "memory": {"start": "0x0", "end": f"{size:#x}", "size": size},
        "loads": [{"paddr": f"{h['p_paddr']:#x}", "memsz": f"{h['p_memsz']:#x}", "filesz": f"{h['p_filesz']:#x}",
                   "offset": f"{h['p_offset']:#x}"} for h in loads],
        "cpus": cpus,
        "vmcoreinfo": expected_vmci,
        "vmcoreinfo_source": "note",
        "notes": [{"name": n["n_name"], "type": _type_name(n), "size": n["n_descsz"]} for n in notes],
    }
    assert len(cpus) == 2 and cpus[1]["prefix"] != "0x0" and expected_vmci["OSRELEASE"] == "6.6.0-s390emu"
