"""The explorer's worlds: a ``Kernel`` plus the generator's state, on storage that keys
and freezes itself as its difference to the setup's memory.

``ExploreMemory`` records the doublewords every store writes, so a world's difference to
the setup is computed over what changed, never by comparing or copying the whole
storage; ``Scratch`` moves two such storages from world to world by rewriting only the
words that differ.  ``freeze``/``thaw`` turn a world into compact bytes (the difference
as runs, the Python state pickled) and back; ``clone_onto`` copies a world's Python
state, sharing its CPUs until one moves (``own_cpu``); ``world_key`` is the visited-state
key, with CPUs renumbered canonically and the budget kept apart so that ``subsumes`` can
compare it.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass

import numpy as np

from s390emu.machine import Machine
from s390emu.memory import PhysicalMemory

from .kernel import Cpu, Kernel
from .steps import Path


# -- memory that keys and freezes itself as a difference to the setup ------------------------------

def diff_digest(idx: np.ndarray, vals: np.ndarray) -> bytes:
    """The hash of a memory difference (word indices and their values)."""
    return hashlib.blake2b(idx.tobytes() + vals.tobytes(), digest_size=16).digest()


class ExploreMemory(PhysicalMemory):
    """Storage that keys and freezes itself as its difference to a base image (the setup).

    Every store records the doublewords it writes (``written``), so the difference is
    computed over ``parent`` (the words where the parent world differed) plus
    ``written`` instead of over the whole storage.  ``rec`` optionally records the words
    read as well (the sleep sets' independence relation).  Views handed out by
    ``table()`` count as read and written.
    """

    __slots__ = ("base", "rec", "written", "parent", "_digest")

    def __init__(self, size: int, *, _data: np.ndarray | None = None, base: np.ndarray | None = None):
        super().__init__(size, _data=_data)
        self.base = base
        self.rec = None
        self.written: set[int] = set()
        self.parent = np.zeros(0, dtype=np.int64)
        self._digest = None

    def copy(self) -> "ExploreMemory":
        m = ExploreMemory(self.size, _data=np.array(self.data, copy=True), base=self.base)
        m.written, m.parent = set(self.written), self.parent
        return m

    def diff(self) -> tuple[np.ndarray, np.ndarray]:
        """``(word indices, values)`` where this storage differs from the base."""
        cur = self.data.view(np.uint64)
        idx = self.parent
        if self.written:
            extra = np.fromiter(self.written, np.int64, len(self.written))
            if len(idx):
                pos = np.searchsorted(idx, extra).clip(max=len(idx) - 1)
                extra = extra[idx[pos] != extra]
            if len(extra):
                idx = np.concatenate([idx, extra])
                idx.sort()
        vals = cur[idx]
        keep = vals != self.base[idx]
        return idx[keep], vals[keep]

    def full_diff(self) -> tuple[np.ndarray, np.ndarray]:
        """The same, by comparing every word (for tests of the write tracking)."""
        cur = self.data.view(np.uint64)
        idx = np.flatnonzero(cur != self.base)
        return idx, cur[idx]

    def digest(self) -> bytes:
        """The memory's part of the world key: a hash of ``diff()``, kept until a store."""
        if self._digest is None:
            self.keyed_diff()
        return self._digest

    def keyed_diff(self) -> tuple[np.ndarray, np.ndarray]:
        """``diff()``, with its digest kept for ``digest()`` (one difference for both)."""
        idx, vals = self.diff()
        self._digest = diff_digest(idx, vals)
        return idx, vals

    # -- access recording --
    def _w(self, addr: int, n: int) -> None:
        self._digest = None
        r = range(addr >> 3, (addr + n + 7) >> 3)
        self.written.update(r)
        if self.rec is not None:
            self.rec[1].update(r)

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
        return super().read_u64(addr)

    def write_u64(self, addr, value):
        self._digest = None
        self.written.add(addr >> 3)
        if self.rec is not None:
            self.rec[1].add(addr >> 3)
        return super().write_u64(addr, value)

    def read_u32(self, addr):
        if self.rec is not None:
            self.rec[0].add(addr >> 3)
        return super().read_u32(addr)

    def write_u32(self, addr, value):
        self._digest = None
        self.written.add(addr >> 3)
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
    rewriting only the words that differ, never by copying the whole storage."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.P = self._make()
        self.C = self._make()
        self.pidx = np.zeros(0, dtype=np.int64)
        self.sent: set[bytes] = set()     # keys of worlds this process already returned

    def _make(self) -> ExploreMemory:
        mem = ExploreMemory(self.ctx.size, _data=self.ctx.base_bytes.copy(), base=self.ctx.base64)
        m = Machine(mem=mem)
        m.swapper_pg_dir = self.ctx.swapper
        return m

    def load(self, idx: np.ndarray, vals: np.ndarray) -> None:
        base = self.ctx.base64
        for m in (self.P, self.C):
            mem = m.mem
            d = mem.data.view(np.uint64)
            old = np.union1d(self.pidx, np.fromiter(mem.written, np.int64, len(mem.written))) if mem.written else self.pidx
            d[old] = base[old]
            d[idx] = vals
            mem.written = set()
            mem.parent = idx
            mem._digest = None
        self.pidx = idx

    def reset_child(self) -> None:
        mem = self.C.mem
        if mem.written:
            w = np.fromiter(mem.written, np.int64, len(mem.written))
            mem.data.view(np.uint64)[w] = self.P.mem.data.view(np.uint64)[w]
            mem.written = set()
        mem.rec = None
        mem._digest = None


@dataclass
class World:
    """A kernel plus the generator's state (all of it hashable)."""

    k: Kernel
    gen: tuple      # (ops_started, exit_started, lazy_left, script positions)


# -- freezing worlds (compact, picklable) -----------------------------------------------------------

_HEAVY = ("machine", "mem", "mem_map", "frames", "v", "trace_hook", "_owned")


def _kstate(k: Kernel) -> dict:
    d = {n: v for n, v in k.__dict__.items() if n not in _HEAVY}
    d["cur"] = None
    d["_touch"] = None
    return d


def freeze(w: World, runs: tuple | None = None) -> bytes:
    """The world as bytes: the memory difference as runs (``rle``), the Python state."""
    if runs is None:
        runs = rle(*w.k.mem.diff())
    return pickle.dumps((runs, _kstate(w.k), w.gen), protocol=pickle.HIGHEST_PROTOCOL)


def rle(idx: np.ndarray, vals: np.ndarray) -> tuple:
    """Runs of consecutive words with one value: freed frames are poisoned (0x6b...) and
    cleared tables hold one value, so a difference is a handful of runs."""
    if not len(idx):
        return (b"", b"", b"")
    brk = np.flatnonzero((np.diff(idx) != 1) | (vals[1:] != vals[:-1])) + 1
    starts = np.concatenate(([0], brk))
    lens = np.diff(np.concatenate((starts, [len(idx)])))
    return (idx[starts].astype(np.int64).tobytes(), vals[starts].tobytes(), lens.astype(np.int64).tobytes())


def unrle(r: tuple) -> tuple[np.ndarray, np.ndarray]:
    if not r[0]:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    first = np.frombuffer(r[0], dtype=np.int64)
    val = np.frombuffer(r[1], dtype=np.uint64)
    lens = np.frombuffer(r[2], dtype=np.int64)
    total = int(lens.sum())
    offs = np.repeat(np.cumsum(lens) - lens, lens)
    idx = np.repeat(first, lens) + (np.arange(total, dtype=np.int64) - offs)
    return idx, np.repeat(val, lens)


def thaw(ctx, blob: bytes, scratch: "Scratch | None" = None) -> World:
    """A world from its frozen form; with ``scratch``, on the scratch's parent storage."""
    r, kstate, gen = pickle.loads(blob)
    idx, vals = unrle(r)
    if scratch is not None:
        scratch.load(idx, vals)
        m = scratch.P
    else:
        data = ctx.base_bytes.copy()
        data.view(np.uint64)[idx] = vals
        mem = ExploreMemory(ctx.size, _data=data, base=ctx.base64)
        mem.parent = idx
        m = Machine(mem=mem)
        m.swapper_pg_dir = ctx.swapper
    k = object.__new__(Kernel)
    k.__dict__.update(ctx.template)
    k.__dict__.update(kstate)
    k.machine = m
    k._bind()
    k.trace_hook = None
    return World(k, gen)


def _copy_path(fr: Path) -> Path:
    new = object.__new__(type(fr))
    new.__dict__.update(fr.__dict__)
    return new


def _copy_cpu(c: Cpu) -> Cpu:
    """``Cpu.copy`` without ``copy.copy``'s generic machinery (hot path)."""
    new = object.__new__(Cpu)
    for slot in Cpu.__slots__:
        v = getattr(c, slot)
        setattr(new, slot, [_copy_path(f) for f in v] if isinstance(v, list) else v)
    return new


def clone_onto(w: World, machine: Machine) -> World:
    """A copy of ``w``'s Python-side state on ``machine`` (whose storage must equal w's).

    The CPUs are shared with ``w`` until one is about to change (``own_cpu``): a transition
    moves one CPU, so copying the others (their whole call stacks) would be wasted."""
    k = w.k
    k2 = object.__new__(Kernel)
    d = k2.__dict__
    for n, v in k.__dict__.items():
        if isinstance(v, (list, dict, set)):
            v = v.copy()
        d[n] = v
    k2._owned = set()
    k2.machine = machine
    k2._bind()
    return World(k2, w.gen)


def own_cpu(k: Kernel, cpu: int) -> None:
    """Copy ``cpu``'s state before it changes, if ``k`` still shares it (``clone_onto``)."""
    owned = k.__dict__.get("_owned")
    if owned is not None and cpu not in owned:
        k.cpus[cpu] = _copy_cpu(k.cpus[cpu])
        owned.add(cpu)


def copy_world(w: World) -> World:
    k = w.k.copy()
    k.__dict__.pop("_owned", None)          # the copy owns all its CPUs
    return World(k, w.gen)


def world_key(w: World, symmetric: bool = False, diff: tuple | None = None, live: bool = True) -> bytes:
    """The visited-state key.  With ``live``, the running functions' dead locals are
    left out (``pgalloc.liveness``: no later step reads them, so the futures are the
    same).  With ``symmetric`` (generated mode, where CPUs are interchangeable) the
    world is keyed with its CPUs renumbered in a canonical order (sorted by their
    state): the only places a CPU's number appears are its slot in ``k.cpus``, the
    holder of each held lock, and the held lock's word in memory (``~cpu``), and all
    three are renumbered, so two worlds that differ by a permutation of CPUs get one
    key (their futures are the same, permuted)."""
    k = w.k
    kk = k.key(live)
    if symmetric:
        states = kk[1]
        order = sorted(range(len(states)), key=lambda i: states[i])
        if k.locks and len(kk) == 8 and kk[5] == tuple(sorted(k.locks.items())):
            new = {old: n for n, old in enumerate(order)}
            if any(new[c] != c for c in new):
                idx, vals = diff if diff is not None else k.mem.diff()
                vals = vals.copy()
                for addr, (cpu, *_rest) in k.locks.items():
                    pos = int(np.searchsorted(idx, addr >> 3))
                    if pos < len(idx) and idx[pos] == addr >> 3:
                        b = bytearray(vals[pos:pos + 1].tobytes())
                        off = addr & 4
                        b[off:off + 4] = (~new[cpu] & 0xFFFFFFFF).to_bytes(4, "big")
                        vals[pos] = np.frombuffer(bytes(b), dtype=np.uint64)[0]
                digest = diff_digest(idx, vals)
                locks = tuple(sorted((a, (new[h[0]],) + tuple(h[1:])) for a, h in k.locks.items()))
                kk = (digest, tuple(states[i] for i in order)) + kk[2:5] + (locks,) + kk[6:]
        elif not k.locks:
            kk = (kk[0], tuple(states[i] for i in order)) + kk[2:]
    # The budget (operations started, lockdep usage bits) goes last, outside the digest,
    # so that the search can see one world subsume another (``subsumes``).
    usage = kk[6]
    base = hashlib.blake2b(pickle.dumps((kk[:6] + kk[7:], w.gen[1:]), protocol=pickle.HIGHEST_PROTOCOL),
                           digest_size=16).digest()
    return base + bytes([w.gen[0]]) + b"".join(a.to_bytes(8, "big") + bytes([bits]) for a, bits in usage)


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
