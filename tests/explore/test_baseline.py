"""Every built-in version explores the same states and finds the same findings, with
the same trace rows, as the recorded baseline (``baseline.py``, commit fa4c2bc).

The redesign of ``pgalloc`` moves code, not behaviour: this is the test that says so.
"""

from __future__ import annotations

import json

import pytest

from .baseline import GOLDEN, VERSIONS, search

RECORDED = json.loads(GOLDEN.read_text())


def test_the_recorded_numbers_are_the_ones_the_redesign_issue_states():
    assert {v: RECORDED[v]["states"] for v in VERSIONS} == {
        "v515": 13_718, "v64": 14_548, "seed": 107_090, "v66": 42_717, "v67": 6_927}


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_explores_the_recorded_states_and_findings_at_max_ops_4(version):
    now, then = search(version), RECORDED[version]
    assert (now["states"], now["transitions"], now["complete"]) == (then["states"], then["transitions"], then["complete"])
    assert [f["kind"] for f in now["findings"]] == [f["kind"] for f in then["findings"]]
    for a, b in zip(now["findings"], then["findings"]):
        assert a["message"] == b["message"]
        assert a["rows"] == b["rows"], f"trace of {b['kind']} changed"
