"""Differential tests: our walker against QEMU's, through unicorn's LRAG.

Each chunk generates seeded random images (``walkgen.ImageGenerator``) and, for every
address, compares ``dat.lra(..., edat1=False, edat2=False)`` with what QEMU's LRAG leaves
in the condition code and R2 (``qemu_oracle.comparable``: cc, and R1 or its low word on
cc 3). The same addresses also check ``dat.translate_many`` against ``dat.translate``
(operand fetch, random EDAT facilities and prefix). A smaller hypothesis-driven variant
draws the entries of one walk directly.

unicorn is imported unconditionally: this test is never skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dat
from s390emu.memory import PhysicalMemory

from .qemu_oracle import QemuLRA, comparable
from .walkgen import ImageGenerator, place_walk

SIZE = 0x20_0000                 #: storage of every generated image (2 MiB)
CHUNKS = 10                      #: parametrized chunks, one seed each
IMAGES_PER_CHUNK = 50
VADDRS_PER_IMAGE = 80
CASES = CHUNKS * IMAGES_PER_CHUNK * VADDRS_PER_IMAGE    # 40,000 per run
OUTCOMES = {0, 0x05, 0x10, 0x11, 0x12, 0x38, 0x39, 0x3A, 0x3B}

assert CASES >= 20_000


@pytest.fixture(scope="module")
def qemu() -> QemuLRA:
    return QemuLRA(SIZE)


def _describe(mem: PhysicalMemory, asce: int, vaddr: int) -> str:
    """The walk our walker did, for a failure message."""
    try:
        r = dat.translate(mem, asce, vaddr, access="lra", edat1=False, edat2=False)
        path, end = r.path, f"real {r.real:#x}"
    except dat.TranslationException as e:
        path, end = getattr(e, "path", ()), f"{e.code:#x} at {e.level}"
    steps = "; ".join(f"{s.level} [{s.entry_addr:#x}] = {s.entry:#018x}" for s in path)
    return f"asce={asce:#018x} vaddr={vaddr:#018x}: {steps} -> {end}"


def _expected_many(mem, asce, vaddrs, **kw) -> tuple[list[int], list[int]]:
    addrs, codes = [], []
    for v in vaddrs:
        try:
            addrs.append(dat.translate(mem, asce, v, access="read", **kw).absolute)
            codes.append(0)
        except dat.TranslationException as e:
            addrs.append(0)
            codes.append(e.code)
    return addrs, codes


@pytest.mark.parametrize("seed", range(CHUNKS))
def test_lrag_agrees_with_qemu_on_random_images(qemu, seed):
    gen = ImageGenerator(0x5390_0000 + seed, SIZE)
    disagree, many_disagree, seen, compared = [], [], set(), 0
    for _ in range(IMAGES_PER_CHUNK):
        mem, asce, vaddrs = gen.image(VADDRS_PER_IMAGE)
        qemu.load(mem.data)
        for v in vaddrs:
            theirs = comparable(*qemu.lra(asce, v))
            ours = comparable(*dat.lra(mem, asce, v, edat1=False, edat2=False))
            compared += 1
            seen.add(theirs[1] & 0xFFFF if theirs[0] else 0)
            if ours != theirs:
                disagree.append(f"{_describe(mem, asce, v)} | dat {ours} QEMU {theirs}")
        # translate_many == translate, on the same image, random facilities and prefix
        edat1 = gen.chance(0.5)
        kw = dict(edat1=edat1, edat2=edat1 and gen.chance(0.5),
                  prefix=0 if gen.chance(0.5) else int(gen.rng.integers(0, SIZE // 0x2000)) * 0x2000)
        addrs, codes = dat.translate_many(mem, asce, np.array(vaddrs, dtype=np.uint64),
                                          access="read", **kw)
        want = _expected_many(mem, asce, vaddrs, **kw)
        got = (addrs.tolist(), codes.tolist())
        for i, v in enumerate(vaddrs):
            if (got[0][i], got[1][i]) != (want[0][i], want[1][i]):
                many_disagree.append(f"asce={asce:#x} vaddr={v:#x} {kw}: translate_many "
                                     f"({got[0][i]:#x}, {got[1][i]:#x}) translate "
                                     f"({want[0][i]:#x}, {want[1][i]:#x})")
    assert compared == IMAGES_PER_CHUNK * VADDRS_PER_IMAGE
    assert not disagree, f"{len(disagree)} disagreements with QEMU, first:\n" + "\n".join(disagree[:5])
    assert not many_disagree, (f"{len(many_disagree)} translate_many != translate, first:\n"
                               + "\n".join(many_disagree[:5]))
    assert seen == OUTCOMES, f"generator missed outcomes {sorted(OUTCOMES - seen)}"


# -- hypothesis: one walk's entries drawn directly ------------------------------------------

HSIZE = 0x4_0000
_hqemu: list[QemuLRA] = []


def _origin_entry(align: int):
    """Entries whose origin lands inside (or just past) the small image, with any low bits."""
    return st.builds(lambda o, low: o * align | low,
                     st.integers(0, HSIZE // align + 2), st.integers(0, align - 1))


_entry = st.one_of(_origin_entry(0x1000), _origin_entry(0x800),
                   st.integers(0, 0xFFFF_FFFF).map(lambda x: x << 12),
                   st.integers(0, 2**64 - 1).filter(lambda x: not 0x7EFF_C000 <= (x & ~0xFFF) < 0x7F00_1000))
_asce = st.builds(lambda o, dt, low: o * 0x1000 | dt << 2 | low,
                  st.integers(0, HSIZE // 0x1000 + 2), st.integers(0, 3),
                  st.sampled_from([0, 1, 2, 3, 0x100, 0x103, 0x23, 0xC13]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(asce=_asce, vaddr=st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 2**31 - 1),
                                   st.integers(0, 2**42 - 1)),
       entries=st.lists(_entry, min_size=5, max_size=5))
def test_lrag_agrees_with_qemu_on_drawn_walks(asce, vaddr, entries):
    if not _hqemu:
        _hqemu.append(QemuLRA(HSIZE))
    mem = PhysicalMemory(HSIZE)
    dt = (asce >> 2) & 3
    place_walk(mem, asce, vaddr, entries[3 - dt:])
    _hqemu[0].load(mem.data)
    theirs = comparable(*_hqemu[0].lra(asce, vaddr))
    assert comparable(*dat.lra(mem, asce, vaddr, edat1=False, edat2=False)) == theirs, \
        _describe(mem, asce, vaddr)
