"""Efficient reasoning (Arora & Zanette, arXiv 2502.04463): hand-computed tables of
r = 1 - alpha * sigmoid((L - mean) / (std + 1e-7)) over the group's correct answers (population std, as the
authors' reward server), 0 for wrong ones.

Run: .venv/bin/pytest tests/rewards/test_efficient_reasoning.py
"""

import math
from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch

mk = partial(make_batch, max_length=100)


def sig(x):
    return 1 / (1 + math.exp(-x))


# lengths 10, 20, 30 correct: mean 20, population std sqrt(200/3), z = -+sqrt(1.5); 10, 30: std 10, z = -+1
Z = math.sqrt(1.5)
CASES = [
    ("three correct, one wrong", {},
     dict(lengths=[10, 20, 30, 40], correct=[True, True, True, False]),
     [1 - 0.1 * sig(-Z), 0.95, 1 - 0.1 * sig(Z), 0.0]),
    ("all right", {}, dict(lengths=[10, 30]), [1 - 0.1 * sig(-1), 1 - 0.1 * sig(1)]),
    ("all wrong", {}, dict(lengths=[10, 30], correct=[False, False]), [0.0, 0.0]),
    ("single correct: z = 0, 1 - alpha / 2", {}, dict(lengths=[10, 30, 50], correct=[False, True, False]),
     [0.0, 0.95, 0.0]),
    ("ties: equal lengths, z = 0", {}, dict(lengths=[25, 25]), [0.95, 0.95]),
    ("truncated (no EOS): 0 and left out of the statistics", {},
     dict(lengths=[10, 30, 50], truncated=[False, False, True]), [1 - 0.1 * sig(-1), 1 - 0.1 * sig(1), 0.0]),
    ("format fail: 0", {}, dict(lengths=[10, 30], format_ok=[True, False]), [0.95, 0.0]),
    ("groups have their own statistics", {},
     dict(lengths=[10, 30, 100, 100], ids=["a", "a", "b", "b"]),
     [1 - 0.1 * sig(-1), 1 - 0.1 * sig(1), 0.95, 0.95]),
    ("alpha 0.4", dict(alpha=0.4), dict(lengths=[10, 30]), [1 - 0.4 * sig(-1), 1 - 0.4 * sig(1)]),
    ("alpha 0: plain correctness", dict(alpha=0.0), dict(lengths=[10, 30, 5], correct=[True, True, False]),
     [1.0, 1.0, 0.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_efficient_reasoning_table(case, config, batch, expected):
    assert build_reward("efficient_reasoning", **config)(mk(**batch)) == pytest.approx(expected, abs=1e-9)


def test_defaults_match_the_released_scripts():
    c = build_reward("efficient_reasoning").config
    assert (c.alpha, c.std_eps) == (0.1, 1e-7)


def test_length_scope_think_ranks_by_thinking_tokens():
    # totals 30, 20 but thinking 5, 15: the total scope favours the second, the think scope the first
    b = mk(lengths=[30, 20], think_lengths=[5, 15], answer_lengths=[25, 5])
    total = build_reward("efficient_reasoning")(b)
    think = build_reward("efficient_reasoning", length_scope="think")(b)
    assert total == pytest.approx([1 - 0.1 * sig(1), 1 - 0.1 * sig(-1)])
    assert think == pytest.approx([1 - 0.1 * sig(-1), 1 - 0.1 * sig(1)])
    assert build_reward("efficient_reasoning", length_scope="answer")(b) == pytest.approx(total)


@pytest.mark.parametrize("config,match", [(dict(alpha=1.0), "alpha=1.0 must be in \\[0, 1\\)"),
                                          (dict(std_eps=0.0), "std_eps")])
def test_bad_config_names_the_field(config, match):
    with pytest.raises(ValueError, match=match):
        build_reward("efficient_reasoning", **config)
