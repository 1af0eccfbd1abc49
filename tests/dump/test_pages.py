"""``s390emu pages`` decodes page-table frames from a dump alone and agrees with pgalloc.

``s390emu.inspect.page_table_frames`` reads only the dump file through its VMCOREINFO;
the running ``Kernel`` knows the same things from its own records (``pagetable_pages``,
``listed_pages``, the allocation record ``Kernel.owner``).  On a state with full,
half-free, RCU-pending and pte_free_defer'd frames of two mms both must say the same
per frame: fragment byte, refcount, listed, PG_active, and which mm each half is for.
"""

from __future__ import annotations

import json
import xml.dom.minidom

import pytest
from click.testing import CliRunner

from s390emu import dump
from s390emu import structs as S
from s390emu.cli import main
from s390emu.inspect import fragmap_svg, page_table_frames

pgalloc = pytest.importorskip("pgalloc")
from pgalloc import Kernel, mm as MM  # noqa: E402
from pgalloc import pages as P  # noqa: E402
from pgalloc.checks import listed_pages, pagetable_pages  # noqa: E402


@pytest.fixture(scope="module", params=["v64", "v66", "v67"])
def state(request, tmp_path_factory):
    k = Kernel(request.param, mem_size=16 << 20)
    a, b = MM.mm_alloc(k), MM.mm_alloc(k)
    for base in (0x100000, 0x10000000, 0x20000000):
        MM.map_range(k, a, base, base + 8 * 4096)
    MM.map_range(k, b, 0x100000, 0x100000 + 8 * 4096)
    t = k.page_table_alloc(a)
    k.page_table_alloc(a)
    k.page_table_free_rcu(k.tlb_gather_mmu(a), t)        # a pending half
    t3 = k.page_table_alloc(b)
    k.page_table_alloc(b)
    k.pte_free_defer(b, t3)                               # a deferred half
    path = tmp_path_factory.mktemp("pages") / "vmcore"
    dump.save(path, k.machine)
    return k, path, (a, b)


def test_the_dump_alone_gives_what_the_running_kernel_knows(state):
    k, path, _ = state
    d = dump.load(path)
    ours = page_table_frames(d.mem, d.vmcoreinfo)
    listed = listed_pages(k)
    ref = [(k.mem_map.page_address(p), k.byte(p), k.mem_map.refcount(p) & 0xFFFFFF, p in listed,
            k.mem_map.test_flag(p, S.PG_active)) for p in pagetable_pages(k).tolist()]
    assert [(f["frame"], f["byte"], f["refcount"], f["listed"], f["active"]) for f in ours] == ref
    assert len(ours) >= 4


def test_a_half_the_dump_says_is_reached_is_one_the_kernel_handed_to_that_mm(state):
    k, path, _ = state
    d = dump.load(path)
    for f in page_table_frames(d.mem, d.vmcoreinfo):
        for h, half in enumerate(f["halves"]):
            if half["reached_by"]:
                assert k.owner.get(f["frame"] + 0x800 * h) == half["reached_by"]


def test_pgalloc_pages_adds_what_only_the_running_kernel_knows(state):
    k, path, _ = state
    d = dump.load(path)
    theirs = P.page_table_frames(k)
    assert [f["frame"] for f in theirs] == [f["frame"] for f in page_table_frames(d.mem, d.vmcoreinfo)]
    assert all({"rcu_queued", "pt_mm", "owner_mm"} <= f.keys() for f in theirs)
    assert any(f["owner_mm"] for f in theirs)


def test_each_reached_half_names_its_mm(state):
    k, path, mms = state
    d = dump.load(path)
    reached = {h["reached_by"] for f in page_table_frames(d.mem, d.vmcoreinfo) for h in f["halves"]}
    assert set(mms) <= reached


def test_the_command_prints_json_and_draws_an_svg(state, tmp_path):
    _, path, mms = state
    r = CliRunner().invoke(main, ["pages", "--dump", str(path), "--json", "--svg", str(tmp_path / "f.svg")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["mms"] == [hex(m) for m in mms]
    assert "allocated" in {h["state"] for f in doc["frames"] for h in f["halves"]}
    svg = xml.dom.minidom.parse(str(tmp_path / "f.svg"))          # well-formed
    assert len(svg.getElementsByTagName("rect")) >= 3 * len(doc["frames"])
    text = CliRunner().invoke(main, ["pages", "--dump", str(path)]).stdout
    assert text.splitlines()[0].split()[:3] == ["FRAME", "PAGE", "BYTE"]


def test_a_dump_without_the_layout_exits_1(tmp_path):
    from s390emu.memory import PhysicalMemory

    dump.save(tmp_path / "bare", PhysicalMemory(1 << 20))
    r = CliRunner().invoke(main, ["pages", "--dump", str(tmp_path / "bare")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "VMCOREINFO" in r.stderr


def test_fragmap_of_no_frames_is_still_an_svg():
    assert fragmap_svg([]).startswith("<svg")
