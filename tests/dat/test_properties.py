"""Hypothesis properties of the walker.

* ``translate_many`` equals ``translate`` on every input: random images (``walkgen``),
  failing and succeeding addresses, every access type, EDAT on/off, IEP, prefixes.
* A translated address keeps its byte offset within the page, segment or region frame.
* Setting the I bit of any entry used by a successful walk turns the walk into that
  level's exception, reported at that entry.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dat

from .builders import (
    DT_R1, DT_R2, DT_R3, DT_ST, PT_HIGH, PT_LOW, empty_image, map_4k, r3te_addr, r3te_large,
    ste_addr, ste_large,
)
from .walkgen import ImageGenerator

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: exception code raised when the I bit of an entry at this level is set
INVALID_CODE = {"RFTE": 0x39, "RSTE": 0x3A, "RTTE": 0x3B, "STE": 0x10, "PTE": 0x11}
#: the I bit per level
I_BIT = {"RFTE": 0x20, "RSTE": 0x20, "RTTE": 0x20, "STE": 0x20, "PTE": 0x400}
#: bits of the address an ASCE of each type covers
ASCE_BITS = {DT_ST: 31, DT_R3: 42, DT_R2: 53, DT_R1: 64}
#: bits kept from the address, by page size (0 = real space: the whole address)
OFFSET_MASK = {4096: 0xFFF, 1 << 20: 0xF_FFFF, 1 << 31: 0x7FFF_FFFF, 0: 0xFFFF_FFFF_FFFF_FFFF}

facilities = st.sampled_from([(True, True), (True, False), (False, False)])
prefixes = st.sampled_from([0, 0x2000, 0x20000, 0x1F_E000])


def _scalar(mem, asce, vaddrs, **kw):
    addrs, codes = [], []
    for v in vaddrs:
        try:
            addrs.append(dat.translate(mem, asce, v, **kw).absolute)
            codes.append(0)
        except dat.TranslationException as e:
            addrs.append(0)
            codes.append(e.code)
    return addrs, codes


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), edat=facilities, prefix=prefixes,
       access=st.sampled_from(["read", "write", "fetch", "lra"]), iep=st.booleans(),
       extra=st.lists(st.integers(0, 2**64 - 1), max_size=8))
def test_translate_many_equals_translate_on_every_input(seed, edat, prefix, access, iep, extra):
    gen = ImageGenerator(seed)
    mem, asce, vaddrs = gen.image(60)
    vaddrs = vaddrs + extra
    kw = dict(access=access, edat1=edat[0], edat2=edat[1], iep=iep, prefix=prefix)
    addrs, codes = dat.translate_many(mem, asce, np.array(vaddrs, dtype=np.uint64), **kw)
    assert addrs.dtype == np.uint64 and codes.dtype == np.uint16
    want_addrs, want_codes = _scalar(mem, asce, vaddrs, **kw)
    for v, a, c, wa, wc in zip(vaddrs, addrs.tolist(), codes.tolist(), want_addrs, want_codes):
        assert (a, c) == (wa, wc), f"asce={asce:#x} vaddr={v:#x} {kw}: many ({a:#x},{c:#x}) " \
                                   f"scalar ({wa:#x},{wc:#x})"


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), edat=facilities)
def test_translated_address_keeps_the_byte_offset_on_random_images(seed, edat):
    mem, asce, vaddrs = ImageGenerator(seed).image(60)
    for v in vaddrs:
        try:
            r = dat.translate(mem, asce, v, access="lra", edat1=edat[0], edat2=edat[1])
        except dat.TranslationException:
            continue
        mask = OFFSET_MASK[r.page_size]
        assert r.real & mask == v & mask, f"asce={asce:#x} vaddr={v:#x} page_size={r.page_size}"


# Hand-built successful walks: every ASCE type, both 2K halves, 4K / 1M / 2G leaves.

walks = st.fixed_dictionaries({
    "vaddr": st.integers(0, 2**64 - 1),
    "dt": st.sampled_from([DT_R1, DT_R2, DT_R3, DT_ST]),
    "pt": st.sampled_from([PT_LOW, PT_HIGH]),
    "leaf": st.sampled_from([4096, 1 << 20, 1 << 31]),
    "private": st.booleans(),
})


def _build(w):
    """A successful walk of ``w["vaddr"]`` (cut to the ASCE's range) and its ASCE."""
    mem = empty_image()
    v = w["vaddr"] & ((1 << ASCE_BITS[w["dt"]]) - 1)
    a = map_4k(mem, v, w["dt"], pt=w["pt"], private=w["private"])
    leaf = w["leaf"] if not (w["leaf"] == 1 << 31 and w["dt"] == DT_ST) else 1 << 20
    if leaf == 1 << 20:
        mem.write_u64(ste_addr(v), ste_large(0x0070_0000))
    elif leaf == 1 << 31:
        mem.write_u64(r3te_addr(v), r3te_large(0x8000_0000))
    return mem, a, v, leaf


@SETTINGS
@given(w=walks, prefix=prefixes)
def test_translated_address_keeps_the_byte_offset(w, prefix):
    mem, a, v, leaf = _build(w)
    r = dat.translate(mem, a, v, access="lra", prefix=prefix)
    assert r.page_size == leaf
    assert r.real & (leaf - 1) == v & (leaf - 1)
    assert r.absolute == r.real                     # LRA: no prefixing
    if leaf == 4096:
        r = dat.translate(mem, a, v, prefix=prefix)
        assert r.absolute & 0xFFF == v & 0xFFF      # prefixing moves whole pages


@SETTINGS
@given(w=walks)
def test_invalid_bit_on_any_used_entry_raises_that_levels_exception(w):
    mem, a, v, _ = _build(w)
    path = dat.translate(mem, a, v, access="lra").path
    assert len(path) >= 1
    for step in path:
        saved = mem.read_u64(step.entry_addr)
        mem.write_u64(step.entry_addr, saved | I_BIT[step.level])
        try:
            dat.translate(mem, a, v, access="lra")
        except dat.TranslationException as e:
            assert (e.code, e.level, e.entry_addr) == \
                (INVALID_CODE[step.level], step.level, step.entry_addr)
        else:
            raise AssertionError(f"I bit in {step.level} at {step.entry_addr:#x} did not fault")
        finally:
            mem.write_u64(step.entry_addr, saved)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), edat=facilities)
def test_invalid_bit_on_random_images_raises_that_levels_exception(seed, edat):
    mem, asce, vaddrs = ImageGenerator(seed).image(60)
    kw = dict(access="lra", edat1=edat[0], edat2=edat[1])
    for v in vaddrs:
        try:
            path = dat.translate(mem, asce, v, **kw).path
        except dat.TranslationException:
            continue
        addrs = [s.entry_addr for s in path]
        for step in path:
            if addrs.count(step.entry_addr) > 1:    # one doubleword used at two levels
                continue
            saved = mem.read_u64(step.entry_addr)
            mem.write_u64(step.entry_addr, saved | I_BIT[step.level])
            try:
                dat.translate(mem, asce, v, **kw)
                raise AssertionError(f"asce={asce:#x} vaddr={v:#x}: I bit in {step.level} "
                                     f"at {step.entry_addr:#x} did not fault")
            except dat.TranslationException as e:
                assert (e.code, e.entry_addr) == (INVALID_CODE[step.level], step.entry_addr), \
                    f"asce={asce:#x} vaddr={v:#x} {step.level}: {e}"
            finally:
                mem.write_u64(step.entry_addr, saved)
