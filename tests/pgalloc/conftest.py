"""Each test leaves pgalloc's registry of versions as it found it.

A version file a test loads (``load_version``) is registered under its ``NAME`` for the
rest of the process; a second run of the same test in one process (mutation testing
runs the selected tests again and again in one interpreter, docs/testing.md) would then
load the file from a new ``tmp_path`` under a name already taken, and fail.
"""

from __future__ import annotations

import pytest

from pgalloc.registry import VERSIONS


@pytest.fixture(autouse=True)
def _versions_as_found():
    before = dict(VERSIONS)
    yield
    VERSIONS.clear()
    VERSIONS.update(before)
