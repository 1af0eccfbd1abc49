"""The batch DAT walker: a numpy array of virtual addresses, one level at a time.

Same checks in the same order as ``walker.translate``; each level handles only the
lanes still walking (their indices are compacted after every level), so a batch costs a
handful of vectorised operations per level and nothing per address in Python.
"""

from __future__ import annotations

import numpy as np

from s390emu.memory import PhysicalMemory

from .entries import (
    ASCE_ORIGIN, ASCE_PRIVATE, ASCE_REAL_SPACE, ASCE_TABLE_LENGTH, ASCE_TYPE_MASK, INDEX_SHIFT,
    LEVEL_PGM, PGM_ADDRESSING, PGM_ASCE_TYPE, PGM_PAGE_TRANS, PGM_PROTECTION,
    PGM_REG_FIRST_TRANS, PGM_TRANS_SPEC, Level,
)
from .errors import InvalidArgument
from .walker import ACCESSES

_U = np.uint64


def _fetch(mem: PhysicalMemory, addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries at ``addr`` (native uint64) and the mask of addresses inside storage."""
    ok = addr <= _U(mem.size - 8)
    ent = np.zeros(len(addr), dtype=_U)
    ent[ok] = mem.u64[(addr[ok] >> _U(3)).astype(np.intp)]
    return ent, ok


def translate_many(mem: PhysicalMemory, asce: int, vaddrs, *, access: str = "read",
                   edat1: bool = True, edat2: bool = True, iep: bool = False, prefix: int = 0,
                   lap: bool = False, large_prefixing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Translate every address of ``vaddrs``: returns ``(addresses, codes)``.

    ``addresses`` (uint64) holds the absolute address (the real one for ``access="lra"``)
    where ``codes`` (uint16) is 0, and 0 where translation raised that
    program-interruption code.  Equal to ``translate`` with the same arguments on every
    input.

    >>> import numpy as np
    >>> from s390emu.memory import PhysicalMemory
    >>> mem = PhysicalMemory(1 << 20)
    >>> mem.table(0x10000, 2048)[:] = 0x20
    >>> mem.write_u64(0x10000, 0x30800); mem.table(0x30800, 256)[:] = 0x400
    >>> mem.write_u64(0x30800 + 8 * 5, 0x7000)
    >>> a, c = translate_many(mem, 0x10003, np.array([0x5abc, 0x6000, 1 << 40], dtype=np.uint64))
    >>> [hex(x) for x in a], c.tolist()
    (['0x7abc', '0x0', '0x0'], [0, 17, 56])
    """
    if access not in ACCESSES:
        raise InvalidArgument(f"access must be one of {', '.join(ACCESSES)}, not {access!r}")
    va = np.ascontiguousarray(vaddrs, dtype=_U)
    n = len(va)
    codes = np.zeros(n, dtype=np.uint16)
    out = np.zeros(n, dtype=_U)
    edat2 = edat2 and edat1
    private = bool(asce & ASCE_PRIVATE)
    lanes = np.arange(n, dtype=np.intp)

    if lap and access == "write" and not private:
        hit = (va & _U(~0x11FF & 0xFFFF_FFFF_FFFF_FFFF)) == 0
        codes[hit] = PGM_PROTECTION
        lanes = lanes[~hit]

    # Results gathered from every lane that completes a walk.
    done_lanes: list[np.ndarray] = []
    done_real: list[np.ndarray] = []
    done_prot: list[np.ndarray] = []
    done_nx: list[np.ndarray] = []
    done_prefix: list[bool] = []

    def fail(sel: np.ndarray, code: int) -> None:
        nonlocal lanes, v, table, prot, nx
        codes[lanes[sel]] = code
        keep = ~sel
        lanes, v, table, prot, nx = lanes[keep], v[keep], table[keep], prot[keep], nx[keep]

    def finish(sel: np.ndarray, real: np.ndarray, prefixing: bool) -> None:
        nonlocal lanes, v, table, prot, nx
        done_lanes.append(lanes[sel]); done_real.append(real[sel])
        done_prot.append(prot[sel]); done_nx.append(nx[sel]); done_prefix.append(prefixing)
        keep = ~sel
        lanes, v, table, prot, nx = lanes[keep], v[keep], table[keep], prot[keep], nx[keep]

    v = va[lanes]
    prot = np.zeros(len(lanes), dtype=bool)
    nx = np.zeros(len(lanes), dtype=bool)
    table = np.zeros(len(lanes), dtype=_U)

    if asce & ASCE_REAL_SPACE:
        finish(np.ones(len(lanes), dtype=bool), v, True)
    else:
        level = Level((asce & ASCE_TYPE_MASK) >> 2)
        tl = asce & ASCE_TABLE_LENGTH
        shift = INDEX_SHIFT[level]
        if level == Level.REGION1:
            fail((v >> _U(62)) > _U(tl), PGM_REG_FIRST_TRANS)
        else:
            fail((v >> _U(shift + 11)) != 0, PGM_ASCE_TYPE)
            fail(((v >> _U(shift + 9)) & _U(3)) > _U(tl), LEVEL_PGM[level])
        table = np.full(len(lanes), asce & ASCE_ORIGIN, dtype=_U)
        while len(lanes):
            shift = INDEX_SHIFT[level]
            ent, ok = _fetch(mem, table + ((v >> _U(shift)) & _U(0x7FF)) * _U(8))
            if not ok.all():
                fail(~ok, PGM_ADDRESSING); ent = ent[ok]
            inv = (ent & _U(0x20)) != 0
            if inv.any():
                fail(inv, LEVEL_PGM[level]); ent = ent[~inv]
            bad = ((ent >> _U(2)) & _U(3)) != _U(int(level))
            if level == Level.SEGMENT and private:
                bad |= (ent & _U(0x10)) != 0
            elif level == Level.REGION3 and private and edat2:
                bad |= (ent & _U(0x10)) != 0
            if bad.any():
                fail(bad, PGM_TRANS_SPEC); ent = ent[~bad]
            if level == Level.SEGMENT:
                prot |= (ent & _U(0x200)) != 0
                if edat1:
                    large = (ent & _U(0x400)) != 0
                    if large.any():
                        if iep:
                            nx |= large & ((ent & _U(0x100)) != 0)
                        real = (ent & _U(0xFFFF_FFFF_FFF0_0000)) | (v & _U(0xFFFFF))
                        finish(large, real, large_prefixing); ent = ent[~large]
                table = ent & _U(0xFFFF_FFFF_FFFF_F800)
                break
            if edat1:
                prot |= (ent & _U(0x200)) != 0
            if level == Level.REGION3 and edat2:
                large = (ent & _U(0x400)) != 0
                if large.any():
                    if iep:
                        nx |= large & ((ent & _U(0x100)) != 0)
                    real = (ent & _U(0xFFFF_FFFF_8000_0000)) | (v & _U(0x7FFF_FFFF))
                    finish(large, real, large_prefixing); ent = ent[~large]
            nxt = Level(level - 1)
            hi = (v >> _U(INDEX_SHIFT[nxt] + 9)) & _U(3)
            out_of_range = (hi < ((ent >> _U(6)) & _U(3))) | (hi > (ent & _U(3)))
            if out_of_range.any():
                fail(out_of_range, LEVEL_PGM[nxt]); ent = ent[~out_of_range]
            table = ent & _U(0xFFFF_FFFF_FFFF_F000)
            level = nxt
        if len(lanes):
            ent, ok = _fetch(mem, table + ((v >> _U(12)) & _U(0xFF)) * _U(8))
            if not ok.all():
                fail(~ok, PGM_ADDRESSING); ent = ent[ok]
            inv = (ent & _U(0x400)) != 0
            if inv.any():
                fail(inv, PGM_PAGE_TRANS); ent = ent[~inv]
            bad = (ent & _U(0x800)) != 0
            if bad.any():
                fail(bad, PGM_TRANS_SPEC); ent = ent[~bad]
            prot |= (ent & _U(0x200)) != 0
            if iep:
                nx |= (ent & _U(0x100)) != 0
            finish(np.ones(len(lanes), dtype=bool), (ent & _U(0xFFFF_FFFF_FFFF_F000)) | (v & _U(0xFFF)), True)

    for sel, real, p, x, prefixing in zip(done_lanes, done_real, done_prot, done_nx, done_prefix):
        if access == "lra":
            out[sel] = real
            continue
        denied = (p if access == "write" else x if access == "fetch" else np.zeros(len(sel), bool))
        codes[sel[denied]] = PGM_PROTECTION
        sel, real = sel[~denied], real[~denied]
        absolute = _prefix(real, prefix) if prefixing else real
        beyond = (absolute | _U(0xFFF)) >= _U(mem.size)
        codes[sel[beyond]] = PGM_ADDRESSING
        out[sel[~beyond]] = absolute[~beyond]
    return out, codes


def _prefix(real: np.ndarray, prefix: int) -> np.ndarray:
    """Vectorised ``prefix_address``."""
    if not prefix:
        return real
    p = _U(prefix)
    low = real < _U(0x2000)
    high = (real >= p) & (real < p + _U(0x2000))
    return np.where(low, real + p, np.where(high, real - p, real))
