"""One exception root per package, the address under one name.

Every error of the machine package is an ``S390emuError`` and every error of ``dat`` a
``DatError``; the address each concerns is ``address``, and the names it had before
(``addr``, ``page``, ``vaddr``) still read it.  Misuse of either API raises the
package's ``InvalidArgument``, which ``except ValueError`` still catches.
"""

from __future__ import annotations

import pytest

import dat
from s390emu import (AddressingError, DumpError, FrameError, ImageError, InvalidArgument, LayoutError,
                     ListCorruption, Machine, PhysicalMemory, S390emuError, dump, lists)
from s390emu.vmcoreinfo import number


def test_every_machine_error_is_an_s390emu_error():
    for cls in (AddressingError, DumpError, FrameError, ImageError, InvalidArgument, LayoutError,
                ListCorruption):
        assert issubclass(cls, S390emuError)


def test_an_addressing_error_carries_the_address_under_both_names():
    with pytest.raises(AddressingError) as e:
        PhysicalMemory(1 << 20).read(0x100000, 8)
    assert e.value.address == e.value.addr == 0x100000


def test_a_negative_length_is_refused_not_read_as_nothing():
    mem = PhysicalMemory(1 << 20)
    for op in (lambda: mem.read(0x1000, -8), lambda: mem.fill(0x1000, -1, 0), lambda: mem.read((1 << 20) + 8, -16)):
        with pytest.raises(InvalidArgument, match="a negative length"):
            op()
    assert not mem.contains(0x1000, -1) and mem.contains(0x1000, 0) and not mem.contains(-1, 2)
    assert mem.read(1 << 20, 0) == b""                       # zero bytes at the end: nothing to refuse


def test_a_double_free_names_the_struct_page_under_both_names():
    m = Machine(8 << 20, ncpus=1)
    frame = m.frames.alloc_pages(0)
    m.frames.free_pages(frame)
    with pytest.raises(FrameError) as e:
        m.frames.free_pages(frame)
    assert e.value.address == e.value.page == m.mem_map.virt_to_page(frame)


def test_a_corrupt_list_names_the_node_under_both_names():
    mem = PhysicalMemory(1 << 20)
    lists.INIT_LIST_HEAD(mem, 0x100)
    mem.write_u64(0x100, 0x200)                    # head -> a node that does not point back
    with pytest.raises(ListCorruption) as e:
        lists.list_entries(mem, 0x100)
    assert e.value.address == e.value.addr == 0x200


def test_misuse_raises_the_packages_own_error_which_is_still_a_value_error():
    with pytest.raises(InvalidArgument):
        PhysicalMemory(4095)
    with pytest.raises(ValueError):
        Machine(8 << 20, ncpus=0)
    with pytest.raises(LayoutError):
        Machine.attach(PhysicalMemory(1 << 20))
    with pytest.raises(LayoutError):
        number({"SIZE(page)": "sixty-four"}, "SIZE(page)")


def test_an_unreadable_dump_is_a_dump_error(tmp_path):
    with pytest.raises(S390emuError):
        dump.load(tmp_path / "missing")


def test_a_translation_exception_is_a_dat_error_with_the_virtual_address():
    mem = PhysicalMemory(1 << 20)
    mem.table(0x10000, 2048)[:] = 0x20
    with pytest.raises(dat.DatError) as e:
        dat.translate(mem, 0x10003, 0x123456)
    assert isinstance(e.value, dat.TranslationException)
    assert e.value.address == e.value.vaddr == 0x123456


def test_misuse_of_the_walker_raises_dats_invalid_argument():
    mem = PhysicalMemory(1 << 20)
    for call in (lambda: dat.translate(mem, 0x10003, 0, access="exec"),
                 lambda: dat.translate_many(mem, 0x10003, [0], access="exec")):
        with pytest.raises(dat.InvalidArgument):
            call()
    assert issubclass(dat.InvalidArgument, dat.DatError) and issubclass(dat.InvalidArgument, ValueError)
