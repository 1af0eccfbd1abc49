"""Dumps are mapped, never read whole: ``PhysicalMemory.mapped`` and ``dump.load`` over it.

Each test builds an ELF core by hand (``test_reader_errors.ehdr``/``phdr``) whose
segments lie where mapping is easy (page-congruent offsets), hard (an offset that is
not, as QEMU's ``dump-guest-memory`` writes: its one ``PT_LOAD`` starts right after the
notes) or partial (a ``p_filesz`` that ends inside a page whose file bytes go on), and
expects every byte of storage to be what a reader that copies would have: the file's
bytes inside each segment, zero elsewhere.  Stores never reach the file.
"""

from __future__ import annotations

import resource

import numpy as np

from s390emu import dump

from .test_reader_errors import PAGE, PHDR, PT_LOAD, EHDR, ehdr, phdr


def elf(segments: list[tuple[int, int, int, bytes]], tail: bytes = b"") -> bytes:
    """A core whose PT_LOADs are ``(paddr, memsz, offset, data)``; ``data`` lies at
    ``offset`` (its length is ``p_filesz``), the file padded with 0xEE between pieces so
    that a byte read from outside a segment shows."""
    head = ehdr(len(segments)) + b"".join(phdr(PT_LOAD, off, len(data), memsz, paddr)
                                          for paddr, memsz, off, data in segments)
    out = bytearray(head)
    for _, _, off, data in segments:
        if len(out) < off:
            out += b"\xee" * (off - len(out))
        out[off:off + len(data)] = data
    return bytes(out) + tail


def pattern(n: int, seed: int) -> bytes:
    """``n`` bytes no two pages of which are alike."""
    return np.random.default_rng(seed).integers(1, 256, n, dtype=np.uint8).tobytes()


def expected(size: int, segments) -> bytes:
    """What a copying reader puts in storage."""
    mem = bytearray(size)
    for paddr, _, _, data in segments:
        mem[paddr:paddr + len(data)] = data
    return bytes(mem)


def test_one_segment_at_an_unaligned_offset_is_mapped_whole(tmp_path):
    # QEMU's layout: one PT_LOAD for all of storage, right after the headers.
    data = pattern(16 * PAGE, 1)
    segs = [(0, len(data), EHDR + PHDR, data)]
    path = tmp_path / "qemu.elf"
    path.write_bytes(elf(segs))
    d = dump.load(path)
    assert d.mem.data.tobytes() == expected(16 * PAGE, segs)


def test_page_congruent_segments_with_partial_pages_show_no_byte_beyond_p_filesz(tmp_path):
    # A segment that starts and ends inside pages: the file's bytes around it (0xEE and
    # the next segment's data) must not appear in storage.
    a, b = pattern(3 * PAGE + 100, 2), pattern(PAGE - 8, 3)
    segs = [(PAGE + 24, 4 * PAGE, 2 * PAGE + 24, a), (8 * PAGE, 2 * PAGE, 6 * PAGE + 24 + 4 * PAGE, b)]
    path = tmp_path / "core"
    path.write_bytes(elf(segs, tail=b"\xee" * PAGE))
    d = dump.load(path)
    assert d.mem.size == 10 * PAGE
    assert d.mem.data.tobytes() == expected(10 * PAGE, segs)


def test_a_segment_not_congruent_with_its_page_is_copied(tmp_path):
    a, b = pattern(2 * PAGE, 4), pattern(PAGE, 5)
    segs = [(0, 2 * PAGE, PAGE, a), (4 * PAGE, PAGE, 3 * PAGE + 12, b)]
    path = tmp_path / "core"
    path.write_bytes(elf(segs))
    d = dump.load(path)
    assert d.mem.data.tobytes() == expected(5 * PAGE, segs)


def test_stores_go_to_private_pages_and_never_reach_the_file(tmp_path):
    data = pattern(4 * PAGE, 6)
    for segs in ([(0, 4 * PAGE, EHDR + PHDR, data)], [(0, 4 * PAGE, PAGE, data), (8 * PAGE, PAGE, 5 * PAGE, data[:PAGE])]):
        path = tmp_path / f"core{len(segs)}"
        path.write_bytes(elf(segs))
        before = path.read_bytes()
        d = dump.load(path)
        d.mem.write_u64(PAGE, 0x0123_4567_89AB_CDEF)
        d.mem.fill(9 * PAGE - 16 if len(segs) == 2 else 0, 16, 0x5A)
        assert d.mem.read_u64(PAGE) == 0x0123_4567_89AB_CDEF
        assert path.read_bytes() == before
        assert dump.load(path).mem.read(PAGE, 8) == data[PAGE:PAGE + 8]


def test_a_64_gib_sparse_dump_opens_and_costs_only_the_pages_touched(tmp_path):
    # Storage of 64 GiB on a machine with less: nothing but the pages read is resident.
    top = 64 << 30
    low, high = pattern(PAGE, 7), pattern(PAGE, 8)
    segs = [(0, PAGE, PAGE, low), (PAGE, top - 2 * PAGE, 2 * PAGE, b""), (top - PAGE, PAGE, 2 * PAGE, high)]
    path = tmp_path / "big"
    path.write_bytes(elf(segs))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    d = dump.load(path)
    assert d.mem.size == top
    assert d.mem.read(0, PAGE) == low and d.mem.read(top - PAGE, PAGE) == high
    assert d.mem.read(32 << 30, 16) == bytes(16)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss      # KiB
    assert grown < 64 << 10, f"opening a 64 GiB dump grew the process by {grown} KiB"


def test_a_dump_beyond_the_limit_is_refused_before_anything_is_mapped(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(elf([(0, PAGE, PAGE, bytes(PAGE)), (PAGE, dump.MAX_MEMORY, 2 * PAGE, b"")]))
    try:
        dump.load(path)
    except dump.DumpError as e:
        assert "exceeds the" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("a dump claiming more than MAX_MEMORY was opened")
