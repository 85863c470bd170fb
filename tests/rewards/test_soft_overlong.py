"""DAPO soft overlong punishment (arXiv 2503.14476, Eq. 13): tables from ecosystem.md §1.4 / §3.2.

Run: .venv/bin/pytest tests/rewards/test_soft_overlong.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=20480)


CASES = [  # L_max = 20480, L_cache = 4096: ramp from 16384 to 20480
    ("ramp", {}, dict(lengths=[0, 16384, 16385, 18432, 20480], correct=[True] * 5),
     [1.0, 1.0, 1 - 1 / 4096, 0.5, 0.0]),
    ("wrong answers: -1 plus the same penalty", {},
     dict(lengths=[100, 18432], correct=[False, False]), [-1.0, -1.5]),
    ("truncated at the cap, graded wrong", {},
     dict(lengths=[20480], correct=[False], truncated=[True]), [-2.0]),
    ("malformed counts as wrong", {}, dict(lengths=[100], correct=[True], format_ok=[False]), [-1.0]),
    ("configured L_max below the cap: -1 beyond it", dict(max_length=1000, cache_length=100),
     dict(lengths=[900, 950, 1000, 1500], correct=[True] * 4, max_length=2000),
     [1.0, 0.5, 0.0, 0.0]),
    ("penalty factor", dict(penalty_factor=0.5), dict(lengths=[18432], correct=[True]), [0.75]),
    ("TRL's penalty-only form", dict(correct_reward=0.0, wrong_reward=0.0),
     dict(lengths=[16384, 18432, 20480], correct=[True, False, True]), [0.0, -0.5, -1.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_soft_overlong_table(case, config, batch, expected):
    assert build_reward("soft_overlong", **config)(mk(**batch)) == pytest.approx(expected)


def test_cache_must_fit_under_the_cap():
    with pytest.raises(ValueError, match="cache_length=4096 must be below the generation cap"):
        build_reward("soft_overlong")(mk(lengths=[1], correct=[True], max_length=4096))
    with pytest.raises(ValueError, match="max_length=100 must exceed cache_length=4096"):
        build_reward("soft_overlong", max_length=100)
