"""Which allocator rules a real kernel's release runs (``check`` on a Linux dump)."""

from __future__ import annotations

import pytest

from pgalloc.errors import VersionError
from pgalloc.registry import rules_for_release


@pytest.mark.parametrize("release,rules", [
    ("5.10.0", "v515"), ("5.15.16", "v515"), ("5.15.17", "v64"), ("5.16.2", "v515"), ("5.16.3", "v64"),
    ("5.17.0", "v64"), ("6.1.0-50-s390x", "v64"), ("6.5.13", "v64"), ("6.6.0", "v66"), ("6.6.58-1", "v66"),
    ("6.7.0", "v67"), ("6.12.3", "v67"), ("7.0.0", "v67"),
])
def test_each_release_runs_the_rules_of_its_allocator(release, rules):
    assert rules_for_release(release)[0] == rules


def test_a_distribution_5_15_kernel_is_assumed_fixed_and_says_so():
    rules, why = rules_for_release("5.15.0-91-generic")
    assert rules == "v64" and "--rules v515" in why and "stable level" in why


def test_the_reason_names_the_release():
    assert rules_for_release("5.4.0")[1].startswith("OSRELEASE 5.4.0: before c2c224932fd0")


def test_no_release_is_a_usage_hint():
    with pytest.raises(VersionError, match="--rules"):
        rules_for_release("")
