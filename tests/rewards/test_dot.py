"""DOT (arXiv 2601.03969, code U-rara/DOT): tables from methods-more §3 (alpha = 3, m = 32).

Run: .venv/bin/pytest tests/rewards/test_dot.py
"""

import math
import statistics
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=8000)


def test_reward_is_binary_and_truncation_is_no_answer():
    b = mk(lengths=[10, 8000, 10, 10], correct=[True, True, False, True],
           truncated=[False, True, False, False], format_ok=[True, True, True, False])
    assert build_reward("dot")(b) == [1.0, 0.0, 0.0, 0.0]


def test_default_cut_of_an_outlier_in_an_all_correct_group():
    lengths = [100] * 20 + [1000]
    cutoff = math.floor(statistics.mean(lengths) + 3 * statistics.stdev(lengths))  # 732
    assert cutoff == 732
    assert build_reward("dot").cut_lengths(mk(lengths=lengths)) == [None] * 20 + [732]


@pytest.mark.parametrize("case,config,batch,expected", [
    ("alpha 1: floor(280 + 402.49) = 682", dict(alpha=1.0),
     dict(lengths=[100, 100, 100, 100, 1000]), [None] * 4 + [682]),
    ("default alpha 3 spares a small group", {}, dict(lengths=[100, 100, 100, 100, 1000]), [None] * 5),
    ("margin exactly 32 cuts", dict(alpha=0.0), dict(lengths=[0, 64]), [None, 32]),
    ("margin 31 does not", dict(alpha=0.0), dict(lengths=[0, 62]), [None, None]),
    ("not all correct: untouched", dict(alpha=0.0),
     dict(lengths=[0, 64], correct=[True, False]), [None, None]),
    ("success_threshold 0.5 admits it", dict(alpha=0.0, success_threshold=0.5),
     dict(lengths=[0, 64], correct=[True, False]), [None, 32]),
    ("single response: std 0, nothing to cut", dict(alpha=0.0), dict(lengths=[500]), [None]),
    ("fractional margin: max(16, 0.5 L)", dict(alpha=0.0, margin=0.5),
     dict(lengths=[0, 100, 0, 20], ids=["a", "a", "b", "b"]), [None, 50, None, None]),
    ("all truncated: not all correct", dict(alpha=0.0),
     dict(lengths=[0, 8000], truncated=[True, True]), [None, None]),
    ("ties: identical lengths are never cut", {}, dict(lengths=[300] * 4), [None] * 4),
    ("several groups independently", dict(alpha=0.0),
     dict(lengths=[0, 64, 10, 11], ids=["a", "a", "b", "b"]), [None, 32, None, None]),
])
def test_cut_lengths(case, config, batch, expected):
    assert build_reward("dot", **config).cut_lengths(mk(**batch)) == expected
