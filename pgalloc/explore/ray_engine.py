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

With ``checkpoint`` (``explore --checkpoint DIR``) the driver writes the local search's
checkpoint (``checkpoint.Writer``, the same files) at each level's end: each owner hands
it what the level added to its part of the visited set (``Owner.checkpoint_part``: the
keys with their state ids, and its frontier worlds with their sleep sets; only the
worlds entering the next frontier have a new or narrower sleep set), which the driver
writes as the level's part and head without keeping it.  ``resume`` (a ``Level``
loaded from any engine's checkpoint, at any number of actors) is partitioned anew over
this run's owners (``Owner.load``).  An actor that dies ends the search with ``cut``
"worker-died", as a dead worker process ends the local one: the checkpoint holds the
last level's end.
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
from .checkpoint import Level, Writer
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
    sleep]).  With ``record`` (a checkpointed search) it also keeps the keys it added to
    its visited set since the last ``checkpoint_part`` (``added``: ``(key, handle, new)``)."""

    def __init__(self, setup: Setup, version_file: str | None, n: int, record: bool = False):
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
        self.added: list | None = [] if record else None

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
        if self.added is not None:
            self.added.append((key, h, True))
        self.sleeps[h] = sl
        self.nxt[h] = [blob, sl]
        return h

    def load(self, entries: list, sleeps: dict, frontier: list) -> list:
        """Own the part of a loaded checkpoint that hashes here: ``entries``, its visited
        keys ``(key, state id)`` in the checkpoint's order (a state's own key before the
        keys it subsumed), ``sleeps`` their states' sleep sets, ``frontier`` its frontier
        worlds ``(pos, state id, blob, sleep)``; their ``(handle, pos, state id)``."""
        handles: dict[int, int] = {}
        for key, gid in entries:
            h = handles.get(gid)
            if h is None:
                h = handles[gid] = len(self.gids)
                self.gids.append(gid)
                if self.subsume:
                    self.variants.setdefault(key[:16], []).append((key, h))
                self.sleeps[h] = sleeps.get(gid, frozenset())
            self.visited[key] = h
        placed = []
        for pos, gid, blob, sl in frontier:
            h = handles[gid]
            self.nxt[h] = [blob, sl]
            placed.append((h, pos, gid))
        return placed

    def checkpoint_part(self, placed: list) -> tuple:
        """What this owner adds to the level's checkpoint, ``placed`` its next frontier
        worlds (``(handle, pos, gid)``, as the next ``expand_level`` gets them): the keys
        added since the last call ``[(key, state id, new)]`` (``new``: the key the state
        was created with) and the frontier worlds ``[(pos, blob, sleep)]``."""
        for h, _, gid in placed:
            self.gids[h] = gid
        added, self.added = self.added, []
        return ([(key, self.gids[h], new) for key, h, new in added],
                [(pos, *self.nxt[h]) for h, pos, _ in placed])

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
            succ, bound_hit, started, dups = expand(self.ctx, blob, sl)
            bound = bound or bound_hit
            begun.update(started)
            count += len(succ) + dups
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
        A successor its sender handed to the search before (``expand``'s ``Scratch.sent``)
        is not sent again: it was merged here at an earlier level or position."""
        out = []
        for pos, i, t, key, blob, sl in sorted((c for b in buckets for c in b), key=lambda c: (c[0], c[1])):
            h = self.visited.get(key)
            if h is None and self.subsume:
                for other, oh in self.variants.get(key[:16], ()):
                    if subsumes(other, key):
                        h = self.visited[key] = oh
                        if self.added is not None:
                            self.added.append((key, h, False))
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


def mute_raylet_errors() -> None:
    """Drop the error messages Ray's driver prints on stdout for the raylet (an actor that
    died: "A worker died or was killed ..."): this engine reports that itself, in one line
    on stderr, and stdout carries ``--json``.  Ray's own printer (``print_to_stdstream``,
    not a public API: a Ray without it is left as it is) is wrapped once."""
    w = getattr(getattr(ray, "_private", None), "worker", None)
    show = getattr(w, "print_to_stdstream", None)
    if show is None or getattr(show, "muted", False):
        return

    def muted(data, *args, **kw):
        if data.get("pid") != "raylet":
            show(data, *args, **kw)
    muted.muted = True
    w.print_to_stdstream = muted


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
    mute_raylet_errors()
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


# What an actor's death looks like to the driver: the actor's own calls fail, and so do
# those that wait for the objects it returned.
ACTOR_LOST = () if ray is None else (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                                     ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)


def partition(lv: Level, n: int) -> list[tuple]:
    """A loaded checkpoint's search split over ``n`` owners: for each, the arguments of
    its ``Owner.load`` (its visited keys in the checkpoint's order, their sleep sets,
    its frontier worlds with their global positions)."""
    where = [-1] * len(lv.parents)          # state id -> owner
    entries: list[list] = [[] for _ in range(n)]
    sleeps: list[dict] = [{} for _ in range(n)]
    for key, gid in lv.visited.items():
        j = owner_of(key, n)
        entries[j].append((key, gid))
        if where[gid] < 0:
            where[gid] = j
            sleeps[j][gid] = lv.sleeps.get(gid, frozenset())
    front: list[list] = [[] for _ in range(n)]
    for pos, (gid, blob, sl) in enumerate(lv.frontier):
        front[where[gid]].append((pos, gid, blob, sl))
    return list(zip(entries, sleeps, front))


def explore(setup: Setup, *, workers: int = 1, progress: Callable[[int, int, int], None] | None = None,
            first_only: bool = False, address: str | None = None, checkpoint: str | None = None,
            resume: Level | None = None) -> Result:
    """``search.explore``'s search, with ``workers`` Ray actors owning the states (a
    local Ray, or the cluster at ``address``): the same ``Result``, ``engine`` "ray".
    ``checkpoint`` and ``resume`` as there (the same checkpoint files: see the module's
    docstring).  ``RayUnavailable`` without Ray, ``RayClusterError`` when the cluster
    fails; an actor that dies is the cut "worker-died"."""
    t0 = time.perf_counter()
    res = Result(setup, workers=workers, engine="ray")
    built = build_or_cut(res, t0)
    if built is None:
        return res
    ctx, w0 = built
    root_key = world_key(w0, setup.symmetric, live=setup.dead_locals)
    if resume is None:
        lv = Level(depth=0, frontier=[], visited={}, sleeps={}, parents=[(-1, None)], variants={}, kinds={},
                   begun=set())
        frontier = [0]                  # the frontier: each state's id in global order
    else:
        lv = resume
        res.resumed_depth = lv.depth
        frontier = [gid for gid, _, _ in lv.frontier]
    parents: list[tuple] = lv.parents
    kinds: dict[tuple, Finding] = lv.kinds
    begun: set[tuple] = lv.begun
    depth = res.depth = lv.depth
    res.transitions, res.ops_bound_reached = lv.transitions, lv.ops_bound_reached
    before = lv.seconds                 # the earlier runs' time
    writer = Writer(checkpoint, setup, lv, engine="ray", actors=workers) if checkpoint is not None else None
    if resume is not None:
        res.cut = level_cut(setup, frontier, len(parents), kinds, first_only, t0)
        if not frontier or res.cut:     # nothing left to search: no Ray needed
            return finish(res, ctx, w0, kinds, begun, len(parents), before + time.perf_counter() - t0)
    started = connect(workers, address)
    module = VERSIONS[setup.version]
    version_file = getattr(module, "__file__", None) if module.__name__.startswith("pgalloc_patch_") else None
    actor = ray.remote(num_cpus=1)(Owner)
    owners: list = []

    def save(placed: list) -> None:
        """Write this level's end to the checkpoint: the owners' parts, in global order."""
        created, subsumed, front = [], [], []
        for added, fr in wait([o.checkpoint_part.remote(p) for o, p in zip(owners, placed)]):
            for key, gid, new in added:
                (created if new else subsumed).append((key, gid))
            front += fr
        if len(created) != len(parents) - writer.saved_states:
            raise RuntimeError("the owners' new keys are not the search's new states")
        created.sort(key=lambda kg: kg[1])
        front.sort(key=lambda f: f[0])
        lv.frontier = [(frontier[pos], blob, sl) for pos, blob, sl in front]
        sleeps = {gid: sl for gid, _, sl in lv.frontier}    # every new or narrower sleep set
        if not writer.parts:
            sleeps.setdefault(0, frozenset())               # the root's, in the first part
        lv.depth, lv.transitions, lv.ops_bound_reached = depth, res.transitions, res.ops_bound_reached
        lv.seconds = before + time.perf_counter() - t0
        writer.save(lv, (created + subsumed, sleeps))       # a new state's key before those it subsumed
        lv.frontier = []

    try:
        owners += [actor.options(scheduling_strategy="SPREAD").remote(setup, version_file, workers,
                                                                      writer is not None)
                   for _ in range(workers)]
        if resume is None:
            root = owner_of(root_key, workers)
            wait([owners[root].seed.remote(root_key, freeze(w0))])
            placed: list[list] = [[] for _ in range(workers)]
            placed[root].append((0, 0, 0))
        else:
            placed = wait([o.load.remote(*part) for o, part in zip(owners, partition(lv, workers))])
            lv.visited, lv.sleeps, lv.variants, lv.frontier = {}, {}, {}, []    # the owners hold them now
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
            if writer is not None:
                save(placed)
            res.cut = level_cut(setup, frontier, len(parents), kinds, first_only, t0)
    except KeyboardInterrupt:
        res.cut = "interrupted"
    except ACTOR_LOST:                  # killed, out of memory, its machine lost: as a dead worker process
        res.cut = "worker-died"
    except ray.exceptions.RayError as e:
        raise RayClusterError(f"the search failed on the Ray cluster: {str(e).splitlines()[0]}") from None
    finally:
        for o in owners:
            if res.cut in ("interrupted", "worker-died") or sys.exc_info()[0] is not None:
                ray.kill(o)                 # its queued work is not wanted
            else:
                o.__ray_terminate__.remote()    # an exit after its last call, without a kill signal
        if started:
            ray.shutdown()
    return finish(res, ctx, w0, kinds, begun, len(parents), before + time.perf_counter() - t0)
