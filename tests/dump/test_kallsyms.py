"""kallsyms decoded from a table built here as scripts/kallsyms.c lays it out (names as token
indexes, a token table and its index, base-relative offsets), in a stand-in for the kernel's
address space; and KernelSymbols' sources around it."""

from __future__ import annotations

import struct

import pytest

from s390emu.inspect.kernel_symbols import KernelSymbols, kallsyms, kallsyms_tables
from s390emu.vmcoreinfo import LayoutError

BASE = 0x10000                       # where the stand-in's bytes start


class Space:
    """Kernel virtual memory that holds only ``data`` at BASE: any other read is unmapped."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self, addr: int, n: int) -> bytes:
        if addr < BASE or addr + n > BASE + len(self.data):
            raise LayoutError(f"{addr:#x}+{n:#x} is not mapped")
        return self.data[addr - BASE:addr - BASE + n]

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "big")


def table(symbols, *, num=None, relative_base=0x100000, markers=4, first=()):
    """``(Space, at)``: names, markers (4 bytes), token table, token index, offsets, the
    relative base and num_syms.  Token i is the character chr(i) (one-character tokens), so
    a name's bytes are its token indexes."""
    names = b""
    for kind, name, _off in symbols:
        text = (kind + name).encode("latin-1")
        n = len(text)
        names += (bytes([n]) if n < 0x80 else bytes([n & 0x7F | 0x80, n >> 7])) + text
    tokens = b"".join(bytes([i]) + b"\0" if i else b"\0" for i in range(256))
    index = [0] + [2 * i - 1 for i in range(1, 256)]
    parts = {"names": names, "markers": bytes(markers), "token_table": tokens,
             "token_index": struct.pack(">256H", *index),
             "offsets": b"".join(struct.pack(">I", off) for _k, _n, off in symbols),
             "relative_base": struct.pack(">Q", relative_base),
             "num_syms": struct.pack(">I", len(symbols) if num is None else num)}
    at, data = {}, b""
    for key in [*first, *(k for k in parts if k not in first)]:
        blob = parts[key]
        at[key] = BASE + len(data)
        data += blob + bytes(-len(blob) % 8)
    del at["markers"]
    return Space(data), at


SYMBOLS = [("T", "_stext", 0), ("t", "do_exit", 0x1234), ("D", "x" * 200, 0x20000), ("T", "_stext", 0x999)]


def test_names_types_and_addresses_decode_the_first_of_each_name_and_big_symbols():
    space, at = table(SYMBOLS)
    assert kallsyms(space, at) == {"_stext": (0x100000, "T"), "do_exit": (0x101234, "t"),
                                   "x" * 200: (0x120000, "D")}


def test_one_symbol_is_a_table():
    space, at = table(SYMBOLS[:1])
    assert kallsyms(space, at) == {"_stext": (0x100000, "T")}


@pytest.mark.parametrize("num", [0, 1 << 22, 0xFFFFFFFF])
def test_a_num_syms_no_kernel_has_is_one_error(num):
    space, at = table(SYMBOLS, num=num)
    with pytest.raises(LayoutError) as e:
        kallsyms(space, at)
    assert str(e.value) == f"kallsyms_num_syms is {num}: no kallsyms table of a kernel"


def test_more_names_than_the_stream_holds_reads_an_empty_name_in_the_markers():
    space, at = table(SYMBOLS, num=5)            # the fifth "name" is kallsyms_markers' first zero byte
    with pytest.raises(LayoutError) as e:
        kallsyms(space, {**at, "offsets": at["token_table"]})
    assert str(e.value) == "kallsyms_names: name 4 of 5 is empty: no kallsyms table of a kernel"


def test_nothing_is_read_beyond_the_token_index():
    """The tables end the mapped bytes (offsets, base and count moved before the names):
    the token table is read up to its index, the index's 512 bytes, and no further."""
    space, at = table(SYMBOLS)
    head = space.data[at["offsets"] - BASE:]               # offsets, relative base, num_syms
    body = space.data[:at["offsets"] - BASE]               # names ... token index
    moved = Space(head + body)
    shift = len(head)
    at2 = {k: v + shift for k, v in at.items() if k in ("names", "token_table", "token_index")}
    at2.update({k: v - (at["offsets"] - BASE) for k, v in at.items() if k in ("offsets", "relative_base", "num_syms")})
    assert at2["token_index"] + 512 == BASE + len(moved.data)
    assert kallsyms(moved, at2)["do_exit"] == (0x101234, "t")


def test_the_last_name_may_end_where_the_markers_begin():
    """A short name's first token is no length byte: the stream is not read past the token
    table to finish it (the last name ends 4 bytes before kallsyms_token_table here)."""
    space, at = table([("T", "a", 0), ("T", "\x7f" * 3, 4)])
    assert kallsyms(space, at) == {"a": (0x100000, "T"), "\x7f" * 3: (0x100004, "T")}


def test_kernel_symbols_without_a_decodable_table_has_no_kallsyms_source():
    space, at = table(SYMBOLS, num=0)
    info = {f"SYMBOL(kallsyms_{k})": f"{v:x}" for k, v in at.items()}
    sym = KernelSymbols(space, {**info, "SYMBOL(_stext)": "1a", "SYMBOL(bad)": "zz"})
    assert kallsyms_tables(info) == at
    assert sym.sources == ["VMCOREINFO"]
    assert sym.address("_stext") == 0x1a              # VMCOREINFO's values are hex
    assert sym.address("bad") is None and sym.address("do_exit") is None
    assert sym.size("_stext") is None
    space, at = table(SYMBOLS)
    sym = KernelSymbols(space, {f"SYMBOL(kallsyms_{k})": f"{v:x}" for k, v in at.items()})
    assert sym.address("do_exit") == 0x101234 and sym.size("do_exit") is None


def test_a_stream_longer_than_one_read_ending_right_at_the_token_table():
    """Names across the 64 KiB reads and big ones among them; no markers and no padding
    between the last name and kallsyms_token_table: every byte up to it is needed, and
    none beyond it is read."""
    symbols = [("t", f"f{i:04d}_" + "y" * (90 + i % 60), i * 16) for i in range(800)]
    symbols += [("T", "z" * (120 + k), 0x80000 + k) for k in range(20)]        # lengths 121-140: one and two bytes

    def stream(symbols):
        return sum(1 + len(k + n) + (len(k + n) >= 0x80) for k, n, _o in symbols)
    while stream(symbols) % 8:                       # no padding either: the stream ends on a doubleword
        symbols[0] = ("t", symbols[0][1] + "q", 0)
    names_len = stream(symbols)
    assert names_len > 1 << 16 and names_len % 8 == 0
    space, at = table(symbols, markers=0)
    assert at["token_table"] - at["names"] == names_len
    assert kallsyms(space, at) == {n: (0x100000 + o, k) for k, n, o in symbols}


def test_tables_in_another_order_read_at_most_num_syms_names_of_ksym_name_len():
    space, at = table(SYMBOLS, first=("token_table", "token_index"))      # the token table before the names
    assert at["token_table"] < at["names"]
    space.data += bytes(4 * 514)                     # mapped on beyond the tables, as the kernel image is
    assert kallsyms(space, at)["do_exit"] == (0x101234, "t")
