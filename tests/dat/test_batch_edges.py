"""Deterministic edge cases on which ``translate_many`` must equal ``translate``.

The random property (``test_properties``) rarely lands on a boundary; these cases sit on
every one the walkers decide at: the first and last byte of page 0 and of the prefix
page, each ASCE type's last address and the first beyond it, every TL of the ASCE, the
TF/TL of the region entries just inside and just outside, EDAT-1 1M and EDAT-2 2G frames
with and without the facilities, protection from each level, and each access kind.
Every case asserts the exact ``(address, code)`` for both walkers: ``translate`` (its
``absolute``, or the exception's code) and ``translate_many`` (one lane per address).
Tables are built by hand with ``builders`` (never with ``dat``'s own encoders).
"""

from __future__ import annotations

import numpy as np
import pytest

import dat
from s390emu.memory import PhysicalMemory

from .builders import (
    DT_R1, DT_R2, DT_R3, DT_ST, FRAME, PT_LOW, R2T, R3T, ST, TT_R1, TT_R2, TT_R3, asce,
    empty_image, map_4k, pte, pte_addr, r1te_addr, r2te_addr, r3te_addr, r3te_large,
    region_entry, ste, ste_addr, ste_large, vaddr_of,
)

PREFIX = 0x20000                #: a prefix area (8K) inside the 16 MiB image
PROT, ADDR, SEG, PAGE, ASCE_TYPE = 0x04, 0x05, 0x10, 0x11, 0x38
R1_TRANS, R2_TRANS, R3_TRANS = 0x39, 0x3A, 0x3B


def both(mem, asce_, vaddrs, **kw) -> list[tuple[int, int]]:
    """``(address, code)`` per address, asserting that the two walkers agree on each."""
    scalar = []
    for v in vaddrs:
        try:
            scalar.append((dat.translate(mem, asce_, v, **kw).absolute, 0))
        except dat.TranslationException as e:
            scalar.append((0, e.code))
    a, c = dat.translate_many(mem, asce_, np.array(vaddrs, dtype=np.uint64), **kw)
    batch = list(zip(a.tolist(), c.tolist()))
    assert batch == scalar, f"asce={asce_:#x} {kw}: batch {batch} != scalar {scalar}"
    return scalar


@pytest.fixture
def mem():
    return empty_image()


# -- prefixing: the first and last byte of page 0, page 1 and the prefix area ---------------

#: real address -> absolute address with prefix PREFIX (the 8K at 0 and at PREFIX swap)
PREFIXED = {
    0x0000: PREFIX, 0x0FFF: PREFIX + 0x0FFF, 0x1000: PREFIX + 0x1000, 0x1FFF: PREFIX + 0x1FFF,
    0x2000: 0x2000,
    PREFIX - 1: PREFIX - 1,
    PREFIX: 0x0000, PREFIX + 0x0FFF: 0x0FFF, PREFIX + 0x1000: 0x1000, PREFIX + 0x1FFF: 0x1FFF,
    PREFIX + 0x2000: PREFIX + 0x2000,
}


def test_real_space_prefixing_swaps_exactly_the_8k_at_0_and_at_the_prefix(mem):
    reals = list(PREFIXED)
    got = both(mem, asce(0, DT_ST, real=True), reals, prefix=PREFIX)
    assert got == [(PREFIXED[r], 0) for r in reals]


def test_dat_prefixing_swaps_exactly_the_8k_at_0_and_at_the_prefix(mem):
    # One PTE per real page the table maps; the byte index carries the offset.
    reals = list(PREFIXED)
    vaddrs = []
    for i, r in enumerate(reals):
        v = vaddr_of(px_=i, bx=r & 0xFFF)
        mem.write_u64(pte_addr(v), pte(r))
        vaddrs.append(v)
    mem.write_u64(ste_addr(0), ste(PT_LOW))
    a = asce(ST, DT_ST)
    assert both(mem, a, vaddrs, prefix=PREFIX) == [(PREFIXED[r], 0) for r in reals]
    assert both(mem, a, vaddrs, prefix=0) == [(r, 0) for r in reals]
    # LRA: the real address, never prefixed.
    assert both(mem, a, vaddrs, prefix=PREFIX, access="lra") == [(r, 0) for r in reals]


@pytest.mark.parametrize("large_prefixing", [True, False])
def test_a_1m_frame_over_the_prefix_area_is_prefixed_only_in_qemu_mode(mem, large_prefixing):
    # A 1M frame at real 0 holds both page 0 and the prefix area (PREFIX < 1 MiB).
    mem.write_u64(ste_addr(0), ste_large(0))
    a = asce(ST, DT_ST)
    reals = [0x0, 0x1FFF, 0x2000, PREFIX, PREFIX + 0x1FFF, PREFIX + 0x2000]
    want = [(PREFIXED[r] if large_prefixing else r, 0) for r in reals]
    assert both(mem, a, reals, prefix=PREFIX, large_prefixing=large_prefixing) == want


@pytest.mark.parametrize("large_prefixing", [True, False])
def test_a_2g_frame_over_real_zero_is_prefixed_only_in_qemu_mode(mem, large_prefixing):
    base = vaddr_of(rtx_=5)
    a = map_4k(mem, base, DT_R3)
    mem.write_u64(r3te_addr(base), r3te_large(0))
    reals = [0x0, 0x1FFF, 0x2000, PREFIX, PREFIX + 0x1FFF, PREFIX + 0x2000]
    want = [(PREFIXED[r] if large_prefixing else r, 0) for r in reals]
    assert both(mem, a, [base | r for r in reals], prefix=PREFIX, large_prefixing=large_prefixing) == want


# -- each ASCE type's range, and every TL of the ASCE ---------------------------------------

#: designation type -> (address bits it covers, the ASCE-level exception for a TL miss)
ASCE_RANGE = {DT_ST: (31, SEG), DT_R3: (42, R3_TRANS), DT_R2: (53, R2_TRANS)}


@pytest.mark.parametrize("dt", list(ASCE_RANGE))
def test_the_last_address_of_each_asce_type_walks_and_the_next_is_asce_type(mem, dt):
    bits, _ = ASCE_RANGE[dt]
    last = (1 << bits) - 1
    a = map_4k(mem, last, dt)
    beyond = [1 << bits, 1 << (bits + 1), (1 << (bits + 1)) - 1, 1 << 63, (1 << 64) - 1]
    assert both(mem, a, [last] + beyond) == [(FRAME | 0xFFF, 0)] + [(0, ASCE_TYPE)] * 5
    # Also in the middle of a batch, mixed with walking lanes.
    assert both(mem, a, [1 << bits, last, 1 << bits]) == [(0, ASCE_TYPE), (FRAME | 0xFFF, 0),
                                                          (0, ASCE_TYPE)]


@pytest.mark.parametrize("dt", list(ASCE_RANGE))
@pytest.mark.parametrize("tl", [0, 1, 2])
def test_the_asce_table_length_admits_its_last_quarter_and_rejects_the_next(mem, dt, tl):
    bits, code = ASCE_RANGE[dt]
    quarter = 1 << (bits - 2)               # one TL unit: 512 entries of the top table
    inside, outside = (tl + 1) * quarter - 1, (tl + 1) * quarter
    a = map_4k(mem, inside, dt, top_tl=tl)
    assert both(mem, a, [inside, outside]) == [(FRAME | 0xFFF, 0), (0, code)]


@pytest.mark.parametrize("tl", [0, 1, 2])
def test_the_region1_asce_table_length_admits_its_last_quarter_and_rejects_the_next(mem, tl):
    inside, outside = ((tl + 1) << 62) - 1, (tl + 1) << 62
    a = map_4k(mem, inside, DT_R1, top_tl=tl)
    assert both(mem, a, [inside, outside]) == [(FRAME | 0xFFF, 0), (0, R1_TRANS)]


def test_a_full_length_region1_asce_walks_the_last_address(mem):
    v = (1 << 64) - 1
    assert both(mem, map_4k(mem, v, DT_R1), [v]) == [(FRAME | 0xFFF, 0)]


# -- TF and TL of each region entry: the next index's two high bits -------------------------

#: the region entry whose TF/TL bound the next table: (where it is, its TT, the next
#: table, the index field's shift, the exception) for R1TE, R2TE and R3TE
REGION_LIMITS = {
    "RFTE": (r1te_addr, TT_R1, R2T, 42, R2_TRANS),
    "RSTE": (r2te_addr, TT_R2, R3T, 31, R3_TRANS),
    "RTTE": (r3te_addr, TT_R3, ST, 20, SEG),
}


@pytest.mark.parametrize("level", list(REGION_LIMITS))
@pytest.mark.parametrize("tf,tl", [(1, 1), (1, 2), (2, 3), (0, 0)])
def test_each_region_entry_admits_indices_tf_to_tl_and_rejects_one_beyond(mem, level, tf, tl):
    where, tt, nxt, shift, code = REGION_LIMITS[level]
    # Index of the next table with the given two high bits, the rest 0x1FF or 0.
    at = lambda hi, low: (hi << 9 | low) << shift  # noqa: E731
    cases = {at(tf, 0): 0, at(tl, 0x1FF): 0}
    if tf:
        cases[at(tf - 1, 0x1FF)] = code
    if tl < 3:
        cases[at(tl + 1, 0)] = code
    for v, want in cases.items():
        m = empty_image()
        a = map_4k(m, v, DT_R1)
        m.write_u64(where(v), region_entry(nxt, tt, tf=tf, tl=tl))
        got = both(m, a, [v])
        assert got == [(FRAME, 0) if not want else (0, want)], f"{level} tf={tf} tl={tl} v={v:#x}"


# -- EDAT-1 1M and EDAT-2 2G frames, with and without the facilities ------------------------

SEG_FRAME = 0x0030_0000        #: a 1M frame inside the image
V1M = vaddr_of(sx_=0x12, px_=0x34, bx=0x567)


def test_a_1m_frame_maps_its_whole_megabyte_with_edat1(mem):
    a = map_4k(mem, V1M, DT_ST)
    mem.write_u64(ste_addr(V1M), ste_large(SEG_FRAME))
    base = V1M & ~0xFFFFF
    vs = [base, base + 0xFFFFF, V1M]
    assert both(mem, a, vs) == [(SEG_FRAME, 0), (SEG_FRAME | 0xFFFFF, 0), (SEG_FRAME | 0x34567, 0)]


def test_a_1m_frame_is_a_page_table_origin_without_edat1(mem):
    # FC ignored: the STE designates a page table at SEG_FRAME, which holds zeros, so
    # every PTE is valid and maps frame 0.
    a = map_4k(mem, V1M, DT_ST)
    mem.write_u64(ste_addr(V1M), ste_large(SEG_FRAME))
    assert both(mem, a, [V1M], edat1=False, edat2=False) == [(0x567, 0)]
    mem.write_u64(SEG_FRAME + 8 * 0x34, pte(FRAME))
    assert both(mem, a, [V1M], edat1=False, edat2=False) == [(FRAME | 0x567, 0)]
    mem.write_u64(SEG_FRAME + 8 * 0x34, pte(FRAME, invalid=True))
    assert both(mem, a, [V1M], edat1=False, edat2=False) == [(0, PAGE)]


V2G = vaddr_of(rtx_=0x5, sx_=0x7FF, px_=0xFF, bx=0xFFF)      #: the last byte of region 5


def test_a_2g_frame_maps_its_whole_region_with_edat2(mem):
    a = map_4k(mem, V2G, DT_R3)
    mem.write_u64(r3te_addr(V2G), r3te_large(0x8000_0000))
    base = V2G & ~0x7FFF_FFFF
    # LRA: the real address (the frame lies beyond the image, no addressing check).
    assert both(mem, a, [base, V2G], access="lra") == [(0x8000_0000, 0), (0xFFFF_FFFF, 0)]
    # A read: beyond storage is addressing; a frame at 0 lands inside it.
    assert both(mem, a, [base]) == [(0, ADDR)]
    mem.write_u64(r3te_addr(V2G), r3te_large(0))
    assert both(mem, a, [base, base + 0xABCDEF]) == [(0, 0), (0xABCDEF, 0)]


@pytest.mark.parametrize("edat1", [True, False])
def test_a_2g_frame_is_a_segment_table_origin_without_edat2(mem, edat1):
    # FC ignored: the R3TE designates a segment table at 0 with TF=TL=0.  Storage there
    # is zero: STE 0 -> page table at 0 -> PTE 0 maps frame 0.
    a = map_4k(mem, V2G, DT_R3)
    mem.write_u64(r3te_addr(V2G), r3te_large(0))
    base = V2G & ~0x7FFF_FFFF
    inside = base | vaddr_of(sx_=0x1FF, bx=0x123)
    assert both(mem, a, [base | 0x123, inside], edat1=edat1, edat2=False) == [(0x123, 0), (0x123, 0)]
    assert both(mem, a, [V2G], edat1=edat1, edat2=False) == [(0, SEG)]     # SX high bits 3 > TL 0
    # EDAT-2 needs EDAT-1: asked for alone it is off (PX 1: a 2G frame would keep 0x1000).
    assert both(mem, a, [base | 0x1123], edat1=False, edat2=True) == [(0x123, 0)]
    assert both(mem, a, [base | 0x1123], edat1=True, edat2=True) == [(0x1123, 0)]


# -- protection accumulated across levels, per access kind ----------------------------------

V4K = vaddr_of(rfx_=1, rsx_=2, rtx_=3, sx_=4, px_=5, bx=0x678)
ACCESSES = ["read", "write", "fetch", "lra"]


def _protect(mem, level: str) -> None:
    """Set the P bit of ``level``'s entry on V4K's path (built by ``map_4k``)."""
    addr = {"RFTE": r1te_addr, "RSTE": r2te_addr, "RTTE": r3te_addr, "STE": ste_addr,
            "PTE": pte_addr}[level](V4K)
    mem.write_u64(addr, mem.read_u64(addr) | 0x200)


@pytest.mark.parametrize("level", ["RFTE", "RSTE", "RTTE", "STE", "PTE"])
def test_protection_from_any_level_denies_only_a_store(mem, level):
    a = map_4k(mem, V4K, DT_R1)
    _protect(mem, level)
    got = [both(mem, a, [V4K], access=acc)[0] for acc in ACCESSES]
    ok = (FRAME | 0x678, 0)
    assert got == [ok, (0, PROT), ok, ok]


@pytest.mark.parametrize("level", ["RFTE", "RSTE", "RTTE"])
def test_region_protection_needs_edat1(mem, level):
    a = map_4k(mem, V4K, DT_R1)
    _protect(mem, level)
    assert both(mem, a, [V4K], access="write", edat1=False, edat2=False) == [(FRAME | 0x678, 0)]


def test_segment_and_page_protection_apply_without_edat(mem):
    for level in ("STE", "PTE"):
        m = empty_image()
        a = map_4k(m, V4K, DT_R1)
        _protect(m, level)
        assert both(m, a, [V4K], access="write", edat1=False, edat2=False) == [(0, PROT)], level


def test_protection_on_one_lane_leaves_its_neighbours_writable(mem):
    a = map_4k(mem, V4K, DT_R1)
    other = V4K + 0x1000                     # the next PTE in the same table
    mem.write_u64(pte_addr(other), pte(FRAME + 0x1000, protect=True))
    got = both(mem, a, [V4K, other, V4K], access="write")
    assert got == [(FRAME | 0x678, 0), (0, PROT), (FRAME | 0x678, 0)]


def test_large_frame_protection_denies_a_store(mem):
    a = map_4k(mem, V1M, DT_ST)
    mem.write_u64(ste_addr(V1M), ste_large(SEG_FRAME, protect=True))
    assert both(mem, a, [V1M], access="write") == [(0, PROT)]
    assert both(mem, a, [V1M], access="read") == [(SEG_FRAME | 0x34567, 0)]
    b = map_4k(mem, V2G, DT_R3)
    mem.write_u64(r3te_addr(V2G), r3te_large(0, protect=True))
    assert both(mem, b, [V2G & ~0x7FFF_FFFF], access="write") == [(0, PROT)]


@pytest.mark.parametrize("iep", [True, False])
def test_iep_denies_only_an_instruction_fetch_and_only_with_the_facility(mem, iep):
    a = map_4k(mem, V4K, DT_R1)
    mem.write_u64(pte_addr(V4K), pte(FRAME) | 0x100)
    got = [both(mem, a, [V4K], access=acc, iep=iep)[0] for acc in ACCESSES]
    ok = (FRAME | 0x678, 0)
    assert got == [ok, ok, (0, PROT) if iep else ok, ok]


def test_iep_is_off_unless_asked_for(mem):
    a = map_4k(mem, V4K, DT_R1)
    mem.write_u64(pte_addr(V4K), pte(FRAME) | 0x100)
    assert both(mem, a, [V4K], access="fetch") == [(FRAME | 0x678, 0)]


@pytest.mark.parametrize("iep", [True, False])
def test_iep_on_1m_and_2g_frames(mem, iep):
    a = map_4k(mem, V1M, DT_ST)
    mem.write_u64(ste_addr(V1M), ste_large(SEG_FRAME) | 0x100)
    assert both(mem, a, [V1M], access="fetch", iep=iep) == [(0, PROT) if iep else (SEG_FRAME | 0x34567, 0)]
    b = map_4k(mem, V2G, DT_R3)
    mem.write_u64(r3te_addr(V2G), r3te_large(0) | 0x100)
    base = V2G & ~0x7FFF_FFFF
    assert both(mem, b, [base | 0x10], access="fetch", iep=iep) == [(0, PROT) if iep else (0x10, 0)]


# -- low-address protection -----------------------------------------------------------------

def test_low_address_protection_covers_0_to_511_and_4096_to_4607_in_shared_space(mem):
    a = asce(0, DT_ST, real=True)
    vs = [0, 511, 512, 4095, 4096, 4607, 4608, 0x2000 + 0]
    want = [(0, PROT), (0, PROT), (512, 0), (4095, 0), (0, PROT), (0, PROT), (4608, 0), (0x2000, 0)]
    assert both(mem, a, vs, access="write", lap=True) == want
    assert both(mem, a, vs, access="read", lap=True) == [(v, 0) for v in vs]
    private = asce(0, DT_ST, real=True, private=True)
    assert both(mem, private, vs, access="write", lap=True) == [(v, 0) for v in vs]


# -- inputs and ignored bits ----------------------------------------------------------------

def test_a_list_or_tuple_of_python_ints_is_walked_as_uint64(mem):
    a = map_4k(mem, V4K, DT_R1)
    want = both(mem, a, [V4K, V4K + 0x1000, 0])
    for vaddrs in ([V4K, V4K + 0x1000, 0], (V4K, V4K + 0x1000, 0)):
        addrs, codes = dat.translate_many(mem, a, vaddrs)
        assert list(zip(addrs.tolist(), codes.tolist())) == want


def test_an_stes_unused_low_bits_are_ignored_also_for_the_last_page_table_of_storage(mem):
    # Bits 62-63 of an STE designating a page table are no part of its origin (2K
    # aligned); the page table here is the last 2K of storage, so its PTE 0xFF is the
    # last doubleword there is.
    last_pt = mem.size - 0x800
    v = vaddr_of(sx_=5, px_=0xFF, bx=0x12)
    a = asce(ST, DT_ST)
    mem.write_u64(ste_addr(v), ste(last_pt) | 0x3)
    mem.write_u64(last_pt + 8 * 0xFF, pte(FRAME))
    assert both(mem, a, [v]) == [(FRAME | 0x12, 0)]


def test_the_last_page_of_a_storage_of_an_odd_number_of_pages_is_addressable():
    mem = PhysicalMemory(0x11000)                   # 17 pages: the last one at 0x10000
    a = asce(0, DT_ST, real=True)
    assert both(mem, a, [0x10ABC, 0x10FFF, 0x11000]) == [(0x10ABC, 0), (0x10FFF, 0), (0, ADDR)]
