"""Cosine length-scaled reward (Yeo et al., arXiv 2502.03373): tables from methods-more §5c.

Run: .venv/bin/pytest tests/rewards/test_cosine.py
"""

import math
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch

C = math.cos
PI = math.pi


mk = partial(make_batch, max_length=1000)


CASES = [  # T = 1000, correct: +2 at 0 -> +1 at T; wrong: -10 at 0 -> 0 at T; exceed -10
    ("correct", {}, dict(lengths=[0, 250, 500, 983], correct=[True] * 4),
     [2.0, 1 + 0.5 * (1 + C(PI / 4)), 1.5, 1 + 0.5 * (1 + C(0.983 * PI))]),
    ("wrong: short is worst", {}, dict(lengths=[0, 250, 500, 983], correct=[False] * 4),
     [-10.0, -5 * (1 + C(PI / 4)), -5.0, -5 * (1 + C(0.983 * PI))]),
    ("exceed: t + 16 >= T, correct or not", {}, dict(lengths=[984, 1000, 984], correct=[True, True, False]),
     [-10.0, -10.0, -10.0]),
    ("all truncated -> exceed penalty", {},
     dict(lengths=[500, 1000], correct=[True, False], truncated=[True, True]), [-10.0, -10.0]),
    ("malformed is wrong", {}, dict(lengths=[500], correct=[True], format_ok=[False]), [-5.0]),
    ("configured T below the cap", dict(max_length=2000),
     dict(lengths=[1000, 1984, 1983], correct=[True, True, False], max_length=4000),
     [1.5, -10.0, -5 * (1 + C(1983 / 2000 * PI))]),
    ("no margin: t = T exceeds, t/T clipped", dict(max_length=100, exceed_margin=0),
     dict(lengths=[99, 100], correct=[True, True], max_length=200),
     [1 + 0.5 * (1 + C(0.99 * PI)), -10.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_cosine_table(case, config, batch, expected):
    assert build_reward("cosine", **config)(mk(**batch)) == pytest.approx(expected)


def test_wrong_values_must_not_be_positive():
    with pytest.raises(ValueError, match="wrong_at_zero"):
        build_reward("cosine", wrong_at_max=0.5)


def test_correct_beats_wrong_below_the_exceed_zone():
    b = mk(lengths=list(range(0, 984, 41)) * 2, correct=[True] * 24 + [False] * 24)
    out = build_reward("cosine")(b)
    assert min(out[:24]) > max(out[24:])
