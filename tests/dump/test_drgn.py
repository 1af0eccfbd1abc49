"""drgn opens our dumps with no vmlinux, and its s390x walker agrees with ours.

For every page some entry of the mm's tables decides (``pages.decided_pages``: every
PTE, both ends of every invalid or large entry's span), drgn's ``follow_phys(mm, va)``
and ``dat.translate_many`` agree on mapped-or-not and on the physical address.  drgn
reads ``mm->pgd`` from the dump itself through the VMCOREINFO offset.
"""

from __future__ import annotations

import numpy as np
import pytest

import dat
from pgalloc.demo import build_demo
from s390emu import dump

from .images import build_image
from .pages import decided_pages

drgn = pytest.importorskip("drgn")
from .drgn_oracle import drgn_translate, open_dump  # noqa: E402


def _agree(path, mem, vmcoreinfo, mm, asce):
    prog = open_dump(str(path), vmcoreinfo)
    vas = decided_pages(mem, asce)
    mapped, phys = drgn_translate(prog, mm, vas)
    addrs, codes = dat.translate_many(mem, asce, vas)
    ours = codes == 0
    bad = np.flatnonzero((mapped != ours) | (ours & (phys != addrs)))
    assert len(bad) == 0, [(hex(int(vas[i])), bool(mapped[i]), hex(int(phys[i])), int(codes[i]),
                            hex(int(addrs[i]))) for i in bad[:10]]
    return len(vas), int(ours.sum())


class TestDrgnOpensOurDump:
    def test_platform_is_s390x_linux_kernel(self, tmp_path):
        im = build_image()
        dump.save(tmp_path / "vmcore", im.machine)
        prog = drgn.Program()
        prog.set_core_dump(str(tmp_path / "vmcore"))
        assert prog.platform.arch == drgn.Architecture.S390X
        assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL

    def test_physical_reads_return_the_machines_bytes(self, tmp_path):
        im = build_image()
        dump.save(tmp_path / "vmcore", im.machine)
        prog = drgn.Program()
        prog.set_core_dump(str(tmp_path / "vmcore"))
        for f in im.data[:5] + [im.pgd, 0x2800]:
            assert prog.read(f, 64, True) == im.machine.mem.read(f, 64)


class TestDrgnWalkerAgreesWithOurs:
    def test_every_decided_page_of_the_3_level_mm(self, tmp_path):
        im = build_image()
        vmci = dump.load(dump.save(tmp_path / "vmcore", im.machine).path).vmcoreinfo
        n, mapped = _agree(tmp_path / "vmcore", im.machine.mem, vmci, im.mm, im.asce3)
        assert mapped == 16 + 63 + 3 + 3 + 1          # text, heap, half, 1M frame, stack
        assert n > 4000

    def test_every_decided_page_of_the_5_level_mm(self, tmp_path):
        im = build_image()
        im.machine.mem.write_u64(im.mm + 8, im.r1t)     # mm->pgd = the region-first table
        vmci = dump.load(dump.save(tmp_path / "vmcore", im.machine).path).vmcoreinfo
        n, mapped = _agree(tmp_path / "vmcore", im.machine.mem, vmci, im.mm, im.asce5)
        assert mapped == 86

    def test_the_kernel_identity_map(self, tmp_path):
        im = build_image()
        m = im.machine
        m.mem.write_u64(im.mm + 8, m.swapper_pg_dir)
        vmci = dump.load(dump.save(tmp_path / "vmcore", m).path).vmcoreinfo
        n, mapped = _agree(tmp_path / "vmcore", m.mem, vmci, im.mm, m.kernel_asce)
        assert mapped == 3 * (m.mem.size >> 20)


@pytest.mark.parametrize("version", ["v515", "v64", "seed", "v66", "v67"])
def test_drgn_agrees_on_every_decided_page_of_the_demo_mms(tmp_path, version):
    demo = build_demo(version)
    m = demo.machine
    vmci = dump.load(dump.save(tmp_path / "vmcore", m).path).vmcoreinfo
    for mm, asce in ((demo.mm3, demo.asce3), (demo.mm5, demo.asce5)):
        assert m.mem.read_u64(mm + int(vmci["OFFSET(mm_struct.context.asce)"])) == asce
        n, mapped = _agree(tmp_path / "vmcore", m.mem, vmci, mm, asce)
        assert mapped > 0 and n > mapped
