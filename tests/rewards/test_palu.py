"""PALU (arXiv 2510.10168): tables from methods-more §2 (C = 0.8, tau = 0.5).

Run: .venv/bin/pytest tests/rewards/test_palu.py
"""

import json
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=1000)


def test_unseen_question_has_the_full_budget():
    r = build_reward("palu")
    assert r.budgets(mk(lengths=[5])) == [1000]
    b = mk(lengths=[1000, 10, 10, 10], correct=[True, False, True, True],
           truncated=[False, False, True, False])
    assert r(b) == [1.0, 0.0, 0.0, 1.0]


def test_shrink_by_quantile_gap_then_reset():
    r = build_reward("palu")
    r.observe(mk(lengths=[100, 200, 300, 400, 500]))       # R = 1: alpha = Q1 - Q.5 = 500 - 300
    assert r.budget_for("q", 1000) == 800
    assert r(mk(lengths=[800, 801])) == [1.0, 0.0]
    r.observe(mk(lengths=[100, 150, 200, 250, 300]))        # alpha = 300 - 200 = 100
    assert r.budget_for("q", 1000) == 700
    r.observe(mk(lengths=[10, 20, 30, 40, 50], correct=[True, True, True, False, False]))  # R = 0.6
    assert r.budget_for("q", 1000) == 1000


def test_pass_rate_exactly_at_c_and_over_budget_counts_as_failure():
    r = build_reward("palu")
    r.observe(mk(lengths=[100, 200, 300, 400, 50], correct=[True] * 4 + [False]))   # 4/5 = 0.8
    # correct lengths 100..400: Q.5 = 250 -> alpha = 150
    assert r.budget_for("q", 1000) == 850
    # at budget 850, a correct answer of length 900 scores 0: pass rate 4/5 still, lengths 100..400
    r.observe(mk(lengths=[100, 200, 300, 400, 900]))
    assert r.budget_for("q", 1000) == 700
    r.observe(mk(lengths=[100, 200, 800, 800, 800]))      # 2/5 within 700 -> reset
    assert r.budget_for("q", 1000) == 1000


@pytest.mark.parametrize("config,lengths,expected", [
    (dict(tau=0.1), [100, 200, 300, 400], 970),            # Q.9 = 370 -> alpha 30
    ({}, [500], 1000),                                     # one correct: alpha = 0, stalls
    (dict(min_step=10), [500], 990),
    (dict(max_step=100), [10, 20, 30, 40, 990], 900),      # alpha 960 clipped to 100
    (dict(min_budget=100), [10, 20, 30, 40, 990], 100),     # 1000 - 960 = 40 -> floor 100
    ({}, [100, 101, 101, 101, 102], 999),                  # alpha 1 (Q.5 = 101)
    ({}, [100, 101], 999),                                 # alpha 0.5: rounded down to 999
])
def test_step_options(config, lengths, expected):
    r = build_reward("palu", **config)
    r.observe(mk(lengths=lengths))
    assert r.budget_for("q", 1000) == expected


def test_several_groups_and_cap_changes():
    r = build_reward("palu")
    r.observe(mk(lengths=[100, 300, 5, 6], ids=["a", "a", "b", "b"]))
    assert (r.budget_for("a", 1000), r.budget_for("b", 1000)) == (900, 999)
    assert r.budget_for("a", 500) == 500            # a smaller cap wins
    assert build_reward("palu", max_length=600).budget_for("z", 1000) == 600


def test_all_wrong_and_all_truncated_reset():
    r = build_reward("palu")
    r.observe(mk(lengths=[100, 300]))
    r.observe(mk(lengths=[1000, 1000], truncated=[True, True]))
    assert r.budget_for("q", 1000) == 1000
    assert r.state_dict()["pass_rates"] == {"q": 0.0}


def test_state_round_trip_and_purity():
    r = build_reward("palu")
    r.observe(mk(lengths=[100, 300, 5, 6], ids=["a", "a", "b", "b"]))
    d = r.state_dict()
    b = mk(lengths=[950, 5], ids=["a", "b"])
    assert r(b) == r(b) and r.state_dict() == d
    fresh = build_reward("palu")
    fresh.load_state_dict(json.loads(json.dumps(d)))
    assert fresh.state_dict() == d and fresh(b) == r(b) == [0.0, 1.0]
