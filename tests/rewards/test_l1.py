"""L1 / LCPO (arXiv 2503.04697): tables from methods-more §6.

Run: .venv/bin/pytest tests/rewards/test_l1.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=8000)


EXACT = [  # alpha = 0.0003
    ("at the budget", dict(lengths=[1000], correct=[True], targets=[1000]), [1.0]),
    ("under and over pay the same", dict(lengths=[0, 2000], correct=[True, True], targets=[1000] * 2),
     [0.7, 0.7]),
    ("wrong answers pay the deviation too", dict(lengths=[2000, 1000], correct=[False, False],
                                                 targets=[1000] * 2), [-0.3, 0.0]),
    ("unclipped below -1", dict(lengths=[5000], correct=[True], targets=[100]), [1 - 0.0003 * 4900]),
    ("format error counts as wrong", dict(lengths=[1000], correct=[True], targets=[1000],
                                          format_ok=[False]), [0.0]),
    ("per-completion budgets", dict(lengths=[100, 100], correct=[True, True], targets=[100, 4000]),
     [1.0, 1 - 0.0003 * 3900]),
]


@pytest.mark.parametrize("case,batch,expected", EXACT, ids=[c[0] for c in EXACT])
def test_l1_exact_table(case, batch, expected):
    assert build_reward("l1_exact")(mk(**batch)) == pytest.approx(expected)


MAX = [  # code: clip(0.5 + (alpha / 2) (n_gold - n_y), 0, 1), alpha = 0.01 -> slope 0.005
    ("code slope", {}, dict(lengths=[1000, 900, 950, 1050, 1100, 0, 1200], correct=[True] * 7,
                            targets=[1000] * 7), [0.5, 1.0, 0.75, 0.25, 0.0, 1.0, 0.0]),
    ("paper slope = alpha", dict(slope="paper"),
     dict(lengths=[950, 1025, 1050], correct=[True] * 3, targets=[1000] * 3), [1.0, 0.25, 0.0]),
    ("paper alpha 0.0003", dict(slope="paper", alpha=0.0003),
     dict(lengths=[0, 2000], correct=[True] * 2, targets=[1000] * 2), [0.8, 0.2]),
    ("wrong gets 0", {}, dict(lengths=[900, 100], correct=[False, False], targets=[1000] * 2),
     [0.0, 0.0]),
    ("malformed gets 0", {}, dict(lengths=[900], correct=[True], targets=[1000], format_ok=[False]),
     [0.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", MAX, ids=[c[0] for c in MAX])
def test_l1_max_table(case, config, batch, expected):
    assert build_reward("l1_max", **config)(mk(**batch)) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["l1_exact", "l1_max"])
def test_needs_target_lengths(name):
    b = make_batch([1], max_length=10)
    with pytest.raises(ValueError, match="needs RolloutBatch.target_lengths"):
        build_reward(name)(b)


def test_l1_max_correct_never_below_wrong():
    b = mk(lengths=[10, 3000, 10, 3000], correct=[True, True, False, False], targets=[500] * 4)
    out = build_reward("l1_max")(b)
    assert min(out[:2]) >= max(out[2:])
