"""Scenario files: what is refused, and why."""

import pytest

from pgalloc.explore.scenario import ScenarioError, parse_scenario


@pytest.mark.parametrize("text, words", [
    ('version = "v64"\n', "at least one [[cpu]]"),
    ('[[cpu]]\nops = ["frobnicate T0"]\n', "unknown operation"),
    ('[[cpu]]\nops = ["free T9"]\n', "T0..T1"),
    ('[[cpu]]\nops = ["free"]\n', "takes a table"),
    ('colour = 1\n[[cpu]]\nops = []\n', "unknown key"),
    ('[setup]\npages = 9\n[[cpu]]\nops = []\n', "pages"),
    ('[[cpu]]\nops = ["mmdrop"]\n', "lazy_refs"),
    ('[[cpu]\n', "not valid TOML"),
])
def test_bad_scenarios_are_refused_with_a_message_naming_the_problem(text, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text)
    assert words in str(e.value)
