"""The inspection library called directly, the way ``tools/`` call it.

``s390emu.inspect`` opens storage one way (a dump, a raw image, the demo) and gives the
same answers the commands print: the ASCE in a CPU's control registers, the kernel's
ASCE from ``SYMBOL(swapper_pg_dir)``, the ptdump lines, the page-table frames and the
live mms.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from s390emu import AddressingError, InvalidArgument, LayoutError, S390emuError, dump
from s390emu.cli import main
from s390emu.inspect import (NoSuchCpu, live_mms, markers, open_demo, open_dump, open_image,
                             page_table_frames, ptdump_lines)
from s390emu.memory import PhysicalMemory


GOLDEN = Path(__file__).parent / "golden"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[2] / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_dump_opens_with_its_cpus_its_vmcoreinfo_and_its_machine(vmcore, image):
    st = open_dump(vmcore)
    assert st.name == str(vmcore) and len(st.cpus) == 2 and st.machine is not None
    assert st.asce(1, "primary") == image.asce3 and st.asce(1, "home") == image.machine.kernel_asce
    assert st.cpu(1).prefix == image.machine.prefix(1)
    assert st.vmcoreinfo == image.machine.vmcoreinfo()


def test_the_kernel_asce_is_found_from_swapper_pg_dir_as_dump_tools_find_it(vmcore, image):
    st = open_dump(vmcore)
    assert st.kernel_root == image.machine.swapper_pg_dir
    assert st.kernel_asce() == image.machine.kernel_asce


def test_the_ptdump_lines_of_the_kernel_are_the_commands(vmcore):
    st = open_dump(vmcore)
    asce = st.kernel_asce()
    lines = ptdump_lines(st.mem, asce, markers(st.mem, asce, st.kernel_root))
    assert "\n".join(lines) + "\n" == (GOLDEN / "ptdump_kernel.txt").read_text()


def test_a_cpu_the_dump_does_not_have_is_named_in_one_line(vmcore):
    with pytest.raises(NoSuchCpu) as e:
        open_dump(vmcore).asce(2, "primary")
    assert e.value.reason == "no CPU 2 (the dump has 2)" and str(e.value) == f"{vmcore}: {e.value.reason}"
    assert isinstance(e.value, S390emuError)
    with pytest.raises(InvalidArgument):
        open_dump(vmcore).asce(1, "kernel")


def test_a_raw_image_is_bare_storage_unless_opened_as_a_dump(image, tmp_path):
    raw = tmp_path / "mem.raw"
    raw.write_bytes(image.machine.mem.data.tobytes())
    bare = open_image(raw)
    assert bare.cpus == [] and bare.vmcoreinfo == {} and bare.machine is None
    assert bare.mem.digest() == image.machine.mem.digest()
    as_dump = open_dump(raw)
    assert as_dump.info.format == "raw" and as_dump.asce(1, "primary") == image.asce3


def test_storage_without_vmcoreinfo_says_what_it_lacks(tmp_path):
    path = tmp_path / "bare"
    dump.save(path, PhysicalMemory(1 << 20))
    st = open_dump(path)
    assert st.kernel_root is None and st.machine is None and st.cpus == []
    with pytest.raises(LayoutError, match="SYMBOL"):
        st.kernel_asce()
    with pytest.raises(LayoutError, match="SYMBOL"):
        page_table_frames(st.mem, st.vmcoreinfo)


def test_a_kernel_table_outside_storage_is_an_addressing_error(image, tmp_path):
    path = tmp_path / "vmcore"
    dump.save(path, image.machine)
    st = open_dump(path)
    st.vmcoreinfo["SYMBOL(swapper_pg_dir)"] = f"{st.mem.size:x}"
    with pytest.raises(AddressingError) as e:
        st.kernel_asce()
    assert e.value.address == st.mem.size


def test_the_demo_opens_like_a_dump_of_it():
    st = open_demo("v64")
    assert st.name == "demo, v64" and st.version == "v64" and st.asce(0, "primary") == st.demo.asce5
    assert live_mms(st.mem, st.vmcoreinfo) == [st.demo.mm3, st.demo.mm5]
    assert {h["reached_by"] for f in page_table_frames(st.mem, st.vmcoreinfo) for h in f["halves"]} \
        >= {st.demo.mm3, st.demo.mm5}


def test_tools_fragmap_draws_what_pages_svg_draws(tmp_path):
    path = tmp_path / "demo.vmcore"
    dump.save(path, open_demo("v66").machine)
    assert _tool("fragmap").main([str(path), str(tmp_path / "tool.svg")]) == 0
    r = CliRunner().invoke(main, ["pages", "--dump", str(path), "--svg", str(tmp_path / "cli.svg")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tool.svg").read_text() == (tmp_path / "cli.svg").read_text()


def test_tools_fail_with_one_line_on_a_dump_they_cannot_read(tmp_path, capsys):
    path = tmp_path / "bare"
    dump.save(path, PhysicalMemory(1 << 20))
    assert _tool("fragmap").main([str(path), str(tmp_path / "f.svg")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert _tool("pttree").main([str(path), "--cpu", "0"]) == 1
    assert capsys.readouterr().err == f"pttree: {path}: no CPU 0 (the dump has 0)\n"
