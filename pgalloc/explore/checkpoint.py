"""A search written to a directory at each BFS level's end, so that a killed search
resumes there (issue 16, ``explore --checkpoint DIR``).

A checkpoint is a manifest and the data files it names, in DIR:

* ``checkpoint.json``, the manifest: ``format`` (``FORMAT``, the number of this layout;
  a reader refuses any other), what wrote it (``s390emu`` version, ``code``: a hash of the
  ``pgalloc`` sources and of the version file, on which world keys depend), the search
  (``setup``: every ``Setup`` field that shapes the state space, ``SEARCH_FIELDS``),
  where it stands (``depth``, ``states``, ``frontier``, ``findings``), its data files
  with their SHA-256: ``parts`` and ``head``, and which engine wrote it (``engine``:
  "local" or "ray", and with "ray" ``actors``, how many; either engine resumes either's
  checkpoint with any number of workers: the files are the same);
* ``part-<depth>.pickle``, one per level: what that level added to the visited set (keys
  and state numbers), the parents and transitions of its new states, their sleep sets
  (with ``--sleep-sets``, every sleep set: the search narrows old ones too).  Parts are
  written once, so a level costs what it added, not the whole search;
* ``head-<depth>.pickle``: the rest, as the level's end leaves it: the frontier (frozen
  worlds), the findings so far with their shortest transitions, the counters.

Each file is written under a temporary name and renamed into place, the data files before
the manifest that names them, and files the manifest no longer names are removed only
after it: a kill at any moment leaves the previous checkpoint whole.  A checkpoint is
trusted like a version file: its pickles are loaded as they are (load only checkpoints
you wrote).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
import re
import sys
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PgallocError
from ..registry import VERSIONS
from .setup import Setup

FORMAT = 1
MANIFEST = "checkpoint.json"
_DATA = re.compile(r"(part|head)-\d+\.pickle")
_TMP = ".tmp"

# The ``Setup`` fields that shape the states, keys and findings: a checkpoint resumes only
# a search equal in all of them.  The bounds checked at a level's end (``max_steps``,
# ``max_states``, ``max_seconds``) may differ: a search cut by one resumes with a larger one.
SEARCH_FIELDS = ("version", "cpus", "max_ops", "pages", "free_halves", "lazy_refs", "pgste", "vocabulary",
                 "script", "sleep_sets", "symmetry", "eager_gp", "movers", "subsumption", "local_steps",
                 "dead_locals", "quiescent_checks", "walkers")


class CheckpointError(PgallocError):
    """DIR holds something this search must not resume nor overwrite: a checkpoint of
    another search, of another format or code, or files that are no checkpoint's."""


class CheckpointFileError(PgallocError):
    """A checkpoint that cannot be read: a missing or corrupt file, an I/O error."""


@dataclass
class Level:
    """The search at a BFS level's end: everything ``explore`` needs to go on as if it
    had never stopped."""

    depth: int
    frontier: list                  # [(cid, frozen world, sleep set)], in expansion order
    visited: dict                   # key -> cid
    sleeps: dict                    # cid -> sleep set
    parents: list                   # cid -> (parent cid, transition)
    variants: dict                  # key[:16] -> [(key, cid)] (subsumption)
    kinds: dict                     # Finding.key -> Finding (its shortest transitions)
    begun: set                      # (cpu, position) of the scenario operations started
    transitions: int = 0
    ops_bound_reached: bool = False
    seconds: float = 0.0            # the search's time so far, over every run
    parts: list = field(default_factory=list)   # the manifest's parts written so far


def search_identity(setup: Setup) -> dict:
    """The setup as a checkpoint records it: ``SEARCH_FIELDS`` (tuples as lists, as JSON has them)."""
    return json.loads(json.dumps({f: getattr(setup, f) for f in SEARCH_FIELDS}))


def code_identity(setup: Setup) -> str:
    """A hash of the code the world keys depend on: the ``pgalloc`` sources and, for a
    version file, that file (the built-in versions are among the sources)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.rglob("*.py"))
    vfile = getattr(VERSIONS.get(setup.version), "__file__", None)
    if vfile and Path(vfile).resolve() not in files:
        files.append(Path(vfile).resolve())
    for f in files:
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f.name).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def _manifest(directory: Path) -> dict | None:
    path = directory / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointFileError(f"{path}: {e.strerror or e}") from None
    try:
        man = json.loads(text)
    except ValueError as e:
        raise CheckpointFileError(f"{path}: not a checkpoint manifest ({e})") from None
    if not isinstance(man, dict) or "format" not in man:
        raise CheckpointFileError(f"{path}: not a checkpoint manifest (no format number)")
    return man


def check_directory(directory: str | os.PathLike, setup: Setup, restart: bool = False) -> dict | None:
    """Whether ``directory`` may hold this search's checkpoint: its manifest when it holds
    one of this very search (to resume), ``None`` when it holds none (missing, empty, or
    only a first checkpoint's leftovers; with ``restart``: whatever checkpoint it holds).
    ``CheckpointError`` when it holds another search's, another format's or files that
    are not a checkpoint's."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d} is not a directory")
    if not d.exists():
        return None
    man = _manifest(d)
    others = sorted(p.name for p in d.iterdir() if p.name != MANIFEST and not _DATA.fullmatch(p.name)
                    and not p.name.endswith(_TMP))
    if others:
        raise CheckpointError(f"{d} holds files that are not a checkpoint's ({', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}); give an empty or new directory")
    if man is None or restart:
        return None
    if man["format"] != FORMAT:
        raise CheckpointError(f"{d}: checkpoint format {man['format']!r}, this s390emu reads format {FORMAT} "
                              "only (--restart replaces it)")
    mine = search_identity(setup)
    if man.get("setup") != mine:
        theirs = man.get("setup") or {}
        diff = [f"{f} {theirs.get(f)!r} (here {mine[f]!r})" for f in SEARCH_FIELDS if theirs.get(f) != mine[f]]
        raise CheckpointError(f"{d} holds a checkpoint of another search: {'; '.join(diff) or 'another setup'} "
                              "(--restart replaces it)")
    if man.get("code") != code_identity(setup):
        raise CheckpointError(f"{d} holds a checkpoint written by other code (s390emu {man.get('s390emu')}, "
                              "another pgalloc or version file): its keys would not match (--restart replaces it)")
    return man


def _read(directory: Path, entry) -> object:
    """The pickle a manifest entry ``{"file", "sha256"}`` names, checked against its hash."""
    name = str(entry.get("file", "")) if isinstance(entry, dict) else ""
    if not _DATA.fullmatch(name):
        raise CheckpointFileError(f"{directory / MANIFEST}: names no data file ({entry!r})")
    path = directory / name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointFileError(f"{path}: {e.strerror or e}") from None
    if hashlib.sha256(raw).hexdigest() != entry.get("sha256"):
        raise CheckpointFileError(f"{path}: does not match its manifest's SHA-256 (a damaged checkpoint)")
    try:
        return pickle.loads(raw)
    except Exception as e:          # noqa: BLE001 - whatever a bad pickle raises is a damaged file
        raise CheckpointFileError(f"{path}: not a checkpoint's data ({type(e).__name__})") from None


def load(directory: str | os.PathLike, man: dict) -> Level:
    """The search the manifest ``man`` (from ``check_directory``) names."""
    d = Path(directory)
    visited: dict = {}
    sleeps: dict = {}
    parents: list = []
    variants: dict = {}
    parts = man.get("parts")
    if not isinstance(parts, list) or not parts:
        raise CheckpointFileError(f"{d / MANIFEST}: names no parts")
    for entry in parts:
        try:
            first, new_parents, new_keys, new_sleeps = _read(d, entry)
        except (TypeError, ValueError):
            raise CheckpointFileError(f"{d / entry['file']}: not a level's part") from None
        if first != len(parents):
            raise CheckpointFileError(f"{d / entry['file']}: starts at state {first}, not {len(parents)}")
        parents += new_parents
        visited.update(new_keys)
        sleeps.update(new_sleeps)
    created = 0                     # subsumption's variants: the key each state was created with
    for key, cid in visited.items():
        if cid == created:
            variants.setdefault(key[:16], []).append((key, cid))
            created += 1
    head = _read(d, man.get("head"))
    try:
        return Level(visited=visited, sleeps=sleeps, parents=parents, variants=variants, parts=list(parts), **head)
    except TypeError:
        raise CheckpointFileError(f"{d / man['head']['file']}: holds no search level") from None


class _Hashing:
    """A file that hashes what is written to it."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b) -> int:
        self.h.update(b)
        return self.f.write(b)


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)
    if hasattr(os, "O_DIRECTORY"):          # the rename itself survives a crash of the machine
        fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(d: Path, name: str, obj) -> dict:
    """Pickle ``obj`` to DIR/name (under a temporary name, then renamed); its manifest entry."""
    tmp = d / (name + _TMP)
    with open(tmp, "wb") as f:
        hf = _Hashing(f)
        pickle.Pickler(hf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        f.flush()
        os.fsync(f.fileno())
    _replace(tmp, d / name)
    return {"file": name, "sha256": hf.h.hexdigest()}


class Writer:
    """Writes one search's checkpoints to a directory, each level's part once: it knows
    how much of the visited set and parents the parts hold already (none for a new
    search, all of a resumed ``Level``'s)."""

    def __init__(self, directory: str | os.PathLike, setup: Setup, level: Level, engine: str = "local",
                 actors: int | None = None):
        self.d = Path(directory)
        self.setup = setup
        self.code = code_identity(setup)
        self.engine, self.actors = engine, actors
        self.parts = list(level.parts)
        self.saved_states = len(level.parents) if level.parts else 0
        self.saved_keys = len(level.visited) if level.parts else 0

    def save(self, level: Level, added: tuple | None = None) -> None:
        """Write ``level``'s checkpoint, atomically (see the module's docstring).  An I/O
        error is a ``CheckpointFileError``.

        ``added`` is ``(new keys, new sleeps)`` when the caller knows what the level added
        (the ray engine, whose visited set is on its actors: ``level.visited`` and
        ``level.sleeps`` are then not read): the keys ``[(key, cid)]`` the level added to
        the visited set, each new state's own key before any key subsumed by it, and the
        sleep set of every state whose sleep set is new or narrower."""
        try:
            if added is None:
                self._save(level)           # the local search's call, as it always was
            else:
                self._save(level, added)
        except OSError as e:
            raise CheckpointFileError(f"{self.d}: cannot write the checkpoint: {e.strerror or e}") from None

    def _save(self, level: Level, added: tuple | None = None) -> None:
        d = self.d
        d.mkdir(parents=True, exist_ok=True)
        if not self.parts:                  # a new search (--restart): the old checkpoint goes first
            (d / MANIFEST).unlink(missing_ok=True)
        if added is not None:
            new_keys, new_sleeps = added
        else:
            new_keys = list(itertools.islice(level.visited.items(), self.saved_keys, None))   # dicts keep order
            if self.setup.sleep_sets:       # old states' sleep sets narrow too
                new_sleeps = level.sleeps
            else:
                new_sleeps = {cid: level.sleeps[cid] for cid in range(self.saved_states, len(level.parents))}
        part = (self.saved_states, level.parents[self.saved_states:], new_keys, new_sleeps)
        parts = self.parts + [_write(d, f"part-{level.depth:05d}.pickle", part)]
        head = {"depth": level.depth, "frontier": level.frontier, "kinds": level.kinds, "begun": level.begun,
                "transitions": level.transitions, "ops_bound_reached": level.ops_bound_reached,
                "seconds": level.seconds}
        head_entry = _write(d, f"head-{level.depth:05d}.pickle", head)
        man = {"format": FORMAT, "s390emu": _version(), "python": sys.version.split()[0], "code": self.code,
               "setup": search_identity(self.setup), "depth": level.depth, "states": len(level.parents),
               "frontier": len(level.frontier), "findings": len(level.kinds), "transitions": level.transitions,
               "parts": parts, "head": head_entry, "engine": self.engine}
        if self.actors is not None:
            man["actors"] = self.actors
        mtmp = d / (MANIFEST + _TMP)
        with open(mtmp, "w") as f:
            json.dump(man, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _replace(mtmp, d / MANIFEST)
        self.parts, self.saved_states, self.saved_keys = parts, len(level.parents), self.saved_keys + len(new_keys)
        named = {e["file"] for e in parts} | {head_entry["file"]}
        for p in d.iterdir():               # what the manifest no longer names
            if p.name not in named and (_DATA.fullmatch(p.name) or p.name.endswith(_TMP)):
                p.unlink(missing_ok=True)


def _version() -> str:
    try:
        return metadata.version("s390emu")
    except Exception:               # noqa: BLE001 - not installed: the source tree's own
        return "unknown"


__all__ = ["FORMAT", "MANIFEST", "SEARCH_FIELDS", "CheckpointError", "CheckpointFileError", "Level", "Writer",
           "check_directory", "code_identity", "load", "search_identity"]
