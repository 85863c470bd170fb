"""ConciseR / L-GRPO (arXiv 2505.21178): tables from methods-more §4 (beta = 1 assumed).

Run: .venv/bin/pytest tests/rewards/test_concise_r.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=1000)


CASES = [
    ("all correct: 1 + beta (L_max - L) / L_max", {},
     dict(lengths=[100, 500, 1000], correct=[True] * 3), [1.9, 1.5, 1.0]),
    ("mixed group: plain 0/1", {}, dict(lengths=[100, 500], correct=[True, False]), [1.0, 0.0]),
    ("all wrong", {}, dict(lengths=[100, 500], correct=[False, False]), [0.0, 0.0]),
    ("a malformed member breaks the all-correct gate", {},
     dict(lengths=[100, 500], correct=[True, True], format_ok=[True, False]), [1.0, 0.0]),
    ("single-sample correct group", {}, dict(lengths=[250], correct=[True]), [1.75]),
    ("several groups", dict(beta=0.5),
     dict(lengths=[0, 1000, 0, 1000], correct=[True, True, True, False], ids=["a", "a", "b", "b"]),
     [1.5, 1.0, 1.0, 0.0]),
    ("configured L_max", dict(max_length=500),
     dict(lengths=[250, 500], correct=[True, True]), [1.5, 1.0]),
    ("all truncated (graded wrong)", {},
     dict(lengths=[1000, 1000], correct=[False, False], truncated=[True, True]), [0.0, 0.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_concise_r_table(case, config, batch, expected):
    assert build_reward("concise_r", **config)(mk(**batch)) == pytest.approx(expected)
