"""Explore's text reports fit 120 columns and cut nothing (issue 15): a long step label
or violation wraps onto continuation lines indented to its column."""

import re

import pytest

from pgalloc.explore.report import WIDTH, text_report


def _unwrapped(text: str) -> str:
    """The report with every continuation line joined to the line it continues, and
    runs of spaces made one."""
    out = []
    for line in text.splitlines():
        if out and line.startswith(" " * 40) and not line.lstrip().startswith("RCU queue:"):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return re.sub(r" +", " ", "\n".join(out))


@pytest.mark.parametrize("version", ["seed", "v515"])
def test_every_line_fits_120_columns_and_every_label_appears_whole(results, version):
    r = results(version)
    text = text_report(r)
    assert WIDTH == 120 and max(len(line) for line in text.splitlines()) <= WIDTH
    whole = _unwrapped(text)
    rows = [row for f in r.violations for row in f.trace]
    assert rows
    for row in rows:
        if row.get("func"):
            assert re.sub(r" +", " ", f"{row['func']}: {row['label']}") in whole, row
        if row.get("violation"):
            assert re.sub(r" +", " ", row["violation"]) in whole, row
        if row.get("rcu"):
            assert all(entry in whole for entry in row["rcu"]), row
    for f in r.violations:
        assert re.sub(r" +", " ", f.message) in whole and f.where in whole
