"""GRPO-lambda (arXiv 2505.18086): tables from methods-more §1 (lambda = 0.2, alpha = 0.6).

Run: .venv/bin/pytest tests/rewards/test_grpo_lambda.py
"""

import math
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


def sig(z):
    return 1 / (1 + math.exp(-z))


mk = partial(make_batch, max_length=8000)


def groups(*specs):
    """specs: (id, lengths, correct) -> batch kwargs."""
    ids, lengths, correct = [], [], []
    for pid, ls, cs in specs:
        ids += [pid] * len(ls)
        lengths += ls
        correct += cs
    return dict(ids=ids, lengths=lengths, correct=correct)


def test_top_group_gets_the_sigmoid_penalty():
    b = mk(**groups(("a", [1, 2, 3, 4], [True, False, False, False]),
                    ("b", [10, 20, 30, 40], [True] * 4),
                    ("c", [5, 6, 7, 8], [True, True, False, False]),
                    ("d", [9, 9, 9, 9], [False] * 4),
                    ("e", [1, 1, 1, 1], [True, True, True, False])))
    r = build_reward("grpo_lambda")
    assert r.efficiency_groups(b) == ["b"]  # ceil(0.2 * 5) = 1 group, rho = 1
    s = math.sqrt(500 / 3)  # sample std of 10, 20, 30, 40
    expected_b = [1 - 0.6 * sig((x - 25) / s) for x in (10, 20, 30, 40)]
    assert r(b) == pytest.approx([1, 0, 0, 0] + expected_b + [1, 1, 0, 0] + [0] * 4 + [1, 1, 1, 0])


def test_ties_at_the_boundary_keep_first_seen_order():
    specs = [("g1", [1, 2], [True, True]), ("g2", [1, 2], [True, False]),
             ("g3", [3, 3], [True, True]), ("g4", [5, 7], [True, True])]
    specs += [(f"z{k}", [1, 1], [False, False]) for k in range(6)]  # 10 groups -> 2 selected
    b = mk(**groups(*specs))
    r = build_reward("grpo_lambda")
    assert r.efficiency_groups(b) == ["g1", "g3"]
    out = r(b)
    s = math.sqrt(0.5)  # sample std of 1, 2
    assert out[:2] == pytest.approx([1 - 0.6 * sig(-0.5 / s), 1 - 0.6 * sig(0.5 / s)])
    assert out[4:6] == pytest.approx([0.7, 0.7])   # equal lengths: std 0 -> z = 0
    assert out[6:8] == [1.0, 1.0]                  # g4 tied at rho = 1 but not selected


def test_group_count_rounds_up_exactly():
    specs = [(f"p{k}", [1], [True]) for k in range(15)]
    assert len(build_reward("grpo_lambda").efficiency_groups(mk(**groups(*specs)))) == 3


def test_single_correct_and_wrong_inside_an_efficiency_group():
    b = mk(**groups(("a", [10, 99, 5], [True, False, False])))
    # one correct: std undefined -> eps, z = 0 -> 1 - 0.6 * 0.5; wrong -> 0
    assert build_reward("grpo_lambda")(b) == pytest.approx([0.7, 0.0, 0.0])


def test_all_wrong_and_all_truncated_give_zeros():
    b = mk(**groups(("a", [100, 100], [True, False]), ("b", [8000, 8000], [False, False])),
           truncated=[False, False, True, True])
    assert build_reward("grpo_lambda")(b) == pytest.approx([0.7, 0.0, 0.0, 0.0])


def test_threshold_variant():
    b = mk(**groups(("a", [10, 30], [True, True]), ("b", [10, 30, 50, 70], [True, True, True, False]),
                    ("c", [10, 30], [True, False])))
    r = build_reward("grpo_lambda", selection="threshold", threshold=0.75)
    assert r.efficiency_groups(b) == ["a", "b"]
    out = r(b)
    s_a, s_b = math.sqrt(200), math.sqrt(400)
    assert out == pytest.approx([1 - 0.6 * sig(-10 / s_a), 1 - 0.6 * sig(10 / s_a),
                                 1 - 0.6 * sig(-20 / s_b), 1 - 0.6 * sig(0), 1 - 0.6 * sig(20 / s_b),
                                 0.0, 1.0, 0.0])


def test_malformed_is_wrong():
    b = mk(**groups(("a", [10, 20], [True, True])), format_ok=[True, False])
    assert build_reward("grpo_lambda")(b) == pytest.approx([0.7, 0.0])


def test_correct_never_below_wrong():
    b = mk(**groups(("a", [10, 2000, 5, 7000], [True, True, False, False])))
    out = build_reward("grpo_lambda", alpha=1.0)(b)
    assert min(out[:2]) >= max(out[2:])
