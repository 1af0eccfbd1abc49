"""Save, load: the same storage byte for byte, the same notes, readelf reads it cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from s390emu import dump
from s390emu.machine import Machine
from s390emu.memory import PhysicalMemory



class TestARoundTripKeepsEveryByte:
    def test_memory_is_byte_identical(self, image, tmp_path):
        path = tmp_path / "vmcore"
        dump.save(path, image.machine)
        m = dump.load(path).machine
        assert isinstance(m, Machine)
        assert m.mem.size == image.machine.mem.size
        assert m.mem.digest() == image.machine.mem.digest()

    def test_notes_are_identical_after_a_second_save(self, image, tmp_path):
        first = dump.save(tmp_path / "a", image.machine)
        d = dump.load(tmp_path / "a")
        loaded, second = d.info, dump.save(tmp_path / "b", d.machine)
        assert loaded.notes == first.notes == second.notes
        assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()

    def test_cpus_carry_prefix_and_the_three_asces(self, image, tmp_path):
        dump.save(tmp_path / "vmcore", image.machine)
        info = dump.read_info(tmp_path / "vmcore")
        m = image.machine
        assert info.cpus == [dump.CpuInfo(c, m.prefix(c), m.control_register(c, 1),
                                          m.control_register(c, 7), m.control_register(c, 13))
                             for c in range(m.nr_cpus)]
        assert info.cpus[1].cr1 == image.asce3
        assert info.control_registers[1] == tuple(m.control_register(1, n) for n in range(16))

    def test_vmcoreinfo_note_holds_what_the_tools_need(self, image, tmp_path):
        dump.save(tmp_path / "vmcore", image.machine)
        v = dump.read_info(tmp_path / "vmcore").vmcoreinfo
        for key in ("OSRELEASE", "PAGESIZE", "SYMBOL(swapper_pg_dir)", "SYMBOL(mem_map)", "SIZE(page)",
                    "OFFSET(page.flags)", "OFFSET(page.lru)", "OFFSET(page._refcount)",
                    "OFFSET(page._mapcount)", "OFFSET(page.mapping)", "OFFSET(page.private)",
                    "OFFSET(mm_struct.pgd)", "OFFSET(mm_struct.context.asce)"):
            assert key in v
        assert v == image.machine.vmcoreinfo()

    def test_zero_runs_are_not_written_but_read_back_as_zero(self, tmp_path):
        mem = PhysicalMemory(8 << 20)
        mem.write(0x1000, b"head")
        mem.write(0x700000, b"tail")
        info = dump.save(tmp_path / "sparse", mem)
        assert os.path.getsize(tmp_path / "sparse") < 64 << 10
        assert [(l.paddr, l.filesz) for l in info.loads] == [(0, 0x2000), (0x700000, 0x1000)]
        assert sum(l.memsz for l in info.loads) == 8 << 20
        back = dump.load(tmp_path / "sparse")
        assert back.machine is None and np.array_equal(back.mem.data, mem.data)

    def test_a_raw_image_loads_as_the_same_machine(self, image, tmp_path):
        raw = tmp_path / "mem.raw"
        raw.write_bytes(image.machine.mem.data.tobytes())
        d = dump.load(raw)
        assert d.info.format == "raw" and d.mem.digest() == image.machine.mem.digest()

    def test_a_raw_image_finds_its_vmcoreinfo_through_the_lowcore(self, image, tmp_path):
        raw = tmp_path / "mem.raw"
        raw.write_bytes(image.machine.mem.data.tobytes())
        d = dump.load(raw)
        info, vmci = d.info, d.vmcoreinfo
        assert isinstance(d.machine, Machine) and vmci == image.machine.vmcoreinfo()
        assert len(info.cpus) == 2 and info.cpus[1].cr1 == image.asce3


class TestWritesAreAtomicAndCareful:
    def test_an_existing_file_is_kept_without_force(self, tmp_path):
        p = tmp_path / "vmcore"
        p.write_bytes(b"precious")
        with pytest.raises(dump.DumpError, match="exists"):
            dump.save(p, PhysicalMemory(1 << 20))
        assert p.read_bytes() == b"precious"
        dump.save(p, PhysicalMemory(1 << 20), force=True)
        assert p.read_bytes()[:4] == b"\x7fELF"

    def test_no_temporary_file_is_left_behind(self, tmp_path):
        dump.save(tmp_path / "vmcore", PhysicalMemory(1 << 20))
        assert [f.name for f in tmp_path.iterdir()] == ["vmcore"]

    def test_a_missing_directory_is_a_one_line_error(self, tmp_path):
        with pytest.raises(dump.DumpError, match="No such file"):
            dump.save(tmp_path / "nope" / "vmcore", PhysicalMemory(1 << 20))


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf not installed")
def test_readelf_decodes_the_dump_without_warnings(image, tmp_path):
    path = tmp_path / "vmcore"
    dump.save(path, image.machine)
    r = subprocess.run(["readelf", "-hln", str(path)], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stderr == ""
    assert "warning" not in r.stdout.lower()
    assert "CORE (Core file)" in r.stdout and "IBM S/390" in r.stdout
    assert "big endian" in r.stdout
    assert r.stdout.count("NT_S390_CTRS") == 2 and "VMCOREINFO" in r.stdout
    assert r.stdout.count("  LOAD  ") == len(dump.read_info(path).loads)
