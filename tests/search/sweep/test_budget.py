"""How many distinct architectures a space holds (``search.sweep.budget.space_size``): what
a sweep stops at when its space is exhausted."""

import math

from search.spec import load
from search.sweep import budget
from search.sweep.budget import space_size
from search.sweep.record import enumerate_draws
from tests.made_up import DIGITS_SPEC


def test_a_space_holds_its_distinct_draws_a_left_out_stage_s_values_once():
    spec = load(DIGITS_SPEC)
    assert space_size(spec) == len(list(enumerate_draws(spec))) == 640  # the grid holds 1,024


def test_a_stepped_float_is_counted_and_a_free_one_is_infinite():
    stepped = load(DIGITS_SPEC, ["train.lr={float: [0.001, 0.003], step: 0.001}"])
    assert space_size(stepped) == 640 * 3
    assert space_size(load(DIGITS_SPEC, ["train.lr={float: [0.001, 0.003]}"])) == math.inf


def test_a_part_too_large_to_walk_is_left_uncounted(monkeypatch):
    monkeypatch.setattr(budget, "WALKED", 10)  # the first stage has 2 x 2 x 4 paths
    monkeypatch.setattr(budget, "_SIZES", {})
    assert space_size(load(DIGITS_SPEC)) == math.inf
