"""The 51 walker cases of ``dat-spec.md`` §6, one or more named tests each.

Defaults as in the spec: EDAT-1 and EDAT-2 on, IEP off, ASCE P=0, TL=3, TF=0, prefix 0,
operand fetch (``access="read"``). Tables are hand-built at the named addresses of
``builders``. Where the spec says "checked against QEMU via LRAG", ``qemu_agrees`` runs
unicorn's LRAG on the same image (EDAT off: the embedded CPU has none) and compares it
with ``dat.lra``. Where QEMU and the PoP differ, QEMU's behaviour is asserted, and the
walker's PoP option (``large_prefixing=False``) is tested too.
"""

from __future__ import annotations

import pytest

import dat
from s390emu.memory import PhysicalMemory

from .builders import (
    BEYOND, DT_R1, DT_R2, DT_R3, DT_ST, FRAME, PAGE_INVALID, PT_FRAME, PT_HIGH, PT_LOW,
    R1T, R2T, R3T, REGION1_ENTRY_EMPTY, REGION3_ENTRY_EMPTY, SEGMENT_ENTRY_EMPTY, ST,
    TT_R1, TT_R2, TT_R3, TT_ST, asce, empty_image, fill_crst, fill_pt, map_4k, pte,
    pte_addr, px, r1te_addr, r2te_addr, r3te_addr, r3te_large, region_entry, ste, ste_addr,
    ste_large, sx, vaddr_of,
)
from .qemu_oracle import QemuLRA, comparable

BIG_STORAGE = 0x2000_0000   #: 512 MiB (lazily zero) for the 1M-frame cases at 0x12300000

_oracles: dict[int, QemuLRA] = {}


def qemu_agrees(mem: PhysicalMemory, asce_: int, vaddr: int) -> tuple[int, int]:
    """Assert that QEMU's LRAG and ``dat.lra`` (EDAT off) agree on this image; return QEMU's
    comparable ``(cc, R1)``."""
    if mem.size not in _oracles:
        _oracles[mem.size] = QemuLRA(mem.size)
    q = _oracles[mem.size]
    q.load(mem.data)
    theirs = comparable(*q.lra(asce_, vaddr))
    ours = comparable(*dat.lra(mem, asce_, vaddr, edat1=False, edat2=False))
    assert ours == theirs, f"asce={asce_:#x} vaddr={vaddr:#x}: dat {ours} != QEMU {theirs}"
    return theirs


def fails(code: int, mem: PhysicalMemory, asce_: int, vaddr: int, **kw) -> dat.TranslationException:
    """Translate and assert the program-interruption ``code``; return the exception."""
    with pytest.raises(dat.TranslationException) as info:
        dat.translate(mem, asce_, vaddr, **kw)
    assert info.value.code == code, f"expected {code:#x}, got {info.value.code:#x} ({info.value})"
    return info.value


@pytest.fixture
def mem() -> PhysicalMemory:
    return empty_image()


# -- 1-11: ASCE types, table lengths, index edges --------------------------------------------

def test_real_space_asce_maps_vaddr_to_itself_without_fetching_tables(mem):      # 1
    a = asce(BEYOND, DT_R1, real=True)
    r = dat.translate(mem, a, 0x3456)
    assert (r.real, r.absolute, r.path, r.page_size) == (0x3456, 0x3456, (), 0)
    huge = 0x0123_4567_89AB_CDEF
    assert dat.translate(mem, a, huge, access="lra").real == huge
    assert qemu_agrees(mem, a, huge) == (0, huge)


def test_segment_asce_rejects_address_above_2g_with_asce_type(mem):           # 2
    e = fails(0x38, mem, asce(ST, DT_ST), 0x8000_0000)
    assert (e.level, e.entry_addr) == ("ASCE", None)
    assert qemu_agrees(mem, asce(ST, DT_ST), 0x8000_0000) == (3, 0x8000_0038)


def test_segment_asce_last_byte_of_2g_walks_segment_entry_7ff(mem):            # 3
    a = map_4k(mem, 0x7FFF_FFFF, DT_ST)
    r = dat.translate(mem, a, 0x7FFF_FFFF)
    assert r.path[0].entry_addr == ST + 8 * 0x7FF
    assert r.path[1].entry_addr == PT_LOW + 8 * 0xFF
    assert r.real == FRAME | 0xFFF
    assert qemu_agrees(mem, a, 0x7FFF_FFFF) == (0, FRAME | 0xFFF)


def test_segment_asce_tl0_covers_first_512_segments_only(mem):                 # 4
    a = map_4k(mem, 0x1FF0_0000, DT_ST, top_tl=0)
    r = dat.translate(mem, a, 0x1FF0_0000)
    assert r.path[0].entry_addr == ST + 0xFF8
    assert r.real == FRAME
    e = fails(0x10, mem, a, 0x2000_0000)
    assert e.level == "ASCE"
    qemu_agrees(mem, a, 0x1FF0_0000)
    assert qemu_agrees(mem, a, 0x2000_0000) == (3, 0x8000_0010)


def test_region3_asce_rejects_rsx_with_asce_type(mem):                        # 5
    fails(0x38, mem, asce(R3T, DT_R3), 1 << 42)
    qemu_agrees(mem, asce(R3T, DT_R3), 1 << 42)


def test_region2_asce_rejects_rfx_with_asce_type(mem):                        # 6
    fails(0x38, mem, asce(R2T, DT_R2), 1 << 53)
    qemu_agrees(mem, asce(R2T, DT_R2), 1 << 53)


def test_region3_asce_tl0_rejects_rtx_200_with_region_third(mem):             # 7
    fails(0x3B, mem, asce(R3T, DT_R3, 0), 0x100_0000_0000)
    assert qemu_agrees(mem, asce(R3T, DT_R3, 0), 0x100_0000_0000) == (3, 0x8000_003B)


def test_region2_asce_tl1_rejects_rsx_high_bits_10_with_region_second(mem):   # 8
    fails(0x3A, mem, asce(R2T, DT_R2, 1), 0x10_0000_0000_0000)
    assert qemu_agrees(mem, asce(R2T, DT_R2, 1), 0x10_0000_0000_0000) == (3, 0x8000_003A)


def test_region1_asce_tl0_rejects_rfx_3ff_but_tl1_walks_entry_3ff(mem):       # 9
    v = 0x7FFF_FFFF_FFFF_FFFF
    fails(0x39, mem, asce(R1T, DT_R1, 0), v)
    assert qemu_agrees(mem, asce(R1T, DT_R1, 0), v) == (3, 0x8000_0039)
    a = map_4k(mem, v, DT_R1, top_tl=1)
    r = dat.translate(mem, a, v)
    assert r.path[0].entry_addr == R1T + 8 * 0x3FF
    assert r.real == FRAME | 0xFFF
    qemu_agrees(mem, a, v)


def test_region2_asce_rejects_top_half_with_asce_type(mem):                   # 10
    fails(0x38, mem, asce(R2T, DT_R2), 0x7FFF_FFFF_FFFF_FFFF)
    qemu_agrees(mem, asce(R2T, DT_R2), 0x7FFF_FFFF_FFFF_FFFF)


def test_region1_asce_last_address_uses_last_entry_of_every_table(mem):       # 11
    v = 0xFFFF_FFFF_FFFF_FFFF
    a = map_4k(mem, v, DT_R1)
    r = dat.translate(mem, a, v)
    assert [s.level for s in r.path] == ["RFTE", "RSTE", "RTTE", "STE", "PTE"]
    assert [s.entry_addr for s in r.path] == [R1T + 0x3FF8, R2T + 0x3FF8, R3T + 0x3FF8,
                                              ST + 0x3FF8, PT_LOW + 0x7F8]
    assert [s.index for s in r.path] == [0x7FF] * 4 + [0xFF]
    assert [s.table for s in r.path] == [R1T, R2T, R3T, ST, PT_LOW]
    assert (r.real, r.absolute, r.page_size) == (FRAME | 0xFFF, FRAME | 0xFFF, 4096)
    assert qemu_agrees(mem, a, v) == (0, FRAME | 0xFFF)


# -- 12-19: region entries ----------------------------------------------------------------

V = 0x0000_0123_4567_8ABC      #: a general address: RTX=0x246, SX=0x456, PX=0x78, BX=0xABC


def test_empty_region1_entry_is_region_first_exception(mem):                  # 12
    a = map_4k(mem, V)
    mem.write_u64(r1te_addr(V), REGION1_ENTRY_EMPTY)
    e = fails(0x39, mem, a, V)
    assert (e.level, e.entry_addr) == ("RFTE", R1T)
    qemu_agrees(mem, a, V)


def test_region1_entry_with_region2_type_is_translation_specification(mem):   # 13
    a = map_4k(mem, V)
    mem.write_u64(r1te_addr(V), R2T | 0x0B)
    e = fails(0x12, mem, a, V)
    assert (e.level, e.entry_addr) == ("RFTE", R1T)
    qemu_agrees(mem, a, V)


def test_region1_entry_tf1_excludes_low_region_second_indices(mem):           # 14
    a = map_4k(mem, V)
    mem.write_u64(r1te_addr(V), region_entry(R2T, TT_R1, tf=1))
    e = fails(0x3A, mem, a, V)
    assert e.entry_addr == R1T
    qemu_agrees(mem, a, V)


def test_region1_entry_tl0_excludes_rsx_high_bits_01(mem):                    # 15
    v = 0x8_0000_0000_0000
    a = map_4k(mem, v)
    mem.write_u64(r1te_addr(v), region_entry(R2T, TT_R1, tl=0))
    fails(0x3A, mem, a, v)
    qemu_agrees(mem, a, v)


def test_invalid_region2_entry_is_region_second_exception(mem):               # 16a
    a = map_4k(mem, V)
    mem.write_u64(r2te_addr(V), region_entry(R3T, TT_R2, invalid=True))
    e = fails(0x3A, mem, a, V)
    assert (e.level, e.entry_addr) == ("RSTE", r2te_addr(V))
    qemu_agrees(mem, a, V)


def test_region2_entry_tf1_excludes_low_region_third_indices(mem):            # 16b
    v = vaddr_of(rtx_=0x046, sx_=0x456, px_=0x78)      # RTX high bits 00
    a = map_4k(mem, v)
    mem.write_u64(r2te_addr(v), region_entry(R3T, TT_R2, tf=1))
    fails(0x3B, mem, a, v)
    qemu_agrees(mem, a, v)
    mem.write_u64(r2te_addr(v), region_entry(R3T, TT_R2, tf=0))
    assert dat.translate(mem, a, v).real == FRAME


def test_invalid_region3_entry_is_region_third_exception(mem):                # 17a
    a = map_4k(mem, V)
    mem.write_u64(r3te_addr(V), REGION3_ENTRY_EMPTY)
    e = fails(0x3B, mem, a, V)
    assert (e.level, e.entry_addr) == ("RTTE", R3T + 8 * 0x246)
    qemu_agrees(mem, a, V)


def test_region3_entry_with_segment_type_is_translation_specification(mem):   # 17b
    a = map_4k(mem, V)
    mem.write_u64(r3te_addr(V), region_entry(ST, TT_ST))
    e = fails(0x12, mem, a, V)
    assert e.entry_addr == r3te_addr(V)
    qemu_agrees(mem, a, V)


def test_region3_entry_tl1_excludes_sx_high_bits_10(mem):                     # 18
    a = map_4k(mem, V, DT_R3)
    mem.write_u64(r3te_addr(V), region_entry(ST, TT_R3, tl=1))
    fails(0x10, mem, a, V)
    assert qemu_agrees(mem, a, V) == (3, 0x8000_0010)


def test_region3_entry_tf2_excludes_sx_high_bits_01(mem):                     # 19
    v = 0x1_2345_6789
    assert sx(v) == 0x234
    a = map_4k(mem, v, DT_R3)
    mem.write_u64(r3te_addr(v), region_entry(ST, TT_R3, tf=2))
    fails(0x10, mem, a, v)
    qemu_agrees(mem, a, v)


def test_crash_vtop_worked_example_walks_to_the_upper_half_page_table():      # dat-spec §5.1
    mem = empty_image()
    mem.write_u64(0x11230, 0x20007)
    mem.write_u64(0x222B0, 0x30801)
    mem.write_u64(0x30BC0, 0x7E12_3000)
    r = dat.translate(mem, 0x10007, V, access="lra")
    assert [(s.level, s.entry_addr, s.entry) for s in r.path] == [
        ("RTTE", 0x11230, 0x20007), ("STE", 0x222B0, 0x30801), ("PTE", 0x30BC0, 0x7E12_3000)]
    assert r.real == 0x7E12_3ABC
    assert qemu_agrees(mem, 0x10007, V) == (0, 0x7E12_3ABC)


# -- 20-24: segment entries ---------------------------------------------------------------

def test_empty_segment_entry_is_segment_translation(mem):                     # 20
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), SEGMENT_ENTRY_EMPTY)
    e = fails(0x10, mem, a, V)
    assert (e.level, e.entry_addr) == ("STE", ST + 8 * 0x456)
    qemu_agrees(mem, a, V)


def test_ste_invalid_bit_beats_tt_mismatch(mem):                              # 21
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), 0x24)
    fails(0x10, mem, a, V)
    qemu_agrees(mem, a, V)


def test_valid_ste_with_region3_type_is_translation_specification(mem):       # 22
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), PT_LOW | 0x04)
    e = fails(0x12, mem, a, V)
    assert e.entry_addr == ste_addr(V)
    qemu_agrees(mem, a, V)


def test_common_segment_is_translation_specification_only_in_private_space(mem):  # 23
    a = map_4k(mem, V, private=True)
    mem.write_u64(ste_addr(V), ste(PT_LOW, cs=True))
    e = fails(0x12, mem, a, V)
    assert e.entry_addr == ste_addr(V)
    qemu_agrees(mem, a, V)
    shared = a & ~0x100
    assert dat.translate(mem, shared, V).real == FRAME | 0xABC
    qemu_agrees(mem, shared, V)


def test_linux_swap_segment_entry_is_invalid_before_common_segment(mem):      # 24
    a = map_4k(mem, V, private=True)
    mem.write_u64(ste_addr(V), 0x123_0000 | 0x30)
    fails(0x10, mem, a, V)
    qemu_agrees(mem, a, V)


# -- 25-30: page-table entries and the 2K halves ------------------------------------------

def test_pte_none_is_page_translation(mem):                                   # 25
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), PAGE_INVALID)
    e = fails(0x11, mem, a, V)
    assert (e.level, e.entry_addr) == ("PTE", PT_LOW + 8 * 0x78)
    qemu_agrees(mem, a, V)


def test_pte_bit52_is_translation_specification_unless_invalid(mem):          # 26
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), pte(FRAME, bit52=True))
    e = fails(0x12, mem, a, V)
    assert e.entry_addr == pte_addr(V)
    qemu_agrees(mem, a, V)
    mem.write_u64(pte_addr(V), pte(FRAME, bit52=True, invalid=True))
    fails(0x11, mem, a, V)
    qemu_agrees(mem, a, V)


def test_linux_present_but_old_pte_is_hardware_invalid(mem):                  # 27
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), FRAME | 0x439)
    fails(0x11, mem, a, V)
    qemu_agrees(mem, a, V)


def test_upper_half_page_table_entry_0_is_at_frame_plus_800(mem):             # 28
    v = vaddr_of(rtx_=0x246, sx_=0x456, px_=0)
    a = map_4k(mem, v, pt=PT_HIGH)
    assert mem.read_u64(ste_addr(v)) == PT_FRAME | 0x800
    r = dat.translate(mem, a, v)
    assert (r.path[-1].table, r.path[-1].entry_addr) == (PT_HIGH, PT_FRAME + 0x800)
    assert r.real == FRAME
    qemu_agrees(mem, a, v)


def test_upper_half_page_table_entry_ff_is_last_doubleword_of_frame(mem):     # 29
    v = vaddr_of(rtx_=0x246, sx_=0x456, px_=0xFF, bx=0x10)
    a = map_4k(mem, v, pt=PT_HIGH)
    r = dat.translate(mem, a, v)
    assert r.path[-1].entry_addr == PT_FRAME + 0xFF8
    assert r.real == FRAME | 0x10
    qemu_agrees(mem, a, v)


def test_ste_pointing_at_invalid_upper_half_ignores_valid_lower_half(mem):    # 30
    a = map_4k(mem, V, pt=PT_HIGH)
    mem.table(PT_LOW, 256)[:] = [pte(FRAME + (i << 12)) for i in range(256)]
    fill_pt(mem, PT_HIGH, PAGE_INVALID)
    e = fails(0x11, mem, a, V)
    assert e.entry_addr == PT_HIGH + 8 * px(V)
    qemu_agrees(mem, a, V)


# -- 31-34: protection --------------------------------------------------------------------

def test_protected_pte_allows_fetch_and_rejects_store(mem):                   # 31
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), pte(FRAME, protect=True))
    r = dat.translate(mem, a, V)
    assert (r.real, r.protected) == (FRAME | 0xABC, True)
    fails(0x04, mem, a, V, access="write")
    qemu_agrees(mem, a, V)


def test_protected_ste_protects_an_unprotected_pte(mem):                      # 32
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), ste(PT_LOW, protect=True))
    fails(0x04, mem, a, V, access="write")
    assert dat.translate(mem, a, V).protected


def test_region_protection_needs_edat1(mem):                                  # 33
    a = map_4k(mem, V)
    mem.write_u64(r2te_addr(V), region_entry(R3T, TT_R2, protect=True))
    fails(0x04, mem, a, V, access="write")
    r = dat.translate(mem, a, V, access="write", edat1=False, edat2=False)
    assert (r.real, r.protected) == (FRAME | 0xABC, False)


def test_page_translation_beats_segment_protection(mem):                      # 34
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), ste(PT_LOW, protect=True))
    mem.write_u64(pte_addr(V), PAGE_INVALID)
    fails(0x11, mem, a, V, access="write")


# -- 35-40: EDAT large frames -------------------------------------------------------------

VL = 0x1_2345_6789            #: RTX=2, SX=0x234, 1M offset 0x56789


@pytest.fixture
def big() -> PhysicalMemory:
    return PhysicalMemory(BIG_STORAGE)


def test_edat1_segment_frame_maps_1m(big):                                    # 35
    a = map_4k(big, VL, DT_R3)
    big.write_u64(ste_addr(VL), ste_large(0x1230_0000))
    assert big.read_u64(ste_addr(VL)) == 0x1230_0400
    r = dat.translate(big, a, VL)
    assert (r.real, r.absolute, r.page_size) == (0x1235_6789, 0x1235_6789, 1 << 20)
    assert [s.level for s in r.path] == ["RTTE", "STE"]
    assert dat.lra(big, a, VL) == (0, 0x1235_6789)


def test_edat1_protected_segment_frame_allows_fetch_and_rejects_store(big):   # 36
    a = map_4k(big, VL, DT_R3)
    big.write_u64(ste_addr(VL), 0x1230_0600)
    assert dat.translate(big, a, VL).real == 0x1235_6789
    fails(0x04, big, a, VL, access="write")


def test_segment_frame_is_a_page_table_pointer_without_edat1(big):            # 37
    a = map_4k(big, VL, DT_R3)
    big.write_u64(ste_addr(VL), 0x1230_0400)
    big.write_u64(0x1230_0000 + 8 * 0x56, pte(0x0070_0000))
    r = dat.translate(big, a, VL, edat1=False, edat2=False)
    assert r.path[-1].entry_addr == 0x1230_02B0
    assert (r.real, r.page_size) == (0x0070_0789, 4096)
    assert qemu_agrees(big, a, VL) == (0, 0x0070_0789)


def test_edat2_region_frame_maps_2g_without_checking_tf_tl(mem):              # 38
    a = map_4k(mem, VL, DT_R3)
    mem.write_u64(r3te_addr(VL), 0x8000_0000 | 0x400 | 0x4)   # TL=0 would exclude SX 0x234
    r = dat.translate(mem, a, VL, access="lra")
    assert (r.real, r.page_size) == (0xA345_6789, 1 << 31)
    assert [s.level for s in r.path] == ["RTTE"]
    assert dat.lra(mem, a, VL) == (0, 0xA345_6789)


def test_region_frame_without_edat2_is_segment_table_with_tl0(mem):           # 39
    a = map_4k(mem, VL, DT_R3)
    mem.write_u64(r3te_addr(VL), r3te_large(0x8000_0000))
    e = fails(0x10, mem, a, VL, edat2=False)
    assert e.entry_addr == r3te_addr(VL)
    fails(0x10, mem, a, VL, edat1=False, edat2=False)
    assert qemu_agrees(mem, a, VL) == (3, 0x8000_0010)


@pytest.mark.parametrize("fc", [False, True], ids=["table", "frame"])
def test_common_region_in_private_space_is_translation_specification_with_edat2(mem, fc):  # 40
    a = map_4k(mem, VL, DT_R3, private=True)
    entry = r3te_large(0x8000_0000, cr=True) if fc else region_entry(ST, TT_R3, cr=True)
    mem.write_u64(r3te_addr(VL), entry)
    e = fails(0x12, mem, a, VL)
    assert e.entry_addr == r3te_addr(VL)
    if not fc:   # without EDAT-2 (QEMU here) CR is not checked
        assert dat.translate(mem, a, VL, edat2=False).real == FRAME | 0x789
    qemu_agrees(mem, a, VL)


# -- 41-44: storage limits and prefixing --------------------------------------------------

def test_table_outside_storage_is_addressing_after_type_and_length_checks(mem):  # 41
    fails(0x05, mem, asce(BEYOND, DT_R1), V)
    assert qemu_agrees(mem, asce(BEYOND, DT_R1), V) == (3, 0x8000_0005)
    fails(0x38, mem, asce(BEYOND, DT_ST), 0x8000_0000)
    fails(0x10, mem, asce(BEYOND, DT_ST, 0), 0x7000_0000)
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), ste(BEYOND))
    e = fails(0x05, mem, a, V)
    assert (e.level, e.entry_addr) == ("PTE", BEYOND + 8 * px(V))
    qemu_agrees(mem, a, V)


def test_real_address_outside_storage_is_addressing_for_data_but_fine_for_lra(mem):  # 42
    a = map_4k(mem, V, frame=BEYOND)
    fails(0x05, mem, a, V)
    assert dat.lra(mem, a, V) == (0, BEYOND | 0xABC)
    assert qemu_agrees(mem, a, V) == (0, BEYOND | 0xABC)


@pytest.mark.parametrize("real,absolute", [(0x1000, 0x21000), (0x21000, 0x1000), (0x3000, 0x3000)])
def test_prefixing_swaps_low_core_and_prefix_area(mem, real, absolute):      # 43
    a = map_4k(mem, V, frame=real)
    r = dat.translate(mem, a, V, prefix=0x20000)
    assert (r.real, r.absolute) == (real | 0xABC, absolute | 0xABC)
    assert dat.translate(mem, a, V, access="lra", prefix=0x20000).absolute == real | 0xABC
    qemu_agrees(mem, a, V)   # prefix 0 in unicorn: the real address


@pytest.mark.parametrize("frame", ["1M", "2G"])
def test_large_frame_over_real_zero_is_prefixed_like_qemu_unless_pop_mode(mem, frame):  # 44
    a = map_4k(mem, V)
    if frame == "1M":
        mem.write_u64(ste_addr(V), ste_large(0))
    else:
        mem.write_u64(r3te_addr(V), r3te_large(0))
    v = V & ~(0xFFFFF if frame == "1M" else 0x7FFF_FFFF) | 0x1234
    r = dat.translate(mem, a, v, prefix=0x20000)
    assert (r.real, r.absolute) == (0x1234, 0x21234)
    r = dat.translate(mem, a, v, prefix=0x20000, large_prefixing=False)
    assert (r.real, r.absolute) == (0x1234, 0x1234)


# -- 45-49: LOAD REAL ADDRESS -------------------------------------------------------------

R1_IN = 0xDEAD_BEEF_1234_5678


def test_lra_invalid_ste_is_cc3_with_code_and_high_word_kept(mem):            # 45
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), SEGMENT_ENTRY_EMPTY)
    assert dat.lra(mem, a, V, r1=R1_IN) == (3, 0xDEAD_BEEF_8000_0010)
    assert qemu_agrees(mem, a, V) == (3, 0x8000_0010)


def test_lra_invalid_pte_is_cc3_page_translation(mem):                        # 46
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), PAGE_INVALID)
    assert dat.lra(mem, a, V, r1=R1_IN) == (3, 0xDEAD_BEEF_8000_0011)
    assert qemu_agrees(mem, a, V) == (3, 0x8000_0011)


def test_lra_asce_type_is_cc3_asce_type(mem):                                 # 47
    assert dat.lra(mem, asce(ST, DT_ST), 1 << 31, r1=R1_IN) == (3, 0xDEAD_BEEF_8000_0038)
    assert qemu_agrees(mem, asce(ST, DT_ST), 1 << 31) == (3, 0x8000_0038)


def test_lra_pte_bit52_is_cc3_translation_specification(mem):                 # 48
    a = map_4k(mem, V)
    mem.write_u64(pte_addr(V), pte(FRAME, bit52=True))
    assert dat.lra(mem, a, V) == (3, 0x8000_0012)
    assert qemu_agrees(mem, a, V) == (3, 0x8000_0012)


def test_lra_ignores_dat_protection(mem):                                     # 49
    a = map_4k(mem, V)
    mem.write_u64(ste_addr(V), ste(PT_LOW, protect=True))
    mem.write_u64(pte_addr(V), pte(FRAME, protect=True))
    assert dat.lra(mem, a, V) == (0, FRAME | 0xABC)
    assert qemu_agrees(mem, a, V) == (0, FRAME | 0xABC)
    # (LRA with PSW DAT off: the walker has no DAT-off input; lra always translates.)


# -- 50-51: low-address protection, byte index --------------------------------------------

def test_low_address_protection_beats_translation_only_in_shared_space(mem):  # 50
    a = asce(ST, DT_ST)
    fill_crst(mem, ST, SEGMENT_ENTRY_EMPTY)
    fails(0x04, mem, a, 0x100, access="write", lap=True)
    fails(0x04, mem, a, 0x1100, access="write", lap=True)
    fails(0x10, mem, a, 0x200, access="write", lap=True)        # 512 is not low
    fails(0x10, mem, a, 0x100, access="read", lap=True)         # only stores
    fails(0x10, mem, a | 0x100, 0x100, access="write", lap=True)  # private space
    fails(0x10, mem, a, 0x100, access="write")                  # LAP off
    mem.write_u64(ST, ste(PT_LOW))
    fill_pt(mem, PT_LOW)
    fails(0x11, mem, a | 0x100, 0x100, access="write", lap=True)


def test_byte_index_changes_only_the_byte_offset(mem):                        # 51
    page = V & ~0xFFF
    a = map_4k(mem, page)
    lo, hi = dat.translate(mem, a, page), dat.translate(mem, a, page | 0xFFF)
    assert lo.path == hi.path
    assert (lo.real, hi.real) == (FRAME, FRAME | 0xFFF)
    assert qemu_agrees(mem, a, page) == (0, FRAME)
    assert qemu_agrees(mem, a, page | 0xFFF) == (0, FRAME | 0xFFF)
    mem.write_u64(pte_addr(page), PAGE_INVALID)
    assert fails(0x11, mem, a, page | 0xFFF).vaddr & ~0xFFF == page


# -- beyond §6: entry addresses wrap at 2^64 as in QEMU (gaddr is a 64-bit sum) ------------

def test_top_table_entry_address_wraps_at_2_to_the_64_like_qemu():
    mem = empty_image()
    a = asce(0xFFFF_FFFF_FFFF_F000, DT_R1)
    v = vaddr_of(rfx_=0x7FF, rsx_=1, rtx_=2, sx_=3, px_=4)
    mem.write_u64(0x2FF8, region_entry(R2T, TT_R1))       # 0xFFFFFFFFFFFFF000 + 0x3FF8
    mem.write_u64(R2T + 8, region_entry(R3T, TT_R2))
    mem.write_u64(R3T + 16, region_entry(ST, TT_R3))
    mem.write_u64(ST + 24, ste(PT_HIGH))
    mem.write_u64(PT_HIGH + 32, pte(FRAME))
    r = dat.translate(mem, a, v)
    assert (r.path[0].entry_addr, r.real) == (0x2FF8, FRAME)
    assert qemu_agrees(mem, a, v) == (0, FRAME)


def test_region_entry_origin_near_2_to_the_64_wraps_into_low_storage():
    mem = empty_image()
    a = asce(R1T, DT_R1)
    v = vaddr_of(rsx_=0x7FF)
    mem.write_u64(R1T, region_entry(0xFFFF_FFFF_FFFF_F000, TT_R1))
    mem.write_u64(0x2FF8, region_entry(R3T, TT_R2))        # R2TE read through the wrap
    e = fails(0x12, mem, a, v)                             # R3T entry 0 is zero: TT 00
    assert (e.level, e.entry_addr) == ("RTTE", R3T)
    assert qemu_agrees(mem, a, v) == (3, 0x8000_0012)
