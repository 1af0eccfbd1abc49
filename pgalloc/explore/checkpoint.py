"""A search written to a directory at each BFS level's end, so that a killed search
resumes there (issue 16, ``explore --checkpoint DIR``).

A checkpoint is two files in DIR:

* ``checkpoint.json``, the manifest: ``format`` (``FORMAT``, the number of this layout;
  a reader refuses any other), what wrote it (``s390emu`` version, ``code``: a hash of the
  ``pgalloc`` sources and of the version file, on which world keys depend), the search
  (``setup``: every ``Setup`` field that shapes the state space, ``SEARCH_FIELDS``),
  where it stands (``depth``, ``states``, ``frontier``, ``findings``) and its data file
  with that file's SHA-256;
* ``level-<depth>.pickle``: the search itself (``Level``), pickled.

Each file is written under a temporary name and renamed into place, the data file before
the manifest that names it, and the previous data file is removed only after: a kill at
any moment leaves the previous checkpoint whole.  A checkpoint is trusted like a version
file: its pickles are loaded as they are (load only checkpoints you wrote).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path

from ..errors import PgallocError
from ..registry import VERSIONS
from .setup import Setup

FORMAT = 1
MANIFEST = "checkpoint.json"
_DATA = re.compile(r"level-\d+\.pickle")
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


def load(directory: str | os.PathLike, man: dict) -> Level:
    """The search the manifest ``man`` (from ``check_directory``) names."""
    path = Path(directory) / str(man.get("data", ""))
    if not _DATA.fullmatch(path.name):
        raise CheckpointFileError(f"{Path(directory) / MANIFEST}: names no data file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointFileError(f"{path}: {e.strerror or e}") from None
    if hashlib.sha256(raw).hexdigest() != man.get("sha256"):
        raise CheckpointFileError(f"{path}: does not match its manifest's SHA-256 (a damaged checkpoint)")
    level = pickle.loads(raw)
    if not isinstance(level, Level):
        raise CheckpointFileError(f"{path}: holds no search level")
    return level


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


def save(directory: str | os.PathLike, setup: Setup, level: Level, code: str) -> None:
    """Write ``level`` as DIR's checkpoint, atomically (see the module's docstring);
    ``code`` is ``code_identity(setup)``, computed once per search.  An I/O error is a
    ``CheckpointFileError``."""
    try:
        _save(Path(directory), setup, level, code)
    except OSError as e:
        raise CheckpointFileError(f"{directory}: cannot write the checkpoint: {e.strerror or e}") from None


def _save(d: Path, setup: Setup, level: Level, code: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    name = f"level-{level.depth:05d}.pickle"
    tmp = d / (name + _TMP)
    with open(tmp, "wb") as f:
        hf = _Hashing(f)
        pickle.Pickler(hf, protocol=pickle.HIGHEST_PROTOCOL).dump(level)
        f.flush()
        os.fsync(f.fileno())
    _replace(tmp, d / name)
    man = {"format": FORMAT, "s390emu": _version(), "python": sys.version.split()[0], "code": code,
           "setup": search_identity(setup), "depth": level.depth, "states": len(level.parents),
           "frontier": len(level.frontier), "findings": len(level.kinds), "transitions": level.transitions,
           "data": name, "sha256": hf.h.hexdigest()}
    mtmp = d / (MANIFEST + _TMP)
    with open(mtmp, "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    _replace(mtmp, d / MANIFEST)
    for p in d.iterdir():                   # the previous level's data, now named by nothing
        if p.name != name and (_DATA.fullmatch(p.name) or p.name.endswith(_TMP)):
            p.unlink(missing_ok=True)


def _version() -> str:
    try:
        return metadata.version("s390emu")
    except Exception:               # noqa: BLE001 - not installed: the source tree's own
        return "unknown"


__all__ = ["FORMAT", "MANIFEST", "SEARCH_FIELDS", "CheckpointError", "CheckpointFileError", "Level",
           "check_directory", "code_identity", "load", "save", "search_identity"]
