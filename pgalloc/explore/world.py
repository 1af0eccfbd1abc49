"""The explorer's worlds: a ``Kernel`` plus the generator's state, on storage that keys
and freezes itself as its difference to the setup's memory.

``ExploreMemory`` records the 1 KiB blocks every store writes, so a world's difference
to the setup (the blocks that differ, each with its hash) is computed by hashing what
changed, never by comparing or copying the whole storage; ``Scratch`` moves two such
storages from world to world by rewriting only the blocks that differ.
``freeze``/``thaw`` turn a world into compact bytes (the differing blocks compressed,
the kernel's ``snapshot()`` marshalled) and back (``Kernel.restore``): the kernel's own
interface is all they use of it.  ``clone_onto`` copies a world's Python state, sharing
its CPUs until one moves (``own_cpu``); ``world_key`` is the visited-state key (the
named parts of ``Kernel.key()``), with CPUs renumbered canonically and the budget kept
apart so that ``subsumes`` can compare it.
"""

from __future__ import annotations

import io
import marshal
import pickle
import struct
import zlib
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import xxhash

from s390emu.machine import Machine
from s390emu.memory import PhysicalMemory

from ..cpu import thawed
from ..kernel import Kernel, KernelKey


# -- memory that keys and freezes itself as a difference to the setup ------------------------------

# Storage is compared, hashed and moved in 1 KiB blocks: a step writes a few words in
# two or three blocks (a struct page, a list head, a table entry), so only those are
# hashed again, and a world is the handful of blocks where it differs from the setup.
BLOCK_SHIFT = 10
MASK128 = (1 << 128) - 1
_U64, _U32 = struct.Struct(">Q"), struct.Struct(">I")      # the hot reads, without numpy scalars


def _block(b: int) -> slice:
    """Block ``b``'s bytes, as an index into a storage's ``data``."""
    return slice(b << BLOCK_SHIFT, (b + 1) << BLOCK_SHIFT)


# XXH3-128 rather than BLAKE2b: about ten times faster on a 1 KiB block (0.2 against
# 2.3 microseconds here), and the keys need no defence against an adversary, only the
# 128 bits that make an accidental collision out of reach.
_hash_bytes = xxhash.xxh3_128_intdigest     # (content, block number as the seed)
_digest = xxhash.xxh3_128_digest


def block_hash(data: np.ndarray, b: int) -> int:
    """A 128-bit hash of block ``b``'s bytes, seeded with its number (the same bytes in
    another block hash differently)."""
    return _hash_bytes(data[_block(b)], b)


def base_hashes(data: np.ndarray) -> list[int]:
    """``block_hash`` of every block of the setup's storage."""
    return [block_hash(data, b) for b in range(len(data) >> BLOCK_SHIFT)]


class ExploreMemory(PhysicalMemory):
    """Storage that keys and freezes itself as its difference to a base image (the setup).

    The difference is kept per block: ``parent`` maps each block where the loaded
    world differs from the base to its ``block_hash``, ``psum`` is the sum of those
    hashes (mod 2**128: the memory's part of the world key), and every store records
    the blocks it writes (``written``), so the next world's difference rehashes only
    those.  ``rec`` optionally records the doublewords read and written (the sleep
    sets' independence relation).  Views handed out by ``table()`` count as read and
    written.
    """

    __slots__ = ("base", "hashes", "rec", "written", "parent", "psum", "_digest", "fresh")

    def __init__(self, size: int, *, _data: np.ndarray | None = None, base: np.ndarray | None = None,
                 hashes: list[int] | None = None):
        super().__init__(size, _data=_data)
        self.base = base
        self.hashes = hashes
        self.rec = None
        self.written: set[int] = set()
        self.parent: dict[int, int] = {}
        self.psum = 0
        self._digest = None
        self.fresh: set[int] = set()        # blocks stored into since forget_stores()

    def copy(self) -> "ExploreMemory":
        m = ExploreMemory(self.size, _data=np.array(self.data, copy=True), base=self.base, hashes=self.hashes)
        m.written, m.parent, m.psum = set(self.written), self.parent, self.psum
        return m

    def diff(self) -> tuple[dict[int, int], int]:
        """``({block: hash}, sum of the hashes)`` of the blocks where this storage
        differs from the base."""
        blocks, total = self.parent, self.psum
        if self.written:
            blocks = dict(blocks)
            view, base = self.view, self.hashes
            for b in self.written:
                h = _hash_bytes(view[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT], b)
                total -= blocks.pop(b, 0)
                if h != base[b]:
                    blocks[b] = h
                    total += h
            total &= MASK128
        return blocks, total

    def full_diff(self) -> tuple[dict[int, int], int]:
        """The same, by comparing every byte with the base (for tests of the write tracking)."""
        n = 1 << BLOCK_SHIFT
        differs = (self.data != self.base).reshape(-1, n).any(axis=1)
        blocks = {int(b): block_hash(self.data, int(b)) for b in np.flatnonzero(differs)}
        return blocks, sum(blocks.values()) & MASK128

    def digest(self) -> bytes:
        """The memory's part of the world key, kept until a store."""
        if self._digest is None:
            self.keyed_diff()
        return self._digest

    def keyed_diff(self) -> tuple[dict[int, int], int]:
        """``diff()``, with its digest kept for ``digest()`` (one difference for both)."""
        d = self.diff()
        self._digest = d[1].to_bytes(16, "little")
        return d

    # -- access recording --
    # -- what the kernel's TLB fill asks (Kernel.tlb_fill): were these tables stored into? --
    def stored_in(self, ranges) -> bool:
        """Whether a store touched any ``[lo, hi)`` of ``ranges`` since ``forget_stores``."""
        fresh = self.fresh
        return bool(fresh) and any(b in fresh for lo, hi in ranges
                                   for b in range(lo >> BLOCK_SHIFT, ((hi - 1) >> BLOCK_SHIFT) + 1))

    def note_reads(self, ranges) -> None:
        """Count the ``[lo, hi)`` byte ranges of ``ranges`` as read when reads are recorded:
        the TLB fill's walks read the tables through raw views (``Kernel._walk``)."""
        if self.rec is not None:
            r = self.rec[0]
            for lo, hi in ranges:
                r.update(range(lo >> 3, (hi + 7) >> 3))

    def forget_stores(self) -> None:
        self.fresh.clear()

    def _w(self, addr: int, n: int) -> None:
        self._digest = None
        blocks = range(addr >> BLOCK_SHIFT, ((addr + n - 1) >> BLOCK_SHIFT) + 1)
        self.written.update(blocks)
        self.fresh.update(blocks)
        if self.rec is not None:
            self.rec[1].update(range(addr >> 3, (addr + n + 7) >> 3))

    def read(self, addr, length):
        if self.rec is not None:
            self.rec[0].update(range(addr >> 3, (addr + length + 7) >> 3))
        return super().read(addr, length)

    def write(self, addr, data):
        self._w(addr, len(data))
        return super().write(addr, data)

    def fill(self, addr, length, byte):
        self._w(addr, length)
        return super().fill(addr, length, byte)

    def read_u64(self, addr):
        if self.rec is not None:
            self.rec[0].add(addr >> 3)
        if addr & 7 or addr < 0 or addr + 8 > self.size:
            return PhysicalMemory.read_u64(self, addr)      # its unaligned read or its error
        return _U64.unpack_from(self.view, addr)[0]

    def write_u64(self, addr, value):
        self._digest = None
        self.written.add(addr >> BLOCK_SHIFT)
        self.fresh.add(addr >> BLOCK_SHIFT)
        if self.rec is not None:
            self.rec[1].add(addr >> 3)
        return super().write_u64(addr, value)

    def read_u32(self, addr):
        if self.rec is not None:
            self.rec[0].add(addr >> 3)
        if addr & 3 or addr < 0 or addr + 4 > self.size:
            return PhysicalMemory.read_u32(self, addr)
        return _U32.unpack_from(self.view, addr)[0]

    def write_u32(self, addr, value):
        self._digest = None
        self.written.add(addr >> BLOCK_SHIFT)
        self.fresh.add(addr >> BLOCK_SHIFT)
        if self.rec is not None:
            self.rec[1].add(addr >> 3)
        return super().write_u32(addr, value)

    def table(self, origin, entries):
        # A view may be read or written: count it as both.
        if self.rec is not None:
            self.rec[0].update(range(origin >> 3, (origin >> 3) + entries))
        self._w(origin, entries * 8)
        return super().table(origin, entries)


class Scratch:
    """Two storages per process, reused for every world: ``P`` holds the world being
    expanded, ``C`` its successor being computed; both are moved between worlds by
    rewriting only the blocks that differ, never by copying the whole storage.  Block
    contents are kept by hash, compressed for freezing (``packed``) and plain for
    thawing (``plain``), so a block seen before is neither compressed nor inflated again."""

    CACHE = 200_000         # blocks kept per cache before it is emptied (memory bound)

    def __init__(self, ctx):
        self.ctx = ctx
        self.P = self._make()
        self.C = self._make()
        self.sent: set[bytes] = set()     # keys of worlds this process already returned
        self.forms: dict[int, tuple] = {}  # id(cpu) -> Cpu.frozen() form, of the world thawed last
        self.known: dict[int, bytes] | None = None  # id(cpu) -> its cpu_key, of the same world
        self.packed: dict[int, bytes] = {}
        self.plain: dict[int, bytes] = {}
        self.base_view = memoryview(ctx.base_bytes)

    def _make(self) -> Machine:
        mem = ExploreMemory(self.ctx.size, _data=self.ctx.base_bytes.copy(), base=self.ctx.base_bytes,
                            hashes=self.ctx.hashes)
        m = Machine(mem=mem)
        m.swapper_pg_dir = self.ctx.swapper
        return m

    def pack(self, view: memoryview, b: int, h: int) -> bytes:
        """Block ``b`` of storage ``view`` (whose hash is ``h``), compressed."""
        z = self.packed.get(h)
        if z is None:
            if len(self.packed) > self.CACHE:
                self.packed.clear()
            z = self.packed[h] = zlib.compress(view[_block(b)], 1)
        return z

    def unpack(self, h: int, z: bytes) -> bytes:
        raw = self.plain.get(h)
        if raw is None:
            if len(self.plain) > self.CACHE:
                self.plain.clear()
            raw = self.plain[h] = zlib.decompress(z)
        return raw

    def load(self, blocks: tuple, total: int) -> None:
        """Put the frozen difference ``blocks`` (``(block, hash, packed)`` each) on both storages.

        Both hold the world loaded last (``reset_child`` ends each expansion by making the
        child's storage its parent's again), so the blocks to rewrite are found once: those
        where the two worlds differ, and any a store wrote since."""
        new = {b: h for b, h, _z in blocks}
        old = self.P.mem.parent
        base = self.base_view
        gone = [(b, base[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT]) for b in old if b not in new]
        came = [(b, self.unpack(h, z)) for b, h, z in blocks if old.get(b) != h]
        for m in (self.P, self.C):
            mem = m.mem
            view = mem.view
            for b, raw in gone:
                view[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT] = raw
            for b, raw in came:
                view[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT] = raw
            if mem.written:             # stored into since it was loaded: rewrite those too
                packed = {b: (h, z) for b, h, z in blocks}
                for b in mem.written:
                    hz = packed.get(b)
                    view[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT] = (
                        self.unpack(*hz) if hz is not None else base[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT])
            mem.written = set()
            mem.parent = new
            mem.psum = total
            mem._digest = None

    def reset_child(self) -> None:
        mem = self.C.mem
        if mem.written:
            src, dst = self.P.mem.view, mem.view
            for b in mem.written:
                dst[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT] = src[b << BLOCK_SHIFT:(b + 1) << BLOCK_SHIFT]
            mem.written = set()
        mem.rec = None
        mem._digest = None


@dataclass
class World:
    """A kernel plus the generator's state (all of it hashable).

    ``owned``: which of the kernel's CPUs this world may change in place; None for all
    of them.  A world cloned from another (``clone_onto``) shares the other CPUs with it
    until one is about to move (``own_cpu``)."""

    k: Kernel
    gen: tuple      # (ops_started, exit_started, lazy_left, script positions)
    owned: set | None = None
    keyed: tuple | None = None      # the CPU keys (cpu_key) its last world_key was made of


# -- freezing worlds (compact, picklable) -----------------------------------------------------------

def freeze(w: World, diff: tuple | None = None, scratch: Scratch | None = None) -> bytes:
    """The world as bytes: the blocks where its memory differs from the setup's
    (compressed), the kernel's ``snapshot()`` with its CPUs as ``Cpu.frozen`` forms.
    With ``scratch``, a CPU the world still shares with the world thawed on it (the
    successors of a world share its unchanged CPUs) takes the form it was thawed from.

    marshal writes these plain containers several times faster than pickle and reads them
    back faster too; a state marshal cannot write (no step keeps one today) is pickled,
    and the first byte says which."""
    mem = w.k.mem
    blocks, total = diff if diff is not None else mem.diff()
    view = mem.view
    pack = scratch.pack if scratch is not None else lambda view, b, _h: zlib.compress(view[_block(b)], 1)
    packed = tuple((b, h, pack(view, b, h)) for b, h in sorted(blocks.items()))
    snap = w.k.snapshot()
    forms = scratch.forms if scratch is not None else {}
    cpus = tuple(forms.get(id(c)) or c.frozen() for c in snap[0])
    body = (packed, total, cpus, snap[1:], w.gen, w.keyed)
    try:
        return b"M" + marshal.dumps(body)
    except ValueError:
        return b"P" + pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)


def thaw(ctx, blob: bytes, scratch: "Scratch | None" = None) -> World:
    """A world from its frozen form; with ``scratch``, on the scratch's parent storage."""
    packed, total, cpus, rest, gen, keyed = marshal.loads(memoryview(blob)[1:]) if blob[0] == 77 else pickle.loads(blob[1:])
    if scratch is not None:
        scratch.load(packed, total)
        m = scratch.P
    else:
        data = ctx.base_bytes.copy()
        for b, _h, z in packed:
            data[_block(b)] = np.frombuffer(zlib.decompress(z), dtype=np.uint8)
        mem = ExploreMemory(ctx.size, _data=data, base=ctx.base_bytes, hashes=ctx.hashes)
        mem.parent = {b: h for b, h, _z in packed}
        mem.psum = total
        m = Machine(mem=mem)
        m.swapper_pg_dir = ctx.swapper
    objs = [thawed(c) for c in cpus]
    if scratch is not None:
        # The CPU objects stay alive while this world is expanded, so their ids are theirs.
        scratch.forms = {id(o): c for o, c in zip(objs, cpus)}
        scratch.known = {id(o): st for o, st in zip(objs, keyed)} if keyed is not None else None
    return World(Kernel.restore(ctx.template, (objs,) + rest, m), gen)


def clone_onto(w: World, machine: Machine) -> World:
    """A copy of ``w``'s Python-side state on ``machine`` (whose storage must equal w's).

    The CPUs are shared with ``w`` until one is about to change (``own_cpu``): a transition
    moves one CPU, so copying the others (their whole call stacks) would be wasted."""
    return World(w.k.copy(machine, share_cpus=True), w.gen, set())


def own_cpu(w: World, cpu: int) -> None:
    """Copy ``cpu``'s state before it changes, if ``w`` still shares it (``clone_onto``)."""
    owned = w.owned
    if owned is not None and cpu not in owned:
        w.k.cpus[cpu] = w.k.cpus[cpu].copy()
        owned.add(cpu)


def copy_world(w: World) -> World:
    """An independent copy of ``w`` (memory and every CPU copied)."""
    return World(w.k.copy(), w.gen)


# The parts of the kernel's key that the symmetry reduction leaves as they are (a part
# that Kernel.key() adds lands here); lock_usage is the budget, kept apart.
_other_parts = attrgetter(*(f for f in KernelKey._fields if f not in ("memory", "cpus", "locks", "lock_usage")))


def world_key(w: World, symmetric: bool = False, diff: tuple | None = None, live: bool = True,
              known: dict | None = None) -> bytes:
    """The visited-state key.  With ``live``, the running functions' dead locals are
    left out (``pgalloc.liveness``: no later step reads them, so the futures are the
    same).  With ``symmetric`` (generated mode, where CPUs are interchangeable) the
    world is keyed with its CPUs renumbered in a canonical order (sorted by their
    state): the only places a CPU's number appears are its slot in ``k.cpus``, the
    holder of each held lock, and the held lock's word in memory (``~cpu``), and all
    three are renumbered, so two worlds that differ by a permutation of CPUs get one
    key (their futures are the same, permuted).  ``known``: the ``cpu_key`` of CPU objects
    keyed before (``Kernel.key``)."""
    k = w.k
    kk = k.key(live, known, lambda c: cpu_key(c, live))
    w.keyed = kk.cpus       # frozen with the world: its successors' keys start from them
    memory, cpus, locks = kk.memory, kk.cpus, kk.locks
    if symmetric:
        order = sorted(range(len(cpus)), key=lambda i: cpus[i])
        new = {old: n for n, old in enumerate(order)}
        if k.locks and any(new[c] != c for c in new):
            blocks, total = diff if diff is not None else k.mem.diff()
            patched: dict[int, np.ndarray] = {}
            for addr, (cpu, *_rest) in k.locks.items():
                b = addr >> BLOCK_SHIFT
                if b not in patched:
                    patched[b] = k.mem.data[_block(b)].copy()
                off = addr & ((1 << BLOCK_SHIFT) - 1)
                patched[b][off:off + 4] = np.frombuffer((~new[cpu] & 0xFFFFFFFF).to_bytes(4, "big"), np.uint8)
            for b, content in patched.items():
                h = _hash_bytes(content, b)
                total -= blocks.get(b, 0)
                if h != k.mem.hashes[b]:
                    total += h
            memory = (total & MASK128).to_bytes(16, "little")
            locks = tuple(sorted((a, (new[h[0]],) + tuple(h[1:])) for a, h in k.locks.items()))
        cpus = tuple(cpus[i] for i in order)
    # The budget (operations started, lockdep usage bits) goes last, outside the digest,
    # so that the search can see one world subsume another (``subsumes``).
    base = _digest(_canonical(((memory, cpus, locks, _other_parts(kk)), w.gen[1:])))
    return base + bytes([w.gen[0]]) + b"".join(a.to_bytes(8, "big") + bytes([bits]) for a, bits in kk.lock_usage)


def cpu_key(cpu, live: bool = True) -> bytes:
    """A CPU's part of the world key: a 128-bit digest of its state (``Cpu.state``).
    A successor shares the CPUs its transition did not move, so each is keyed once per
    world expanded; the digest keeps the world key's own hashing short, and is what a
    frozen world carries for its successors (``World.keyed``)."""
    return _digest(_canonical(cpu.state(live)))


def _canonical(obj) -> bytes:
    """``obj`` (tuples of ints, strings and bytes) as bytes that depend only on its value.
    marshal's format 2 writes no back references (format 3 added them: an object met twice
    would be written as one, so two equal keys could differ by which of their parts happen
    to be one object), and it is about twice as fast as a pickler without its memo."""
    try:
        return marshal.dumps(obj, 2)
    except ValueError:      # a value marshal cannot write (no step keeps one today)
        f = io.BytesIO()
        p = pickle.Pickler(f, pickle.HIGHEST_PROTOCOL)
        p.fast = True           # no memo, so no back references
        p.dump(obj)
        return b"P" + f.getvalue()


def _usage(key: bytes) -> dict[int, int]:
    return {int.from_bytes(key[i:i + 8], "big"): key[i + 8] for i in range(17, len(key), 9)}


def subsumes(a: bytes, b: bytes) -> bool:
    """Whether world key ``a`` subsumes ``b``: the same world but for its budget, with no
    more operations started and every lockdep usage bit of ``b`` already set.  Whatever
    ``b`` can still do, ``a`` can do too (more operations are left), and every step that
    breaks a lockdep rule from ``b`` breaks it from ``a`` (usage bits only accumulate)."""
    if a[16] > b[16]:
        return False
    ua = _usage(a)
    return all(ua.get(addr, 0) & bits == bits for addr, bits in _usage(b).items())
