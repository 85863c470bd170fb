"""Kimi k1.5 length reward (arXiv 2501.12599 §2.3.3): tables from methods-more §5a.

Run: .venv/bin/pytest tests/rewards/test_kimi.py
"""

import random
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=4000)


CASES = [
    ("single group: shortest correct +0.5, longest wrong -0.5", {},
     dict(lengths=[100, 200, 300], correct=[True, True, False]), [1.5, 1.0, -0.5]),
    ("short wrong never gains, long correct is penalised", {},
     dict(lengths=[100, 300], correct=[False, True]), [0.0, 0.5]),
    ("ties: all equal lengths -> no length reward", {},
     dict(lengths=[50, 50, 50], correct=[True, False, True]), [1.0, 0.0, 1.0]),
    ("several groups use their own min/max (not the batch's)", {},
     dict(lengths=[10, 20, 1000, 2000], correct=[True] * 4, ids=["a", "a", "b", "b"]),
     [1.5, 0.5, 1.5, 0.5]),
    ("a single-sample group gets 0", {}, dict(lengths=[7], correct=[True]), [1.0]),
    ("all wrong", {}, dict(lengths=[0, 50, 100], correct=[False] * 3), [0.0, 0.0, -0.5]),
    ("all truncated, graded wrong", {},
     dict(lengths=[4000] * 2, correct=[False] * 2, truncated=[True] * 2), [0.0, 0.0]),
    ("malformed counts as wrong", {},
     dict(lengths=[100, 300], correct=[True, True], format_ok=[False, True]), [0.0, 0.5]),
    ("weight scales the length term", dict(weight=0.4),
     dict(lengths=[100, 200, 300], correct=[True, True, False]), [1.2, 1.0, -0.2]),
    ("warm-up: no length term before warmup_steps", dict(warmup_steps=10),
     dict(lengths=[100, 300], correct=[True, True], step=9), [1.0, 1.0]),
    ("warm-up over at exactly warmup_steps", dict(warmup_steps=10),
     dict(lengths=[100, 300], correct=[True, True], step=10), [1.5, 0.5]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_kimi_table(case, config, batch, expected):
    assert build_reward("kimi", **config)(mk(**batch)) == pytest.approx(expected)


def test_correct_beats_wrong_in_a_group():
    rng = random.Random(5)
    r = build_reward("kimi")
    for _ in range(50):
        n = rng.randint(2, 8)
        b = mk(lengths=[rng.randint(0, 4000) for _ in range(n)],
               correct=[rng.random() < 0.5 for _ in range(n)])
        out = r(b)
        right = [x for x, c in zip(out, b.correct) if c]
        wrong = [x for x, c in zip(out, b.correct) if not c]
        if right and wrong:
            assert min(right) > max(wrong)
