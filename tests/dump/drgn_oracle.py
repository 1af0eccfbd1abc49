"""drgn as an oracle: open our dump with no vmlinux and translate through an mm.

drgn needs no debug info to walk s390x tables (``ecosystem-and-anchors.md`` §0.3).  To
use its public helper ``follow_phys(mm, addr)`` we give it the two types that helper
touches, ``struct mm_struct`` (only ``pgd``, at the offset our VMCOREINFO publishes as
``OFFSET(mm_struct.pgd)``) and ``phys_addr_t``: drgn then reads ``mm->pgd`` from the
dump's bytes itself and walks from there with its own s390x walker
(``libdrgn/arch_s390x.c``: levels from entry 0's TT, stops at I=1, 1M/2G frames).
"""

from __future__ import annotations

import numpy as np

drgn = __import__("pytest").importorskip("drgn")
from drgn import FaultError, Object, Program, TypeMember  # noqa: E402
from drgn.helpers.linux.mm import follow_phys  # noqa: E402


def open_dump(path: str, vmcoreinfo: dict[str, str]) -> Program:
    """A drgn Program over the ELF dump at ``path``, with the two types follow_phys needs."""
    prog = Program()
    prog.set_core_dump(path)
    pgd_off = int(vmcoreinfo["OFFSET(mm_struct.pgd)"])
    mm_size = int(vmcoreinfo["SIZE(mm_struct)"])
    ulong = prog.int_type("unsigned long", 8, False)
    types = {
        "phys_addr_t": prog.typedef_type("phys_addr_t", prog.int_type("unsigned long long", 8, False)),
        "mm_struct": prog.struct_type("mm_struct", mm_size, [
            TypeMember(prog.pointer_type(prog.struct_type("pgd_t", 8, [TypeMember(ulong, "pgd", 0)])),
                       "pgd", pgd_off * 8)]),
    }

    def find(prog_, kinds, name, filename):
        t = types.get(name)
        if t is not None and t.kind in kinds:
            return t
        return None

    prog.register_type_finder("s390emu", find, enable_index=0)
    return prog


def drgn_translate(prog: Program, mm: int, vaddrs) -> tuple[np.ndarray, np.ndarray]:
    """``(mapped, phys)`` arrays: drgn's follow_phys for each address through ``mm``."""
    mm_obj = Object(prog, prog.pointer_type(prog.type("struct mm_struct")), mm)
    mapped = np.zeros(len(vaddrs), dtype=bool)
    phys = np.zeros(len(vaddrs), dtype=np.uint64)
    for i, va in enumerate(vaddrs):
        try:
            phys[i] = follow_phys(mm_obj, int(va)).value_()
            mapped[i] = True
        except FaultError:
            pass
    return mapped, phys
