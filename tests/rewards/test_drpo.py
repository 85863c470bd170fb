"""DRPO (arXiv 2510.04474): hand-computed tables from methods-core §3.2-3.3.

Run: .venv/bin/pytest tests/rewards/test_drpo.py
"""

import math
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=100)


def test_binary_reward_truncated_and_malformed_are_negative():
    b = mk(lengths=[10, 100, 10, 10], correct=[True, True, True, False],
           truncated=[False, True, False, False], format_ok=[True, True, False, True])
    assert build_reward("drpo")(b) == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("shape,expected", [
    ("linear", [1.0, 0.5, 0.0]), ("concave", [1.0, 0.75, 0.0]), ("cosine", [1.0, 0.5, 0.0]),
])
def test_length_rewards(shape, expected):
    b = mk(lengths=[0, 50, 100], correct=[True] * 3)
    assert build_reward("drpo", length_reward=shape).length_rewards(b) == pytest.approx(expected)


def test_length_reward_uses_configured_c():
    b = mk(lengths=[100], correct=[True], max_length=400)
    assert build_reward("drpo", max_length=200).length_rewards(b) == pytest.approx([0.5])


S = 1 / (1 + math.exp(-1))  # softmax of logits (9, 8): lambda = 0.1, C = 100, lengths 10 and 20


@pytest.mark.parametrize("case,config,batch,expected", [
    ("mixed group: softmax of r_l / lambda over positives", {},
     dict(lengths=[10, 20, 30], correct=[True, True, False]), [S, 1 - S, 0.0]),
    ("single correct answer gets weight 1", {},
     dict(lengths=[90, 20, 30], correct=[True, False, False]), [1.0, 0.0, 0.0]),
    ("all correct: dropped", {}, dict(lengths=[10, 20], correct=[True, True]), [0.0, 0.0]),
    ("all wrong: dropped", {}, dict(lengths=[10, 20], correct=[False, False]), [0.0, 0.0]),
    ("all truncated: all negative, dropped", {},
     dict(lengths=[100, 100], correct=[True, True], truncated=[True, True]), [0.0, 0.0]),
    ("ties share equally", {}, dict(lengths=[40, 40, 1], correct=[True, True, False]),
     [0.5, 0.5, 0.0]),
    ("lambda = None (DisCO): uniform", dict(lam=None),
     dict(lengths=[1, 50, 99, 5], correct=[True, True, True, False]), [1 / 3, 1 / 3, 1 / 3, 0.0]),
    ("several groups are independent", {},
     dict(lengths=[10, 20, 30, 10, 20, 70], correct=[True, True, False, True, False, True],
          ids=["a"] * 3 + ["b"] * 3),
     # b: positives 10 and 70 -> logits 9 and 3 -> e^6 / (1 + e^6)
     [S, 1 - S, 0.0, 1 / (1 + math.exp(-6)), 0.0, 1 / (1 + math.exp(6))]),
])
def test_positive_weights(case, config, batch, expected):
    assert build_reward("drpo", **config).positive_weights(mk(**batch)) == pytest.approx(expected)


def test_weights_sum_to_one_per_live_group_and_mask():
    b = mk(lengths=[10, 20, 30, 40, 50, 60], correct=[True, True, False, True, True, True],
           ids=["a"] * 3 + ["b"] * 3)
    r = build_reward("drpo")
    w = r.positive_weights(b)
    assert sum(w[:3]) == pytest.approx(1.0) and sum(w[3:]) == 0.0
    assert r.group_mask(b) == [True] * 3 + [False] * 3


def test_negative_weights():
    b = mk(lengths=[10, 20, 30, 5, 6], correct=[True, False, False, True, True],
           ids=["a"] * 3 + ["b"] * 2)
    s = [-0.5, -1.0, -2.0, -0.1, -0.2]
    p = 1 / (1 + math.exp(-0.1))  # softmax(-0.1, -0.2) with tau = 10
    assert build_reward("drpo").negative_weights(b, s) == pytest.approx([0.0, -p, -(1 - p), 0.0, 0.0])
    with pytest.raises(ValueError, match="scores has 2 entries"):
        build_reward("drpo").negative_weights(b, [0.0, 0.0])


def test_config_defaults_and_errors():
    c = build_reward("drpo").config
    assert (c.lam, c.tau, c.delta, c.beta, c.length_reward) == (0.1, 10.0, 1e-4, 1e3, "linear")
    for bad, match in ((dict(lam=0), "drpo.lam"), (dict(tau=0), "drpo.tau"),
                       (dict(length_reward="quad"), "drpo.length_reward")):
        with pytest.raises(ValueError, match=match):
            build_reward("drpo", **bad)
