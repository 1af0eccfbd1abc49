"""ptdump prints Linux's kernel_page_tables format; golden files checked by hand.

The golden files in ``golden/`` were checked line by line against
``arch/s390/mm/dump_pagetables.c`` (``dat-spec.md`` §5.2): ``"0x%016lx-0x%016lx "``,
``"%9lu%c "`` with the size divided by 1024 while it stays a multiple of 1024, the level
name of the deciding entry (R1 ``ASCE``, R2 ``PGD``, R3 ``PUD``, segment ``PMD``,
``PTE``), then ``I`` or ``RO``/``RW`` + ``X``/``NX``; a new line at every change of level
or protection and at every marker; the R1 space's end (2**64) wraps to 0 as the
kernel's ``unsigned long`` does.  Against the image of ``images.py``: text 16 pages RO X
at 0x100000, heap RW NX with the hole at PTE 8, the 3-page table, the 1M RO frame, the
stack page at the top of 4 TiB.  ``ptdump_edat2.txt`` adds EDAT-2 2 GiB region-third
frames (``PUD`` lines: two equal frames make one 4G run); it was written by the walker
the commands had before ``dat.table_tree`` and is printed byte for byte by the new one.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from s390emu import dump
from s390emu.cli import main
from s390emu.inspect import ptdump_lines, table_tree_dot

from .images import EDAT2_FRAMES, add_edat2_frames, build_image

GOLDEN = Path(__file__).parent / "golden"


def test_the_3_level_mm_matches_its_golden_file(vmcore):
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(vmcore), "--cpu", "1", "--space", "primary"])
    assert r.exit_code == 0, r.output
    assert r.stdout == (GOLDEN / "ptdump_mm3.txt").read_text()


def test_the_kernel_identity_map_is_the_default_and_matches_its_golden_file(vmcore):
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(vmcore)])
    assert r.exit_code == 0, r.output
    assert r.stdout == (GOLDEN / "ptdump_kernel.txt").read_text()


def test_the_5_level_view_of_the_same_tables_matches_its_golden_file(image):
    lines = ptdump_lines(image.machine.mem, image.asce5,
                         [(0, "User Address Space Start"), (1 << 64, "User Address Space End")])
    assert "\n".join(lines) + "\n" == (GOLDEN / "ptdump_mm5.txt").read_text()


def test_runs_tile_the_space_without_gaps(image):
    ends = []
    for line in ptdump_lines(image.machine.mem, image.asce3):
        if line.startswith("0x"):
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            assert not ends or ends[-1] == a
            ends.append(b)
    assert ends[-1] == 1 << 42


def test_json_lists_the_same_runs(vmcore):
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(vmcore), "--cpu", "1", "--space", "primary", "--json"])
    doc = json.loads(r.stdout)
    text = [l for l in (GOLDEN / "ptdump_mm3.txt").read_text().splitlines() if l.startswith("0x")]
    assert len(doc["runs"]) == len(text)
    assert doc["runs"][1] == {"start": "0x0000000000100000", "end": "0x0000000000110000",
                              "size": 0x10000, "level": "PTE", "prot": "RO X"}


def test_dot_draws_every_reachable_table_once(image, tmp_path, vmcore):
    dot = table_tree_dot(image.machine.mem, image.asce3)
    assert dot.startswith("digraph pttree {") and dot.rstrip().endswith("}")
    assert dot.count("[label=\"R3T ") == 1 and dot.count("[label=\"ST ") == 2
    assert dot.count("[label=\"PT ") == 4 and "upper 2K" in dot and "1M frame 0x1400000" in dot
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(vmcore), "--cpu", "1", "--dot", str(tmp_path / "t.dot")])
    assert r.exit_code == 0 and (tmp_path / "t.dot").read_text().startswith("digraph")


@pytest.mark.parametrize("args, code", [
    (["--asce", "0x10000", "--cpu", "0"], 2),
    (["--space", "home"], 2),
    (["--cpu", "7"], 2),
    (["--asce", "zz"], 2),
])
def test_bad_usage_exits_2(vmcore, args, code):
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(vmcore), *args])
    assert r.exit_code == code, r.output


def test_2g_region_third_frames_are_pud_lines_that_match_their_golden_file(tmp_path):
    # EDAT-2 leaves: two equal 2G frames make one 4G run, a change of protection a new line.
    path = tmp_path / "vmcore"
    dump.save(path, add_edat2_frames(build_image()).machine)
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(path), "--cpu", "1", "--space", "primary"])
    assert r.exit_code == 0, r.output
    assert r.stdout == (GOLDEN / "ptdump_edat2.txt").read_text()


def test_the_walker_agrees_with_the_2g_lines(tmp_path):
    import dat

    image = add_edat2_frames(build_image())
    for index, entry in EDAT2_FRAMES:
        t = dat.translate(image.machine.mem, image.asce3, index << 31 | 0x1234, access="lra")
        assert (t.page_size, t.real) == (1 << 31, entry & ~0x7FFF_FFFF | 0x1234)
        assert t.protected == bool(entry & 0x200)


def test_the_table_tree_draws_2g_frames_as_leaves():
    image = add_edat2_frames(build_image())
    dot = table_tree_dot(image.machine.mem, image.asce3)
    assert dot.count('shape=note') == 1 + len(EDAT2_FRAMES)      # the 1M frame and the 2G ones
    assert '"2G frame 0x80000000\\nRW NX"' in dot and '"2G frame 0x180000000\\nRO NX"' in dot


def test_dump_info_reports_cpus_and_asces(vmcore, image):
    r = CliRunner().invoke(main, ["dump", "info", str(vmcore)])
    assert r.exit_code == 0
    assert "Dump format........: elf" in r.stdout and f"CR1 (primary) {image.asce3:016x}" in r.stdout
    doc = json.loads(CliRunner().invoke(main, ["dump", "info", "--json", str(vmcore)]).stdout)
    assert doc["cpus"][1]["cr1"] == hex(image.asce3) and doc["architecture"] == "s390x"
    assert doc["vmcoreinfo"]["SYMBOL(swapper_pg_dir)"] == f"{image.machine.swapper_pg_dir:x}"


def test_dump_save_from_a_raw_image_and_refuses_to_overwrite(image, tmp_path):
    raw = tmp_path / "mem.raw"
    raw.write_bytes(image.machine.mem.data.tobytes())
    out = tmp_path / "out.vmcore"
    r = CliRunner().invoke(main, ["dump", "save", "--from", str(raw), str(out)])
    assert r.exit_code == 0, r.output
    assert dump.load(out).mem.digest() == image.machine.mem.digest()
    r = CliRunner().invoke(main, ["dump", "save", "--from", str(raw), str(out)])
    assert r.exit_code == 1 and "exists" in r.stderr


def test_dump_save_of_the_demo_then_info_and_ptdump(tmp_path):
    out = tmp_path / "demo.vmcore"
    r = CliRunner().invoke(main, ["dump", "save", str(out)])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["dump", "info", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["ptdump", "--dump", str(out), "--cpu", "1", "--space", "primary"])
    assert r.exit_code == 0 and "PTE" in r.stdout


def test_tools_pttree_writes_the_same_dot(vmcore, image, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pttree", Path(__file__).parents[2] / "tools" / "pttree.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(vmcore), "--asce", f"{image.asce3:x}"]) == 0
    assert capsys.readouterr().out.count("[label=\"PT ") == 4


def test_an_asce_that_designates_data_stops_the_walk_with_exit_5():
    # A region-second "table" at the lowcore: its garbage entries lead back into the same
    # few frames 2048 times per level (2048**3 tables); the walk used to never end.
    # Run in a subprocess with a timeout, so that a hang fails the test instead of CI.
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "s390emu.cli", "ptdump", "--asce", "0x8"]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert text.returncode == 5, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "---[ User Address Space Start ]---" and len(lines) > 2
    assert "User Address Space End" not in text.stdout          # the list is cut: no end marker
    (err,) = [e for e in text.stderr.splitlines() if "stopped" in e]
    assert "ptdump stopped at 0x" in err and "the lines above are those before it" in err
    js = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert js.returncode == 5
    doc = json.loads(js.stdout)
    assert doc["complete"] is False and int(doc["stopped_at"], 16) > 0
    assert int(doc["runs"][-1]["end"], 16) <= int(doc["stopped_at"], 16)


def test_a_real_tree_lists_complete():
    r = CliRunner().invoke(main, ["ptdump", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["complete"] is True and doc["stopped_at"] is None


def test_garbage_tree_limit_counts_only_repeats():
    # A tree where one page table is reached from every segment entry: repeats, not
    # distinct tables, stop the walk; under the limit the listing is whole.
    from s390emu.inspect import ptdump as pd
    from s390emu.memory import PhysicalMemory
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20000            # every STE -> the same page table
    mem.table(0x20000, 256)[:] = 0x400
    lines = list(pd.ptdump_lines(mem, 0x10003))       # 2047 repeats: under MAX_REPEATS
    assert lines[-1] == "---[ Address Space End ]---"
    with pytest.raises(pd.GarbageTree) as e:
        list(pd._notes(pd.table_tree(mem, 0x10003), [], pd._Visits(limit=100)))
    assert e.value.repeats == 101 and e.value.table == 0x20000 and e.value.address == 101 << 20
    assert str(e.value) == ("ptdump stopped at 0x6500000: 101 times the walk reached a table it had read before "
                            "(the last 0x20000); Linux's tables form a tree, so this ASCE designates data, "
                            "not page tables")


def test_distinct_tables_do_not_count_as_repeats():
    # 200 segment entries, each to a page table of its own: 200 reads, no repeat.
    from s390emu.inspect import ptdump as pd
    from s390emu.memory import PhysicalMemory
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20
    for i in range(200):
        mem.write_u64(0x10000 + 8 * i, 0x20000 + 0x800 * i)
        mem.table(0x20000 + 0x800 * i, 256)[:] = 0x400
    notes = list(pd._notes(pd.table_tree(mem, 0x10003), [], pd._Visits(limit=100)))
    assert notes


def _set_psw_mask(path: Path, cpu: int, mask: int) -> None:
    """Write ``mask`` as CPU ``cpu``'s PSW mask in the dump's NT_PRSTATUS note (in place)."""
    import struct
    data = bytearray(path.read_bytes())
    phoff, = struct.unpack_from(">Q", data, 32)
    phentsize, phnum = struct.unpack_from(">HH", data, 54)
    seen = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(">IIQQQQ", data, phoff + i * phentsize)
        at, end = p_offset, p_offset + p_filesz
        while p_type == 4 and at + 12 <= end:               # PT_NOTE
            namesz, descsz, n_type = struct.unpack_from(">III", data, at)
            desc = at + 12 + (namesz + 3) // 4 * 4
            if n_type == 1:                                  # NT_PRSTATUS: one per CPU, in order
                if seen == cpu:
                    struct.pack_into(">Q", data, desc + dump.PRSTATUS_PSW, mask)
                    path.write_bytes(bytes(data))
                    return
                seen += 1
            at = desc + (descsz + 3) // 4 * 4
    raise AssertionError(f"no NT_PRSTATUS of CPU {cpu}")


@pytest.mark.parametrize("asc, space", [(0, "primary"), (1, "primary"), (2, "secondary"), (3, "home")])
def test_space_defaults_to_the_one_the_psw_selects_in_translate_ptdump_and_pttree(vmcore, tmp_path, capsys, asc, space):
    # PSW bits 16-17 (ASC): 00 primary, 01 access-register (ALET 0 is primary), 10 secondary, 11 home.
    core = tmp_path / "core"
    core.write_bytes(vmcore.read_bytes())
    _set_psw_mask(core, 1, 1 << 58 | asc << 46)
    from s390emu.inspect import open_dump
    st = open_dump(core)
    assert st.cpu(1).asc == ("access-register" if asc == 1 else space) and st.default_space(1) == space
    assert st.asce(1, "primary") != st.asce(1, "home")       # a wrong default shows (CR7 is CR1 here)
    run = lambda *a: CliRunner().invoke(main, [*a])                                 # noqa: E731
    for cmd in (["translate", "--dump", str(core), "--cpu", "1", "--json", "0x100000"],
                ["ptdump", "--dump", str(core), "--cpu", "1"]):
        implied, named = run(*cmd), run(*cmd, "--space", space)
        assert implied.exit_code == named.exit_code and implied.stdout == named.stdout, (cmd, implied.output)
    spec = importlib.util.spec_from_file_location("pttree", Path(__file__).parents[2] / "tools" / "pttree.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(core), "--cpu", "1"]) == mod.main([str(core), "--cpu", "1", "--space", space]) == 0
    implied_dot, named_dot = capsys.readouterr().out.split("digraph")[1:]
    assert implied_dot == named_dot and f"{st.asce(1, space):#018x}" in implied_dot
