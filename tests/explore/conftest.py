"""Shared by the explorer's tests: the searches several tests read, run once per session."""

import pytest

from pgalloc.explore import Setup, explore

collect_ignore = ["fixtures"]       # version files that tests load, not test modules

# CI bound: every version's generated search at --max-ops 2 takes seconds; the
# --max-ops 5 figures are in docs/explorer.md (Scale), measured with tools/bench_explore.py;
# the fixed versions and the seed also run at --max-ops 3 (5 to 30 s each).
CI_OPS = 2


@pytest.fixture(scope="session")
def results():
    """``results(version, ops=CI_OPS, **setup)``: that generated search, run once."""
    cache = {}

    def get(version, ops=CI_OPS, **kw):
        key = (version, ops, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = explore(Setup(version=version, max_ops=ops, **kw), workers=2)
        return cache[key]
    return get
