"""The page-table frames of a running kernel: what a dump reader decodes, plus what only
the running kernel knows.

The frames themselves come from ``s390emu.inspect.pagetables.page_table_frames``, the
one decoder of page-table frames, reading ``k``'s bytes through its VMCOREINFO exactly
as ``s390emu pages`` reads a dump.  To each frame the kernel adds ``rcu_queued`` (its
``rcu_head`` is on the RCU queue), ``pt_mm`` (``page->pt_mm``, 0 where the version never
sets it), per half ``owner_mm`` (from the allocation record ``Kernel.owner``) and the
frame's ``owner_mm`` (``pt_mm``, else the one owner of its halves).
"""

from __future__ import annotations

from s390emu import structs as S
from s390emu.inspect.pagetables import page_table_frames as decode_frames
from s390emu.vmcoreinfo import read_vmcoreinfo

from .checks import queued_heads

_RCU = S.page.fields["rcu_head"]
_PT_MM = S.page.fields["pt_mm"]


def page_table_frames(k) -> list[dict]:
    """Every page-table frame of ``k`` as plain data (JSON-ready).

    >>> from pgalloc import Kernel, mm
    >>> k = Kernel("v64", mem_size=8 << 20)
    >>> m = mm.mm_alloc(k)
    >>> t = k.page_table_alloc(m)
    >>> f = page_table_frames(k)[0]
    >>> f["byte"], f["halves"][0]["A"], f["halves"][1]["A"], f["listed"], f["owner_mm"] == m
    (1, True, False, True, True)
    """
    queued = queued_heads(k)
    frames = decode_frames(k.mem, read_vmcoreinfo(k.mem))
    for f in frames:
        page, frame = f["page"], f["frame"]
        for h, half in enumerate(f["halves"]):
            half["owner_mm"] = k.owner.get(frame + 0x800 * h, 0)
        owners = {half["owner_mm"] for half in f["halves"] if half["owner_mm"]}
        pt_mm = k.mem.read_u64(page + _PT_MM)
        f.update(rcu_queued=page + _RCU in queued, pt_mm=pt_mm,
                 owner_mm=pt_mm or (owners.pop() if len(owners) == 1 else 0))
    return frames
