"""The explorer's recorded baseline: states and findings of every built-in version at
``--max-ops 4`` (and each finding's trace rows), as commit fa4c2bc explored them: the
search without the readers in flight (``--no-walkers``, ``Setup(walkers=False)``), which
must stay exactly what it was.

``python -m tests.explore.baseline`` rewrites ``golden/baseline.json``; the test in
``test_baseline.py`` compares a fresh search with it.  A change that alters the search
(a step renamed, a reduction weakened, a successor moved) changes a number or a row.
The search is the one fa4c2bc had: without the readers in flight (``walkers=False``,
``--no-walkers``), which came after it and are on by default.
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden") / "baseline.json"
VERSIONS = ("v515", "v64", "seed", "v66", "v67")
MAX_OPS = 4


def search(version: str, max_ops: int = MAX_OPS, workers: int = 2) -> dict:
    """States, transitions and findings (kind and trace rows) of one generated search."""
    from pgalloc.explore import Setup, explore

    r = explore(Setup(version=version, max_ops=max_ops, walkers=False), workers=workers)
    return {"states": r.states, "transitions": r.transitions, "complete": r.complete,
            "findings": [{"kind": list(f.kind), "message": f.message, "rows": f.trace} for f in r.violations]}


def main() -> None:
    out = {v: search(v) for v in VERSIONS}
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for v, d in out.items():
        print(v, d["states"], d["transitions"], len(d["findings"]))


if __name__ == "__main__":
    main()
