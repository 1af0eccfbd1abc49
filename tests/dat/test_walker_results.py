"""Every field of what ``translate`` returns or raises, at each place it raises.

The spec cases (``test_spec_cases``) and the differential tests compare mostly the
interruption code; a caller (``translate`` in the CLI, the checks' messages, a kernel
developer reading a failure) also relies on where the exception was recognised
(``level``), on the entry involved (``entry_addr``), on the levels walked (``path``) and
on the message.  Here each ``raise`` of ``dat/walker.py`` is reached by the smallest
image and its exception is compared whole; each kind of successful result is compared
field by field.  Tables are built by hand with ``builders``.
"""

from __future__ import annotations

import pickle

import pytest

import dat
from dat.entries import index
from s390emu.memory import PhysicalMemory

from .builders import (
    BEYOND, DT_R1, DT_R3, DT_ST, FRAME, PT_LOW, R1T, R2T, R3T, ST, STORAGE, TT_R1, TT_R2,
    TT_R3, asce, empty_image, map_4k, pte, pte_addr, r1te_addr, r2te_addr, r3te_addr,
    r3te_large, region_entry, ste, ste_addr, ste_large, vaddr_of,
)

V = vaddr_of(rfx_=1, rsx_=2, rtx_=3, sx_=4, px_=5, bx=0xABC)   #: every index non-zero
LEVELS = ["RFTE", "RSTE", "RTTE", "STE", "PTE"]
ENTRY = {"RFTE": r1te_addr(V), "RSTE": r2te_addr(V), "RTTE": r3te_addr(V), "STE": ste_addr(V),
         "PTE": pte_addr(V)}


def raised(mem, asce_, vaddr, **kw) -> dat.TranslationException:
    with pytest.raises(dat.TranslationException) as info:
        dat.translate(mem, asce_, vaddr, **kw)
    return info.value


def fields(e: dat.TranslationException) -> tuple:
    """``(code, level, entry_addr, levels of the path, address)``."""
    return e.code, e.level, e.entry_addr, [s.level for s in e.path], e.address


# Each case: how to spoil a mapped 5-level image of V, the arguments, and the exception
# expected as (code, level, entry_addr, path levels).
def _outside_storage(mem):
    mem.write_u64(ENTRY["RTTE"], region_entry(BEYOND, TT_R3))


CASES = {
    "invalid R1TE": (lambda m: m.write_u64(ENTRY["RFTE"], 0x2C), {},
                     (0x39, "RFTE", ENTRY["RFTE"], LEVELS[:1])),
    "invalid R2TE": (lambda m: m.write_u64(ENTRY["RSTE"], 0x28), {},
                     (0x3A, "RSTE", ENTRY["RSTE"], LEVELS[:2])),
    "invalid R3TE": (lambda m: m.write_u64(ENTRY["RTTE"], 0x24), {},
                     (0x3B, "RTTE", ENTRY["RTTE"], LEVELS[:3])),
    "invalid STE": (lambda m: m.write_u64(ENTRY["STE"], 0x20), {},
                    (0x10, "STE", ENTRY["STE"], LEVELS[:4])),
    "wrong TT in the R2TE": (lambda m: m.write_u64(ENTRY["RSTE"], region_entry(R3T, TT_R3)), {},
                             (0x12, "RSTE", ENTRY["RSTE"], LEVELS[:2])),
    "R1TE TF above the RSX": (lambda m: m.write_u64(ENTRY["RFTE"], region_entry(R2T, TT_R1, tf=1)), {},
                              (0x3A, "RFTE", ENTRY["RFTE"], LEVELS[:1])),
    "R3TE TF above the SX": (lambda m: m.write_u64(ENTRY["RTTE"], region_entry(ST, TT_R3, tf=1)), {},
                             (0x10, "RTTE", ENTRY["RTTE"], LEVELS[:3])),
    "common segment, private space": (lambda m: m.write_u64(ENTRY["STE"], ste(PT_LOW, cs=True)),
                                      {"private": True}, (0x12, "STE", ENTRY["STE"], LEVELS[:4])),
    "common region, private space": (lambda m: m.write_u64(ENTRY["RTTE"], region_entry(ST, TT_R3, cr=True)),
                                     {"private": True}, (0x12, "RTTE", ENTRY["RTTE"], LEVELS[:3])),
    "segment table outside storage": (_outside_storage, {},
                                      (0x05, "STE", BEYOND + 8 * 4, LEVELS[:3])),
    "page table outside storage": (lambda m: m.write_u64(ENTRY["STE"], ste(BEYOND)), {},
                                   (0x05, "PTE", BEYOND + 8 * 5, LEVELS[:4])),
    "invalid PTE": (lambda m: m.write_u64(ENTRY["PTE"], 0x400), {},
                    (0x11, "PTE", ENTRY["PTE"], LEVELS)),
    "PTE bit 52": (lambda m: m.write_u64(ENTRY["PTE"], pte(FRAME, bit52=True)), {},
                   (0x12, "PTE", ENTRY["PTE"], LEVELS)),
    "protected PTE, store": (lambda m: m.write_u64(ENTRY["PTE"], pte(FRAME, protect=True)),
                             {"access": "write"}, (0x04, "PTE", ENTRY["PTE"], LEVELS)),
    "IEP PTE, fetch": (lambda m: m.write_u64(ENTRY["PTE"], FRAME | 0x100),
                       {"access": "fetch", "iep": True}, (0x04, "PTE", ENTRY["PTE"], LEVELS)),
    "protected 1M frame, store": (lambda m: m.write_u64(ENTRY["STE"], ste_large(0x100000, protect=True)),
                                  {"access": "write"}, (0x04, "STE", ENTRY["STE"], LEVELS[:4])),
    "IEP 2G frame, fetch": (lambda m: m.write_u64(ENTRY["RTTE"], r3te_large(0) | 0x100),
                            {"access": "fetch", "iep": True}, (0x04, "RTTE", ENTRY["RTTE"], LEVELS[:3])),
    "frame beyond storage": (lambda m: m.write_u64(ENTRY["PTE"], pte(BEYOND)), {},
                             (0x05, "PAGE", None, LEVELS)),
    "frame beyond storage, store": (lambda m: m.write_u64(ENTRY["PTE"], pte(BEYOND)), {"access": "write"},
                                    (0x05, "PAGE", None, LEVELS)),
    "1M frame beyond storage": (lambda m: m.write_u64(ENTRY["STE"], ste_large(BEYOND)), {},
                                (0x05, "PAGE", None, LEVELS[:4])),
    "2G frame beyond storage": (lambda m: m.write_u64(ENTRY["RTTE"], r3te_large(1 << 31)), {},
                                (0x05, "PAGE", None, LEVELS[:3])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_exception_names_its_level_entry_and_path(name):
    spoil, kw, (code, level, entry_addr, levels) = CASES[name]
    mem = empty_image()
    kw = dict(kw)
    private = kw.pop("private", False)
    a = map_4k(mem, V, DT_R1, private=private)
    spoil(mem)
    assert fields(raised(mem, a, V, **kw)) == (code, level, entry_addr, levels, V)


def test_an_exception_path_holds_each_entry_read_up_to_the_failing_one():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["STE"], 0x20)
    e = raised(mem, a, V)
    assert e.path == (
        dat.Step("RFTE", R1T, 1, ENTRY["RFTE"], region_entry(R2T, TT_R1)),
        dat.Step("RSTE", R2T, 2, ENTRY["RSTE"], region_entry(R3T, TT_R2)),
        dat.Step("RTTE", R3T, 3, ENTRY["RTTE"], region_entry(ST, TT_R3)),
        dat.Step("STE", ST, 4, ENTRY["STE"], 0x20),
    )


@pytest.mark.parametrize("dt,vaddr,code", [(DT_ST, 1 << 31, 0x38), (DT_R3, 1 << 42, 0x38),
                                           (DT_ST, 1 << 29, 0x10), (DT_R1, 1 << 62, 0x39)])
def test_asce_level_exceptions_have_no_entry_and_an_empty_path(dt, vaddr, code):
    mem = empty_image()
    e = raised(mem, asce({DT_ST: ST, DT_R3: R3T, DT_R1: R1T}[dt], dt, 0), vaddr)
    assert fields(e) == (code, "ASCE", None, [], vaddr)


def test_low_address_protection_is_raised_at_the_asce_for_the_address_given():
    e = raised(empty_image(), asce(ST, DT_ST), 0x1100, access="write", lap=True)
    assert fields(e) == (0x04, "ASCE", None, [], 0x1100)


def test_a_real_space_store_beyond_storage_is_addressing_at_page_with_no_path():
    e = raised(empty_image(), asce(0, DT_ST, real=True), STORAGE, access="write")
    assert fields(e) == (0x05, "PAGE", None, [], STORAGE)
    # the last page inside storage is fine (and no prefix area is near it)
    r = dat.translate(empty_image(), asce(0, DT_ST, real=True), STORAGE - 1, access="write",
                      prefix=0x20000)
    assert tuple(r[:6]) == (STORAGE - 1, STORAGE - 1, STORAGE - 1, False, False, 0) and r.path == ()
    assert r.protected is False and r.noexec is False


def test_lenient_reading_of_a_top_table_outside_storage_is_addressing_at_the_asce():
    e = raised(empty_image(), asce(STORAGE, DT_ST), 0, lenient=True)
    assert fields(e) == (0x05, "ASCE", STORAGE, [], 0)
    # a top table in the last page of storage is read: entry 0's TT makes it a segment table
    mem = empty_image()
    mem.write_u64(STORAGE - 0x1000, 0x20)
    e = raised(mem, asce(STORAGE - 0x1000, DT_R1), 0, lenient=True)
    assert fields(e) == (0x10, "STE", STORAGE - 0x1000, ["STE"], 0)


def test_lenient_reading_takes_the_level_from_entry_0_and_the_top_table_as_full_length():
    mem = empty_image()
    mem.write_u64(ST, 0x20)                         # TT 00: a segment table, whatever the ASCE says
    mem.write_u64(ST + 8 * 0x7FF, 0x20)
    e = raised(mem, asce(ST, DT_R1, 0), 0x7FF << 20, lenient=True)
    assert fields(e) == (0x10, "STE", ST + 8 * 0x7FF, ["STE"], 0x7FF << 20)


def test_entries_in_the_last_doubleword_of_storage_are_read():
    v = vaddr_of(sx_=0x1FF, px_=0xFF, bx=0x12)
    mem = empty_image()
    top = STORAGE - 0x1000                          # a segment table of TL 0: 4K, STE 0x1FF last
    mem.write_u64(STORAGE - 8, ste(PT_LOW))
    mem.write_u64(pte_addr(v), pte(FRAME))
    r = dat.translate(mem, asce(top, DT_ST, 0), v)
    assert (r.real, [s.entry_addr for s in r.path]) == (FRAME | 0x12, [STORAGE - 8, pte_addr(v)])
    mem = empty_image()                             # an upper-half page table, PTE 0xFF last
    mem.write_u64(ST + 8 * 0x1FF, ste(STORAGE - 0x800))
    mem.write_u64(STORAGE - 8, pte(FRAME))
    r = dat.translate(mem, asce(ST, DT_ST), v)
    assert (r.real, [s.entry_addr for s in r.path]) == (FRAME | 0x12, [ST + 8 * 0x1FF, STORAGE - 8])


@pytest.mark.parametrize("access", ["read", "write"])
def test_the_last_page_of_storage_is_a_frame_and_the_next_is_addressing(access):
    mem = empty_image()
    a = map_4k(mem, V, DT_R1, frame=STORAGE - 0x1000)
    assert dat.translate(mem, a, V, access=access).absolute == STORAGE - 0x1000 + 0xABC
    mem.write_u64(ENTRY["PTE"], pte(STORAGE))
    assert fields(raised(mem, a, V, access=access)) == (0x05, "PAGE", None, LEVELS, V)


def test_an_address_above_2_to_the_64_is_taken_modulo_2_to_the_64():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    r = dat.translate(mem, a, V | 1 << 64)
    assert (r.vaddr, r.real) == (V, FRAME | 0xABC)
    mem.write_u64(ENTRY["PTE"], 0x400)
    assert raised(mem, a, V | 1 << 70).address == V


# -- successful results, field by field ---------------------------------------------------

def test_a_4k_translation_gives_every_field():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["PTE"], pte(FRAME, protect=True) | 0x100)
    for kw, prot, nx in (({}, True, False), ({"iep": True}, True, True)):
        r = dat.translate(mem, a, V, **kw)
        assert tuple(r[:6]) == (V, FRAME | 0xABC, FRAME | 0xABC, prot, nx, 4096)
        assert (r.vaddr, r.real, r.absolute, r.protected, r.noexec, r.page_size) == tuple(r[:6])
        assert [s.level for s in r.path] == LEVELS
        assert r.path[-1] == dat.Step("PTE", PT_LOW, 5, ENTRY["PTE"], pte(FRAME, protect=True) | 0x100)


@pytest.mark.parametrize("access", ["read", "fetch", "lra"])
def test_a_protected_1m_frame_is_readable_and_reports_its_size_and_protection(access):
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["STE"], ste_large(0x300000, protect=True))
    r = dat.translate(mem, a, V, access=access)
    assert tuple(r[:6]) == (V, 0x300000 | (V & 0xFFFFF), 0x300000 | (V & 0xFFFFF), True, False, 1 << 20)
    assert [s.level for s in r.path] == LEVELS[:4]


@pytest.mark.parametrize("access", ["read", "write", "lra"])
def test_an_iep_2g_frame_is_usable_for_data_and_reports_noexec(access):
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["RTTE"], r3te_large(0) | 0x100)
    r = dat.translate(mem, a, V, access=access, iep=True)
    assert tuple(r[:6]) == (V, V & 0x7FFF_FFFF, V & 0x7FFF_FFFF, False, True, 1 << 31)
    assert [s.level for s in r.path] == LEVELS[:3]


def test_a_2g_frame_without_its_iep_bit_is_executable_with_iep_on():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["RTTE"], r3te_large(0))
    r = dat.translate(mem, a, V, access="fetch", iep=True)
    assert (r.real, r.noexec, r.page_size) == (V & 0x7FFF_FFFF, False, 1 << 31)


def test_entries_index_is_the_index_each_level_of_the_walk_uses():
    mem = empty_image()
    r = dat.translate(mem, map_4k(mem, V, DT_R1), V)
    levels = [dat.Level.REGION1, dat.Level.REGION2, dat.Level.REGION3, dat.Level.SEGMENT]
    assert [index(V, lv) for lv in levels] == [s.index for s in r.path[:4]] == [1, 2, 3, 4]
    assert [index(0xFFFF_FFFF_FFFF_FFFF, lv) for lv in levels] == [0x7FF] * 4


def test_region_protection_with_edat1_marks_a_read_result_protected():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["RSTE"], region_entry(R3T, TT_R2, protect=True))
    assert dat.translate(mem, a, V).protected is True
    assert dat.translate(mem, a, V, edat1=False, edat2=False).protected is False


def test_lra_of_a_frame_beyond_storage_returns_it_unprefixed():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1, frame=BEYOND)
    r = dat.translate(mem, a, V, access="lra", prefix=0x20000)
    assert (r.real, r.absolute, r.page_size) == (BEYOND | 0xABC, BEYOND | 0xABC, 4096)


# -- the exception as an object -------------------------------------------------------------

def test_the_message_names_the_exception_code_address_level_and_entry():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["STE"], 0x20)
    e = raised(mem, a, V)
    assert str(e) == f"segment-translation exception (0x10) for {V:#018x} at STE {ENTRY['STE']:#018x}"
    assert repr(e) == f"TranslationException({e})"
    asce_level = raised(mem, asce(ST, DT_ST), 1 << 31)
    assert str(asce_level) == "ASCE-type exception (0x38) for 0x0000000080000000 at ASCE"
    assert asce_level.name == "ASCE-type" and asce_level.vaddr == 1 << 31


def test_an_unknown_code_is_named_by_its_number():
    e = dat.TranslationException(0x3C, 0x1000, "ASCE")
    assert e.name == "program-interruption 0x3c"
    assert str(e) == "program-interruption 0x3c exception (0x3c) for 0x0000000000001000 at ASCE"
    assert isinstance(e, dat.DatError) and e.path == () and e.entry_addr is None


def test_an_exception_survives_pickling_whole():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["PTE"], 0x400)
    e = raised(mem, a, V)
    back = pickle.loads(pickle.dumps(e))
    assert fields(back) == fields(e) and back.path == e.path and str(back) == str(e)


@pytest.mark.parametrize("walk", [dat.translate, dat.translate_many])
def test_a_bad_access_kind_is_an_invalid_argument_naming_the_kinds(walk):
    with pytest.raises(dat.InvalidArgument) as info:
        walk(empty_image(), asce(ST, DT_ST), [0] if walk is dat.translate_many else 0, access="exec")
    assert str(info.value) == "access must be one of read, write, fetch, lra, not 'exec'"
    assert isinstance(info.value, ValueError)


# -- LOAD REAL ADDRESS ----------------------------------------------------------------------

def test_lra_keeps_only_r1s_high_word_on_an_exception():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["STE"], 0x20)               # segment-translation: an even code
    assert dat.lra(mem, a, V, r1=(1 << 64) - 1) == (3, 0xFFFF_FFFF_8000_0010)
    assert dat.lra(mem, a, V) == (3, 0x8000_0010)


@pytest.mark.parametrize("edat1,edat2,real", [(True, True, V & 0x7FFF_FFFF), (True, False, None),
                                              (False, True, None)])
def test_lra_passes_both_facilities_to_the_walk(edat1, edat2, real):
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["RTTE"], r3te_large(0) | 0x3)    # FC, and TL 3 when it designates a table
    got = dat.lra(mem, a, V, edat1=edat1, edat2=edat2)
    # without EDAT-2 the R3TE designates a segment table at 0, whose zero STE 4 designates
    # a page table at 0, whose zero PTE 5 maps frame 0
    assert got == ((0, real) if real is not None else (0, 0xABC))


def test_the_last_page_of_a_storage_of_an_odd_number_of_pages_is_addressable():
    mem = PhysicalMemory(0x11000)                   # 17 pages: the last one at 0x10000
    a = asce(0, DT_ST, real=True)
    assert dat.translate(mem, a, 0x10ABC).absolute == 0x10ABC
    assert fields(raised(mem, a, 0x11000)) == (0x05, "PAGE", None, [], 0x11000)


def test_iep_is_off_unless_asked_for():
    mem = empty_image()
    a = map_4k(mem, V, DT_R1)
    mem.write_u64(ENTRY["PTE"], FRAME | 0x100)
    r = dat.translate(mem, a, V, access="fetch")
    assert (r.real, r.noexec) == (FRAME | 0xABC, False)
