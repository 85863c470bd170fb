"""HAPO (arXiv 2505.11225, authors' code): hand-computed tables from methods-core §4.1-4.2.

Run: .venv/bin/pytest tests/rewards/test_hapo.py
"""

import json
import math
import random
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=1000)


def with_history(h=100, **config):
    """A HAPO reward whose problem "q" has history h (one correct answer of length h seen)."""
    r = build_reward("hapo", **config)
    r.observe(mk(lengths=[h, 900], correct=[True, False]))
    assert r.history_of("q") == h
    return r


def test_empty_history_is_pure_correctness():
    r = build_reward("hapo")
    assert r.history_of("q") is None
    assert r(mk(lengths=[10, 999, 5], correct=[True, True, False])) == [1.0, 1.0, 0.0]


C = math.cos
PI = math.pi
COSINE = [  # h = 100, w = 1, floor 0.7
    (0, True, 2.0), (50, True, 1 + C(PI / 4)), (100, True, 1.0), (150, True, 0.3),
    (200, True, 0.3), (199, True, 0.3), (50, False, 0.0), (150, False, C(3 * PI / 4)),
    (199, False, C(PI / 2 * 1.99)), (200, False, -1.0), (300, False, -1.0),
]


@pytest.mark.parametrize("length,correct,expected", COSINE)
def test_cosine_table(length, correct, expected):
    assert with_history()(mk(lengths=[length], correct=[correct]))[0] == pytest.approx(expected)


LINEAR = [  # h = 100, tolerance 0.1 -> edge 110, floor 0.7
    (0, True, 2.0), (50, True, 1.5), (100, True, 1.0), (109, True, 1.0), (110, True, 1.0),
    (150, True, 0.6), (500, True, 0.3), (50, False, 0.0), (109, False, 0.0), (150, False, -0.4),
    (500, False, -1.0),
]


@pytest.mark.parametrize("length,correct,expected", LINEAR)
def test_linear_table(length, correct, expected):
    r = with_history(length_reward="linear")
    assert r(mk(lengths=[length], correct=[correct]))[0] == pytest.approx(expected)


def test_weight_scales_the_length_term():
    r = with_history(weight=0.5)
    assert r(mk(lengths=[50, 300], correct=[True, False])) == pytest.approx(
        [1 + 0.5 * C(PI / 4), -0.5])


def test_min_history_updates_after_scoring_and_only_with_correct_answers():
    r = build_reward("hapo")
    b1 = mk(lengths=[100, 200, 50], correct=[True, True, False])
    assert r(b1) == [1.0, 1.0, 0.0]   # a group never sees its own lengths
    r.observe(b1)
    assert r.history_of("q") == 100
    r.observe(mk(lengths=[10, 20], correct=[False, False]))
    assert r.history_of("q") == 100   # no correct answer -> no update
    r.observe(mk(lengths=[120, 80], correct=[True, True]))
    assert r.history_of("q") == 80
    r.observe(mk(lengths=[90], correct=[True]))
    assert r.history_of("q") == 80


def test_mean_history_is_count_weighted():
    r = build_reward("hapo", history="mean")
    r.observe(mk(lengths=[100, 200, 7], correct=[True, True, False]))
    assert r.history_of("q") == 150
    r.observe(mk(lengths=[60], correct=[True]))
    assert r.history_of("q") == pytest.approx(120)


def test_several_groups_keep_separate_histories():
    r = build_reward("hapo")
    r.observe(mk(lengths=[100, 40], correct=[True, True], ids=["a", "b"]))
    b = mk(lengths=[100, 40, 100], correct=[True, True, True], ids=["a", "b", "c"])
    assert r(b) == pytest.approx([1.0, 1.0, 1.0])       # each exactly at its h; c is null
    b = mk(lengths=[50, 80, 5], correct=[True, True, True], ids=["a", "b", "c"])
    assert r(b) == pytest.approx([1 + C(PI / 4), 1 + max(-0.7, C(PI)), 1.0])


def test_zero_history_counts_as_null():
    r = build_reward("hapo")
    r.observe(mk(lengths=[0], correct=[True]))
    assert r.history_of("q") is None
    assert r(mk(lengths=[5], correct=[True])) == [1.0]


def test_truncated_and_format_flags_do_not_change_grading():
    r = with_history()
    b = mk(lengths=[300, 50], correct=[True, True], truncated=[True, False],
           format_ok=[True, False])
    assert r(b) == pytest.approx([0.3, 1 + C(PI / 4)])


def test_state_round_trip_and_purity():
    r = with_history(history="mean")
    before = r.state_dict()
    b = mk(lengths=[50, 150], correct=[True, False])
    assert r(b) == r(b) and r.state_dict() == before
    fresh = build_reward("hapo", history="mean")
    fresh.load_state_dict(json.loads(json.dumps(before)))
    assert fresh.state_dict() == before and fresh(b) == r(b)
    with pytest.raises(ValueError, match="config"):
        build_reward("hapo").load_state_dict(before)


@pytest.mark.parametrize("config", [{}, dict(length_reward="linear"), dict(weight=0.3)])
def test_correct_always_beats_wrong_when_weight_at_most_one(config):
    rng = random.Random(3)
    r = build_reward("hapo", **config)
    for step in range(30):
        n = rng.randint(1, 6)
        b = mk(lengths=[rng.randint(0, 1000) for _ in range(n)],
               correct=[rng.random() < 0.5 for _ in range(n)], step=step)
        out = r(b)
        right = [x for x, c in zip(out, b.correct) if c]
        wrong = [x for x, c in zip(out, b.correct) if not c]
        if right and wrong:
            assert min(right) > max(wrong)
        r.observe(b)
