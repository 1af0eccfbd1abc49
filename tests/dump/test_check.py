"""``s390emu check --dump``: the pgalloc invariants and reachability on a dump alone.

The demo of every allocator version checks clean (the seed's too: its demo never has
two deferred halves on one page, so none of its known faults shows).  Dumps corrupted on
purpose, at named places of the demo, are caught with exit 4 and the invariant named:
a segment-table entry into a freed frame, an illegal fragment byte, a full page on a
pgtable_list, a half reachable from two mms, a held mm lock.  A corrupt file, or a dump
of a machine no pgalloc kernel ran, exits 1 with one line.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from s390emu import dump, lists
from s390emu import structs as S
from s390emu.cli import main
from pgalloc.demo import HEAP, NO_SEGMENT, TEXT, build_demo
from s390emu.machine import Machine, read_vmcoreinfo

from pgalloc import Kernel, mm as MM
from pgalloc.attach import AttachError, attach, check_dump
from pgalloc.checks import queued_heads
from pgalloc.kernel import OSRELEASES

VERSIONS = ["v515", "v64", "seed", "v66", "v67"]
_MM = S.mm_struct.fields
_LRU = S.page.fields["lru"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def save(tmp_path, machine, name="vmcore"):
    path = tmp_path / name
    dump.save(path, machine)
    return path


def ste_address(k, mm, vaddr):
    return MM.segment_table(k, mm, vaddr) + 8 * ((vaddr >> 20) & 0x7FF)


def violations(r):
    return [line for line in r.output.splitlines() if line.startswith("VIOLATION")]


# -- what the dump says about itself -------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_every_kernel_publishes_its_allocator_version_in_vmcoreinfo(version, tmp_path):
    path = save(tmp_path, build_demo(version).machine)
    vmci = dump.load(path).vmcoreinfo
    assert vmci["S390EMU_PGALLOC"] == version
    assert vmci["OSRELEASE"] == OSRELEASES[version]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_demo_dump_of_every_version_checks_clean(version, tmp_path):
    d = build_demo(version)
    path = save(tmp_path, d.machine)
    r = run("check", "--dump", path)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == f"{path}: allocator {version}, 2 live mms, 10 page tables reached, 0 RCU callbacks queued"
    assert "clean: no violation" in r.output


@pytest.mark.parametrize("version", VERSIONS)
def test_attach_rebuilds_the_owner_record_the_running_kernel_kept(version, tmp_path):
    d = build_demo(version)
    d2 = dump.load(save(tmp_path, d.machine))
    k = attach(d2.machine, d2.vmcoreinfo)
    assert k.version == version and k.owner == d.kernel.owner
    assert k.rcu == [] and k.locks == {} and check_dump(k) == []


@pytest.mark.parametrize("version", ["seed", "v67"])
def test_attach_rebuilds_the_rcu_queue_from_rcu_head_func(version, tmp_path):
    k = Kernel(version, mem_size=16 << 20)
    mm = MM.mm_alloc(k)
    MM.map_range(k, mm, 0x100000, 0x100000 + 8 * 4096)
    a, b = k.page_table_alloc(mm), k.page_table_alloc(mm)
    k.pte_free_defer(mm, a)
    k.pte_free_defer(mm, b)
    d = dump.load(save(tmp_path, k.machine))
    ka = attach(d.machine, d.vmcoreinfo)
    assert queued_heads(ka) == queued_heads(k) and len(ka.rcu) >= 1
    assert check_dump(ka) == []
    k.rcu_barrier()
    assert attach(Machine(mem=k.mem.copy())).rcu == []


def test_without_dump_the_demo_is_checked_and_json_is_one_document():
    r = run("check", "--version", "v64", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["version"] == "v64" and doc["violations"] == [] and len(doc["mms"]) == 2


# -- corruptions, each caught and named ----------------------------------------------------------

@pytest.mark.parametrize("version", ["v64", "v66", "v67"])
def test_an_ste_into_a_freed_frame_is_a_reachability_violation(version, tmp_path):
    d = build_demo(version)
    k = d.kernel
    freed = k.frames.alloc_pages(0)
    k.frames.free_pages(freed)
    ste = ste_address(k, d.mm3, HEAP)
    k.mem.write_u64(ste, freed | (k.mem.read_u64(ste) & 0x7FF))
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    (v,) = violations(r)
    assert "[reachability]" in v and f"reaches page table {freed:#x} in a freed frame" in v
    assert f"mm {d.mm3:#x}" in v and f"STE at {ste:#x}" in v


@pytest.mark.parametrize("version", ["v64", "seed", "v66", "v67"])
def test_an_illegal_fragment_byte_is_a_bit_legality_violation(version, tmp_path):
    d = build_demo(version)
    k = d.kernel
    page = k.mem_map.virt_to_page(MM.pte_table(k, d.mm5, TEXT))
    word = k.mem.read_u32(page + 52)
    k.mem.write_u32(page + 52, (word & 0xFFFFFF) | 0x11 << 24)      # A0 and P0: allocated and pending
    r = run("check", "--dump", save(tmp_path, d.machine), "--json")
    assert r.exit_code == 4, r.output
    found = json.loads(r.output)["violations"]
    legality = [f for f in found if f["invariant"] == "bit_legality"]
    assert legality == [{"invariant": "bit_legality", "page": f"{page:#x}",
                         "frame": f"{k.mem_map.page_address(page):#x}", "byte": 0x11,
                         "bits": "0x11 [A0 P0]", "message": "byte 0x11 [A0 P0]"}]


@pytest.mark.parametrize("version", ["v64", "v66"])
def test_a_full_page_on_a_pgtable_list_is_a_list_membership_violation(version, tmp_path):
    d = build_demo(version)
    k = d.kernel
    page = k.mem_map.virt_to_page(MM.pte_table(k, d.mm5, TEXT))
    assert k.byte(page) == 0x03          # text and heap tables share the frame
    lists.list_add(k.mem, page + _LRU, d.mm5 + _MM["context.pgtable_list"])
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    (v,) = violations(r)
    assert v == (f"VIOLATION [list_membership] page {page:#x} (frame {k.mem_map.page_address(page):#x}) "
                 f"byte 0x03 [A0 A1]: listed with byte 0x03 [A0 A1]")


@pytest.mark.parametrize("version", ["v64", "seed", "v66", "v67"])
def test_a_half_reachable_from_two_mms_is_a_reachability_violation(version, tmp_path):
    d = build_demo(version)
    k = d.kernel
    shared = MM.pte_table(k, d.mm5, HEAP)
    k.mem.write_u64(ste_address(k, d.mm3, NO_SEGMENT), k.mem.read_u64(ste_address(k, d.mm5, HEAP)))
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    (v,) = violations(r)
    assert "[reachability]" in v and f"reaches page table {shared:#x} owned by mm" in v
    corrupted, owners = ste_address(k, d.mm3, NO_SEGMENT), ste_address(k, d.mm5, HEAP)
    # every entry that reaches it is named, one marked; with 2K fragments the corrupted one (in
    # A's segment table) is, since B alone reaches the frame's other half
    a, b = f"mm {d.mm3:#x} STE at {corrupted:#x}", f"mm {d.mm5:#x} STE at {owners:#x}"
    if version == "v67":
        assert v.endswith((f"{a} (not the owner's), {b}", f"{a}, {b} (not the owner's)")), v
    else:
        assert v.endswith(f"entries reaching it: {a} (not the owner's), {b}"), v


def test_a_region_entry_beyond_storage_is_a_reachability_violation_and_the_rest_is_still_checked(tmp_path):
    d = build_demo("v66")
    k = d.kernel
    asce = k.mem.read_u64(d.mm5 + _MM["context.asce"])
    k.mem.write_u64(d.mm5 + _MM["context.asce"], (asce & 0xFFF) | 1 << 40)
    page = k.mem_map.virt_to_page(MM.pte_table(k, d.mm3, TEXT))
    k.mem.write_u32(page + 52, (k.mem.read_u32(page + 52) & 0xFFFFFF) | 0x40 << 24)     # bit 6: never used
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    found = violations(r)
    assert any(f"[reachability] -: mm {d.mm5:#x} reaches" in v and "beyond storage" in v for v in found)
    assert any("[bit_legality]" in v and f"page {page:#x}" in v for v in found)


def test_a_held_mm_lock_is_reported(tmp_path):
    d = build_demo("v66")
    d.kernel.mem.write_u32(d.mm5 + _MM["context.lock"], ~1 & 0xFFFFFFFF)
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    (v,) = violations(r)
    assert v.startswith(f"VIOLATION [locking] -: mm {d.mm5:#x}: context.lock is held") and "CPU 1" in v


def test_a_broken_pgtable_list_is_a_list_corruption_violation(tmp_path):
    d = build_demo("v64")
    d.kernel.mem.write_u64(d.mm5 + _MM["context.pgtable_list"], 0x3000 + 64 * 5000 + _LRU)
    r = run("check", "--dump", save(tmp_path, d.machine))
    assert r.exit_code == 4, r.output
    assert any("[list_corruption]" in v for v in violations(r))


# -- files that are not checkable ------------------------------------------------------------

def test_a_corrupt_dump_exits_1_with_one_line(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x7fELF" + b"\x02\x02\x01" + b"\0" * 100)
    r = run("check", "--dump", path)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("s390emu: ") and "Traceback" not in r.stderr


def test_a_machine_no_pgalloc_kernel_ran_exits_1_naming_why(tmp_path):
    r = run("check", "--dump", save(tmp_path, Machine(8 << 20, ncpus=1)))
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and "no S390EMU_PGALLOC key" in r.stderr
    raw = tmp_path / "zeros.raw"
    raw.write_bytes(bytes(1 << 16))
    r = run("check", "--dump", raw)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output


def test_attach_refuses_a_vmcoreinfo_that_disagrees_with_itself():
    m = build_demo("v64").machine
    m.publish_vmcoreinfo({"OSRELEASE": "6.6.0-s390emu"})
    assert read_vmcoreinfo(m.mem)["S390EMU_PGALLOC"] == "v64"
    with pytest.raises(AttachError, match="disagrees"):
        attach(m)


def test_dump_and_version_together_is_a_usage_error(tmp_path):
    r = run("check", "--dump", tmp_path / "x", "--version", "v64")
    assert r.exit_code == 2


def test_help_teaches_with_examples():
    r = run("check", "--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "s390emu check --dump demo.vmcore" in r.output
