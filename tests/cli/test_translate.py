"""``s390emu translate`` through click's CliRunner: output, --json, exit codes, bad input."""

import json

import pytest
from click.testing import CliRunner

from s390emu.cli import main
from s390emu.memory import PhysicalMemory

# A region-third ASCE over hand-built tables (the worked example of dat-spec §5.1).
R3T, ST, PT_FRAME = 0x10000, 0x20000, 0x30000
ASCE = R3T | 0x07
VADDR = 0x0000012345678ABC


@pytest.fixture
def image(tmp_path):
    mem = PhysicalMemory(1 << 20)
    mem.table(R3T, 2048)[:] = 0x24
    mem.table(ST, 2048)[:] = 0x20
    mem.table(PT_FRAME, 512)[:] = 0x400
    mem.write_u64(R3T + 8 * 0x246, ST | 0x07)
    mem.write_u64(ST + 8 * 0x456, PT_FRAME | 0x800 | 0x01)     # page table in the upper half
    mem.write_u64(PT_FRAME + 0x800 + 8 * 0x78, 0x7E000 | 0x200)  # protected page
    path = tmp_path / "mem.raw"
    path.write_bytes(mem.data.tobytes())
    return path


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_translate_prints_a_crash_style_walk_and_the_real_address(image):
    r = run("translate", "--image", str(image), "--asce", hex(ASCE), hex(VADDR))
    assert r.exit_code == 0, r.output
    assert " RTTE: 0000000000011230 => 0000000000020007 (flags = 007)" in r.stdout
    assert "flags in binary : FC=0; P=0; TF=00; I=0; CR=0; TT=01; TL=11" in r.stdout
    assert "  STE: 00000000000222b0 => 0000000000030801 (flags = 001)" in r.stdout
    assert "  PTE: 0000000000030bc0 => 000000000007e200 (flags = 200)" in r.stdout
    assert "REAL: 000000000007eabc  ABSOLUTE: 000000000007eabc  (protected)" in r.stdout


def test_json_gives_one_document_with_hex_strings(image):
    r = run("translate", "--image", str(image), "--asce", "0x1_0007", "--json", hex(VADDR), "0x5000")
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    ok, bad = doc["results"]
    assert ok["vaddr"] == hex(VADDR) and ok["real"] == "0x7eabc" and ok["absolute"] == "0x7eabc"
    assert [s["level"] for s in ok["path"]] == ["RTTE", "STE", "PTE"]
    assert ok["path"][2]["entry_addr"] == "0x30bc0"
    assert bad["exception"] == {"code": "0x3b", "name": "region-third-translation", "level": "RTTE",
                                "entry_addr": hex(R3T)}


def test_a_store_to_a_protected_page_exits_3_with_a_protection_exception(image):
    r = run("translate", "--image", str(image), "--asce", hex(ASCE), "--write", hex(VADDR))
    assert r.exit_code == 3
    assert "protection exception (0x04) at PTE 0000000000030bc0" in r.stdout


def test_prefix_moves_the_low_8k(image, tmp_path):
    r = run("translate", "--image", str(image), "--asce", "0x20", "--prefix", "0x20000", "--json", "0x1000")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["results"][0]["absolute"] == "0x21000"


@pytest.mark.parametrize("args, word", [
    (["--asce", "0xzz", "0x1000"], "--asce"),
    (["--asce", "0x10007", "12g4"], "VADDR"),
    (["--asce", "0x1_0000_0000_0000_0000", "0x1"], "--asce"),
    (["--asce", "0x10007", "--prefix", "0x1001", "0x1"], "--prefix"),
])
def test_unparsable_input_exits_2_naming_the_parameter(image, args, word):
    r = run("translate", "--image", str(image), *args)
    assert r.exit_code == 2
    assert word in r.stderr
    assert "Traceback" not in r.output


def test_image_needs_an_asce(image):
    r = run("translate", "--image", str(image), "0x1000")
    assert r.exit_code == 2 and "--asce" in r.stderr


def test_missing_or_misshapen_image_exits_1_with_one_line(tmp_path):
    r = run("translate", "--image", str(tmp_path / "nope.raw"), "--asce", "0x10007", "0x1")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    odd = tmp_path / "odd.raw"
    odd.write_bytes(b"\0" * 5000)
    r = run("translate", "--image", str(odd), "--asce", "0x10007", "0x1")
    assert r.exit_code == 1 and "multiple of 4096" in r.stderr


def test_tables_pointing_outside_storage_give_an_addressing_exception(image):
    r = run("translate", "--image", str(image), "--asce", hex(0x7000_0000 | 0x07), "--json", hex(VADDR))
    assert r.exit_code == 3
    assert json.loads(r.stdout)["results"][0]["exception"]["code"] == "0x05"


def test_the_image_file_is_never_written(image):
    before = image.read_bytes()
    run("translate", "--image", str(image), "--asce", hex(ASCE), "--write", hex(VADDR))
    assert image.read_bytes() == before
