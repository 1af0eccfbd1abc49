"""Scenario files: what is refused, and why."""

import pytest

import os

from click.testing import CliRunner

from pgalloc.errors import PgallocError
from pgalloc.explore.scenario import ScenarioError, load_scenario, parse_scenario
from s390emu.cli import main


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


@pytest.mark.parametrize("make, words", [(lambda p: os.mkfifo(p), "a fifo, not a scenario file"),
                                         (lambda p: p.mkdir(), "a directory, not a scenario file")])
def test_a_scenario_path_that_is_no_regular_file_is_refused_without_waiting(tmp_path, make, words):
    # Reading a fifo would block forever: the path is refused by what it is.
    path = tmp_path / "s.toml"
    make(path)
    r = CliRunner().invoke(main, ["explore", "--scenario", str(path)])
    assert r.exit_code == 1 and words in r.output
    with pytest.raises(ScenarioError, match=words) as e:
        load_scenario(path)
    assert isinstance(e.value, PgallocError)
