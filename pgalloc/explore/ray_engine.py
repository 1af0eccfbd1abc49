"""The same breadth-first search as ``search.explore``, on a Ray cluster (``explore
--engine ray``): the visited set and the frontier hash-partitioned over actors.

Actor ``i`` of ``N`` (an ``Owner``) owns the worlds whose key's first 16 bytes (the key
without the budget: ``owner_of``) hash to ``i``, so every budget variant of a world has
one owner and subsumption stays local to it.  It holds its part of the visited set (key
-> handle, sleep sets, variants) and of the frontier (the frozen worlds).  One BFS level:

1. each owner expands its frontier worlds, in the frontier's global order, and buckets
   the successors by their owner: ``(parent_pos, t_index, t, key, blob, sleep)``, with
   ``parent_pos`` the parent's position in the global frontier and ``t_index`` the
   successor's index in ``expand``'s output; the buckets go owner to owner as Ray
   object refs, never through the driver; findings go to the driver;
2. each owner merges what it was sent sorted by ``(parent_pos, t_index)`` (the order
   the local search's loop sees them in) with the local rules: exact keys, subsumption,
   sleep-set re-exploration; it returns ``(parent_pos, t_index, handle, t, gid)`` of
   each world that goes into the next frontier (``t`` for a new world, ``gid`` its
   state id for one explored again);
3. the driver merges those lists by ``(parent_pos, t_index)``: the next frontier's
   order, and each new world's state id as the local search assigns it (the count so
   far); it keeps ``parents`` (a ``(parent id, transition)`` per state, for traces) and
   tells each owner its worlds' positions and ids with the next level's expansion.

So states, transitions, depth, findings and their shortest traces equal the local
search's by construction.  The driver keeps the first finding of each kind in
``(level, parent_pos, t_index)`` order, its trace from ``parents``, and replays it.
``--checkpoint`` is not supported here (the CLI refuses it).
"""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import sys
import time
from typing import Callable

try:
    import ray
except ImportError:         # the local engine needs no Ray: this engine says so when asked
    ray = None

from ..registry import VERSIONS, load_version
from .findings import Finding
from .search import Result, build_or_cut, expand, finish, level_cut, path_to
from .setup import Setup, build
from .world import freeze, subsumes, world_key


class RayUnavailable(Exception):
    """Ray is not installed: the ray engine cannot run."""


class RayClusterError(Exception):
    """The Ray cluster cannot be reached, or has too few CPUs for the actors asked for."""


MISSING = "the ray engine needs Ray: pip install 's390emu[ray]'"


def owner_of(key: bytes, n: int) -> int:
    """The actor that owns world ``key`` of ``n``: a stable hash (never Python's
    ``hash()``, salted per process) of the key without its budget part.

    >>> owner_of(bytes(20), 1), owner_of(bytes(16) + b"abcd", 7) == owner_of(bytes(20), 7)
    (0, True)
    """
    return int.from_bytes(hashlib.blake2b(key[:16], digest_size=8).digest(), "little") % n


class Owner:
    """One actor's part of the search: the worlds it owns, visited (``visited``: key ->
    handle; ``sleeps``: handle -> sleep set; ``variants``: key[:16] -> [(key, handle)];
    ``gids``: handle -> state id) and to be expanded next (``nxt``: handle -> [blob,
    sleep])."""

    def __init__(self, setup: Setup, version_file: str | None, n: int):
        if setup.version not in VERSIONS and version_file:
            load_version(version_file)          # a patch: this process loads it too
        self.ctx, _ = build(setup)
        self.n = n
        self.subsume = setup.subsumption and not setup.sleep_sets
        self.visited: dict[bytes, int] = {}
        self.sleeps: dict[int, frozenset] = {}
        self.variants: dict[bytes, list] = {}
        self.gids: list[int] = []
        self.nxt: dict[int, list] = {}

    def seed(self, key: bytes, blob: bytes) -> int:
        """Own the root world (state 0); its handle."""
        self._new(key, blob, frozenset())
        self.gids[0] = 0
        return 0

    def _new(self, key: bytes, blob: bytes, sl: frozenset) -> int:
        h = len(self.gids)
        self.gids.append(-1)
        self.visited[key] = h
        if self.subsume:
            self.variants.setdefault(key[:16], []).append((key, h))
        self.sleeps[h] = sl
        self.nxt[h] = [blob, sl]
        return h

    def expand_level(self, placed: list) -> tuple:
        """Expand this owner's frontier worlds ``placed`` (``(handle, pos, gid)`` in
        global order): one bucket of successors per owner, then ``(transitions,
        ops bound hit, scenario operations started, findings)`` with each finding as
        ``(pos, t_index, t, finding)``, the first of its kind here."""
        buckets: list[list] = [[] for _ in range(self.n)]
        findings, seen = [], set()
        count, bound, begun = 0, False, set()
        nxt, self.nxt = self.nxt, {}
        for h, pos, gid in placed:
            self.gids[h] = gid
            blob, sl = nxt.pop(h)
            succ, bound_hit, started = expand(self.ctx, blob, sl)
            bound = bound or bound_hit
            begun.update(started)
            count += len(succ)
            for i, (t, key, b, s, fnd) in enumerate(succ):
                if fnd is not None:
                    if fnd.key not in seen:
                        seen.add(fnd.key)
                        findings.append((pos, i, t, fnd))
                else:
                    buckets[owner_of(key, self.n)].append((pos, i, t, key, b, s))
        return (*buckets, (count, bound, begun, findings))

    def merge(self, *buckets: list) -> list:
        """Merge the successors sent to this owner, in the local search's order; the
        ``(pos, t_index, handle, t, gid)`` of each world that goes into the next frontier
        (``t`` and no gid for a new one, ``gid`` and no ``t`` for one explored again).
        A successor without its frozen world is one its sender sent before (``expand``'s
        ``Scratch.sent``): always in an earlier level or position, so already merged here."""
        out = []
        for pos, i, t, key, blob, sl in sorted((c for b in buckets for c in b), key=lambda c: (c[0], c[1])):
            h = self.visited.get(key)
            if h is None and blob is None:
                raise RuntimeError("an owner skipped a world the search has not seen")
            if h is None and self.subsume:
                for other, oh in self.variants.get(key[:16], ()):
                    if subsumes(other, key):
                        h = self.visited[key] = oh
                        break
            if h is None:
                out.append((pos, i, self._new(key, blob, sl), t, None))
            elif h in self.nxt:
                # Reached again in this level: explore with the intersection.
                self.nxt[h][1] = self.sleeps[h] = self.nxt[h][1] & sl
            else:
                old = self.sleeps.get(h, frozenset())
                if not old <= sl:
                    # Seen before with a sleep set that pruned more: explore the rest.
                    self.sleeps[h] = old & sl
                    self.nxt[h] = [blob, old & sl]
                    out.append((pos, i, h, None, self.gids[h]))
        return out


def probe(address: str) -> None:
    """Refuse at once a ``HOST:PORT`` where nothing listens (``ray.init`` retries such an
    address for minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise RayClusterError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


def start(cpus: int, address: str | None = None) -> None:
    """``ray.init``, quiet: join the cluster at ``address``, or start a local Ray with
    ``cpus`` CPUs on the loopback address, without a dashboard."""
    # Ray's processes inherit an ignored SIGINT: a Ctrl-C at the terminal reaches the
    # whole process group, and only this process handles it (a cut search).
    was = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
    finally:
        signal.signal(signal.SIGINT, was)


def connect(workers: int, address: str | None) -> bool:
    """Start a quiet local Ray for ``workers`` actors, or join the cluster at ``address``;
    whether this call started it (and so shuts it down).  ``RayUnavailable``,
    ``RayClusterError``."""
    if ray is None:
        raise RayUnavailable(MISSING)
    if address:
        probe(address)
    if ray.is_initialized():
        started = False             # a Ray this process joined before (tests share one)
    else:
        try:
            start(workers, address)
        except Exception as e:      # noqa: BLE001 - whatever Ray says of the address is the message
            raise RayClusterError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        started = True
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < workers:
        if started:
            ray.shutdown()
        raise RayClusterError(f"the Ray cluster has {cpus:g} CPUs: --workers {workers} needs one per actor")
    return started


def wait(refs: list) -> list:
    """``ray.get(refs)``, waited for in short slices: a Ctrl-C is handled between two of
    Python's steps, never inside one long ``ray.get``."""
    while len(ray.wait(refs, num_returns=len(refs), timeout=0.2)[0]) < len(refs):
        pass
    return ray.get(refs)


def explore(setup: Setup, *, workers: int = 1, progress: Callable[[int, int, int], None] | None = None,
            first_only: bool = False, address: str | None = None) -> Result:
    """``search.explore``'s search, with ``workers`` Ray actors owning the states (a
    local Ray, or the cluster at ``address``): the same ``Result``, ``engine`` "ray".
    ``RayUnavailable`` without Ray, ``RayClusterError`` when the cluster fails."""
    t0 = time.perf_counter()
    res = Result(setup, workers=workers, engine="ray")
    built = build_or_cut(res, t0)
    if built is None:
        return res
    ctx, w0 = built
    started = connect(workers, address)
    module = VERSIONS[setup.version]
    version_file = getattr(module, "__file__", None) if module.__name__.startswith("pgalloc_patch_") else None
    actor = ray.remote(num_cpus=1)(Owner)
    owners: list = []
    parents: list[tuple] = [(-1, None)]
    kinds: dict[tuple, Finding] = {}
    begun: set[tuple] = set()
    depth = 0
    try:
        owners += [actor.options(scheduling_strategy="SPREAD").remote(setup, version_file, workers)
                   for _ in range(workers)]
        root_key = world_key(w0, setup.symmetric, live=setup.dead_locals)
        root = owner_of(root_key, workers)
        wait([owners[root].seed.remote(root_key, freeze(w0))])
        # The frontier: each state's id in global order, and per owner (handle, pos, id).
        frontier = [0]
        placed: list[list] = [[] for _ in range(workers)]
        placed[root].append((0, 0, 0))
        while frontier and not res.cut:
            if setup.max_steps and depth >= setup.max_steps:
                res.cut = "max-steps"
                break
            outs = [o.expand_level.options(num_returns=workers + 1).remote(p) for o, p in zip(owners, placed)]
            merged = [o.merge.remote(*[out[j] for out in outs]) for j, o in enumerate(owners)]
            summaries = wait([out[workers] for out in outs])
            found = []
            for count, bound, started_ops, fnds in summaries:
                res.transitions += count
                res.ops_bound_reached = res.ops_bound_reached or bound
                begun.update(started_ops)
                found.extend(fnds)
            for pos, i, t, fnd in sorted(found, key=lambda f: (f[0], f[1])):
                if fnd.key not in kinds:
                    fnd.transitions = path_to(parents, frontier[pos]) + [t]
                    kinds[fnd.key] = fnd
            entries = sorted(((e, j) for j, part in enumerate(wait(merged)) for e in part),
                             key=lambda ej: (ej[0][0], ej[0][1]))
            nxt, placed = [], [[] for _ in range(workers)]
            for (pos, _, h, t, gid), j in entries:
                if gid is None:
                    gid = len(parents)
                    parents.append((frontier[pos], t))
                placed[j].append((h, len(nxt), gid))
                nxt.append(gid)
            frontier = nxt
            depth += 1
            res.depth = depth
            if progress:
                progress(depth, len(parents), len(frontier))
            res.cut = level_cut(setup, frontier, len(parents), kinds, first_only, t0)
    except KeyboardInterrupt:
        res.cut = "interrupted"
    except ray.exceptions.RayError as e:    # an actor died (out of memory, a machine lost)
        raise RayClusterError(f"the search failed on the Ray cluster: {str(e).splitlines()[0]}") from None
    finally:
        for o in owners:
            if res.cut == "interrupted" or sys.exc_info()[0] is not None:
                ray.kill(o)                 # its queued work is not wanted
            else:
                o.__ray_terminate__.remote()    # an exit after its last call, without a kill signal
        if started:
            ray.shutdown()
    return finish(res, ctx, w0, kinds, begun, len(parents), time.perf_counter() - t0)
