"""ShorterBetter (arXiv 2504.21370): tables from methods-more §7b (alpha = 2, beta = 0.001).

Run: .venv/bin/pytest tests/rewards/test_shorterbetter.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=8000)


CASES = [
    ("SOL = shortest correct; wrong answers pulled toward it",
     dict(lengths=[100, 300, 50], correct=[True, True, False]), [2.0, 1.8, -0.05]),
    ("all wrong: SOL = group mean (300)",
     dict(lengths=[100, 200, 600], correct=[False] * 3), [-0.2, -0.1, -0.3]),
    ("single correct answer", dict(lengths=[10, 1000], correct=[False, True]), [-0.99, 2.0]),
    ("ties at the shortest correct", dict(lengths=[100, 100, 400], correct=[True, True, True]),
     [2.0, 2.0, 1.7]),
    ("several groups", dict(lengths=[100, 200, 1000, 3000], correct=[True, True, False, True],
                            ids=["a", "a", "b", "b"]), [2.0, 1.9, -2.0, 2.0]),
    ("malformed counts as wrong (and is not a SOL candidate)",
     dict(lengths=[50, 100], correct=[True, True], format_ok=[False, True]), [-0.05, 2.0]),
    ("all truncated and wrong: group mean", dict(lengths=[8000, 8000], correct=[False] * 2,
                                                 truncated=[True] * 2), [0.0, 0.0]),
]


@pytest.mark.parametrize("case,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_shorterbetter_table(case, batch, expected):
    assert build_reward("shorterbetter")(mk(**batch)) == pytest.approx(expected)


def test_optimal_lengths_exposed():
    b = mk(lengths=[100, 300, 50, 7], correct=[True, True, False, False], ids=["a"] * 3 + ["b"])
    assert build_reward("shorterbetter").optimal_lengths(b) == [100.0, 100.0, 100.0, 7.0]
