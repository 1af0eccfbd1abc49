"""The built-in demo through the CLI: ``s390emu demo`` and ``translate`` without --image."""

import json

import pytest
from click.testing import CliRunner

import dat
from s390emu.cli import main
from pgalloc.demo import ADDRESSES, HOLE, HEAP, NO_SEGMENT, R1_RANGE, TEXT, THP, build_demo

VERSIONS = ["v515", "v64", "seed", "v66", "v67"]


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_builds_the_demo_with_the_expected_translations(version):
    d = build_demo(version)
    mem = d.machine.mem
    expect = {HOLE: 0x11, NO_SEGMENT: 0x10}
    for vaddr, _ in ADDRESSES:
        if vaddr in expect:
            with pytest.raises(dat.TranslationException) as e:
                dat.translate(mem, d.asce5, vaddr)
            assert e.value.code == expect[vaddr]
        else:
            r = dat.translate(mem, d.asce5, vaddr)
            assert r.page_size == (1 << 20 if vaddr == THP else 4096)
    with pytest.raises(dat.TranslationException) as e:
        dat.translate(mem, d.asce3, R1_RANGE)
    assert e.value.code == 0x38
    with pytest.raises(dat.TranslationException) as e:
        dat.translate(mem, d.asce5, TEXT, access="write")
    assert e.value.code == 0x04


@pytest.mark.parametrize("version", ["v64", "v66"])
def test_the_heap_page_table_is_the_upper_half_of_the_text_tables_frame(version):
    d = build_demo(version)
    heap_pt = dat.translate(d.machine.mem, d.asce5, HEAP).path[-1].table
    text_pt = dat.translate(d.machine.mem, d.asce5, TEXT).path[-1].table
    assert heap_pt == text_pt + 0x800


def test_the_demo_is_deterministic():
    a, b = build_demo("v66"), build_demo("v66")
    assert a.machine.mem.digest() == b.machine.mem.digest()


def test_the_cpus_control_registers_hold_the_processes_asces():
    d = build_demo("v66")
    m = d.machine
    assert m.control_register(0, 1) == m.control_register(0, 7) == d.asce5
    assert m.control_register(1, 7) == d.asce3
    assert m.control_register(0, 13) == m.kernel_asce


def test_demo_command_prints_what_it_did_and_commands_to_try():
    r = run("demo", "--version", "v66")
    assert r.exit_code == 0
    assert "page_table_free_rcu" in r.stdout and "pte_free_defer" in r.stdout
    assert "s390emu translate --demo v66 0x10008000" in r.stdout
    doc = json.loads(run("demo", "--json").stdout)
    assert doc["asce5"].endswith("1cf") and doc["asce3"].endswith("1c7")


def test_demo_rejects_an_unknown_version():
    r = run("demo", "--version", "v99")
    assert r.exit_code == 2 and "--version" in r.stderr


def test_translate_defaults_to_the_demo_and_exits_0_when_everything_translates():
    r = run("translate", "0x10000000")
    assert r.exit_code == 0, r.output
    assert "(demo, v66)" in r.stdout and " PTE: " in r.stdout


def test_translate_on_the_demo_exits_3_for_the_hole_and_names_the_exception():
    r = run("translate", "--json", hex(HEAP), hex(HOLE))
    assert r.exit_code == 3
    ok, hole = json.loads(r.stdout)["results"]
    assert "absolute" in ok
    assert hole["exception"]["name"] == "page-translation" and hole["exception"]["level"] == "PTE"


def test_translate_rejects_an_unknown_demo_version():
    r = run("translate", "--demo", "v1", "0x1000")
    assert r.exit_code == 2 and "--demo" in r.stderr


def test_translate_help_lists_the_demos_interesting_addresses():
    r = run("translate", "--help")
    assert r.exit_code == 0
    for addr in ("0x10000000", "0x10008000", "0x20000000", "0x30000000"):
        assert addr in r.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_pages_lists_the_demos_page_table_frames_decoded_from_the_bytes(version):
    r = run("pages", "--version", version, "--json")
    assert r.exit_code == 0, r.output
    frames = json.loads(r.stdout)["frames"]
    d = build_demo(version)
    live = {s.table & ~0xFFF for a, _ in ADDRESSES if a not in (HOLE, NO_SEGMENT, THP)
            for s in dat.translate(d.machine.mem, d.asce5, a).path if s.level == "PTE"}
    assert live <= {int(f["frame"], 16) for f in frames}
    for f in frames:
        byte = f["byte"]
        assert byte & 0xC0 == 0
        if version in ("v64", "v66", "v515"):
            assert byte & 0x0C == 0          # no H bits before the seed, none after it
        for h in f["halves"]:
            assert h["state"] in ("allocated", "pending", "deferred", "free")


def test_pages_never_overwrites_an_svg_unasked(tmp_path):
    out = tmp_path / "map.svg"
    out.write_text("mine")
    r = run("pages", "--svg", str(out))
    assert r.exit_code == 1 and "--force" in r.stderr and out.read_text() == "mine"
    r = run("pages", "--svg", str(out), "--force")
    assert r.exit_code == 0 and out.read_text().startswith("<svg")


def test_translate_takes_the_asce_and_prefix_from_a_dumps_cpu(tmp_path):
    core = tmp_path / "demo.vmcore"
    assert run("dump", "save", str(core)).exit_code == 0
    d = build_demo("v66")
    for cpu, asce in ((0, d.asce5), (1, d.asce3)):
        r = run("translate", "--dump", str(core), "--cpu", str(cpu), "--space", "secondary", "--json", hex(HEAP))
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["asce"] == hex(asce)
        assert doc["prefix"] == hex(d.machine.prefix(cpu))
    r = run("translate", "--dump", str(core), "--space", "home", "--json", "0x100000")
    assert json.loads(r.stdout)["asce"] == hex(d.machine.kernel_asce)


def test_translate_dump_errors_name_the_parameter_or_the_file(tmp_path):
    core = tmp_path / "demo.vmcore"
    run("dump", "save", str(core))
    r = run("translate", "--dump", str(core), "--cpu", "7", "0x1000")
    assert r.exit_code == 2 and "--cpu" in r.stderr
    r = run("translate", "--cpu", "1", "0x1000")
    assert r.exit_code == 2 and "--dump" in r.stderr
    bad = tmp_path / "bad.vmcore"
    bad.write_bytes(b"\x7fELF" + b"\0" * 100)
    r = run("translate", "--dump", str(bad), "0x1000")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
