"""The real-guest fixture: a Debian 6.1 s390x guest that tools/real_guest.py booted under
QEMU, stopped and dumped, with QEMU's own answers in truth.json (its schema:
docs/real-guest.md).

Found in $S390EMU_REAL_GUEST, else ~/.cache/s390emu/real-guest: the directory itself when
it holds a truth.json, else the one its ``latest`` file names.  Missing, the tests skip
with the command that builds it; in CI (``CI`` set) they fail instead, never a silent skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

SCHEMA = 1
ROOT = Path(__file__).resolve().parents[2]


def real_guest_tool():
    """tools/real_guest.py as a module (its drgn_program opens the guest as it did)."""
    spec = importlib.util.spec_from_file_location("real_guest", ROOT / "tools" / "real_guest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _find() -> tuple[Path | None, str]:
    base = Path(os.environ.get("S390EMU_REAL_GUEST") or Path.home() / ".cache/s390emu/real-guest")
    if (base / "truth.json").exists():
        return base, ""
    latest = base / "latest"
    if latest.exists():
        d = base / latest.read_text().strip()
        if (d / "truth.json").exists():
            return d, ""
        return None, f"{latest} names {d}, which has no truth.json"
    return None, f"no real guest in {base}"


def _ints(doc):
    """truth.json's "0x..." strings as ints (its 64-bit values are written so)."""
    if isinstance(doc, dict):
        return {k: _ints(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_ints(v) for v in doc]
    if isinstance(doc, str) and doc.startswith("0x"):
        return int(doc, 16)
    return doc


@dataclass
class RealGuest:
    """A built real guest: its directory and truth.json (hex strings made ints; the
    per-page maps as {va: absolute or None} with int keys)."""

    dir: Path
    truth: dict

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def elf(self) -> Path:
        return self.dir / self.truth["dumps"]["elf"]

    @property
    def processes(self) -> list[dict]:
        return self.truth["processes"]

    @property
    def cpus(self) -> list[dict]:
        return self.truth["cpus"]


def _load(d: Path) -> RealGuest:
    raw = json.loads((d / "truth.json").read_text())
    if raw.get("schema") != SCHEMA:
        pytest.fail(f"{d}/truth.json has schema {raw.get('schema')!r}, these tests read {SCHEMA}: "
                    f"rebuild with python tools/real_guest.py --rebuild")
    truth = _ints(raw)
    for page_maps in [*truth["processes"], *truth["cpus"]]:
        for key in ("gva2gpa", "pagemap"):
            if key in page_maps:
                page_maps[key] = {int(va, 16): a for va, a in page_maps[key].items()}
    return RealGuest(d, truth)


@pytest.fixture(scope="session")
def real_guest() -> RealGuest:
    """The built real guest; skips (fails in CI) when there is none."""
    d, why = _find()
    if d is None:
        msg = f"{why}: build it with `python tools/real_guest.py` (needs qemu-system-misc, about 470 MB of packages)"
        if _in_ci():
            pytest.fail(f"CI has no real guest: {msg}")
        pytest.skip(msg)
    return _load(d)
