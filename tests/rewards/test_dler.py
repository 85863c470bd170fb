"""DLER / DA-DLER (arXiv 2510.15110): hand-computed tables from methods-core §2.1 and §2.6.

Run: .venv/bin/pytest tests/rewards/test_dler.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=8000)


DLER = [
    ("single group, L_T = 4000 inclusive", {},
     dict(lengths=[100, 3999, 4000, 4001, 200], correct=[True, True, True, True, False]),
     [1.0, 1.0, 1.0, 0.0, 0.0]),
    ("format failure scores 0", {},
     dict(lengths=[100, 100], correct=[True, False], format_ok=[False, False]), [0.0, 0.0]),
    ("all truncated at the cap = L_T: code multiplies by 0.1", {},
     dict(lengths=[4000] * 3, correct=[True, False, True], truncated=[True] * 3, max_length=4000),
     [0.1, 0.0, 0.1]),
    ("paper reading: stop_penalty_coef = 0", dict(stop_penalty_coef=0.0),
     dict(lengths=[4000] * 2, correct=[True, True], truncated=[True, False], max_length=4000),
     [0.0, 1.0]),
    ("cut off beyond L_T: 0 regardless", dict(target_length=100),
     dict(lengths=[200, 100], correct=[True, True], truncated=[True, True], max_length=200),
     [0.0, 0.1]),
    ("all wrong", {}, dict(lengths=[1, 2, 3], correct=[False] * 3), [0.0] * 3),
    ("all correct, several groups", dict(target_length=10),
     dict(lengths=[10, 11, 1, 50], correct=[True] * 4, ids=["a", "a", "b", "b"]),
     [1.0, 0.0, 1.0, 0.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", DLER, ids=[c[0] for c in DLER])
def test_dler_table(case, config, batch, expected):
    assert build_reward("dler", **config)(mk(**batch)) == pytest.approx(expected)


def test_sampling_scores_are_unmodified():
    b = mk(lengths=[4000, 4000, 10], correct=[True, False, True], truncated=[True, True, False],
           max_length=4000)
    r = build_reward("dler")
    assert r(b) == [0.1, 0.0, 1.0]                                 # the stop multiplier acts on the reward...
    assert r.sampling_scores(b, r(b)) == [1.0, 0.0, 1.0]           # ...not on what dynamic sampling compares


# DA-DLER, default threshold 0.5 and lengths (4000 for p < 0.5, 2000 for p >= 0.5)
DA_BATCH = dict(
    lengths=[1500, 2500, 1000, 3000,   2500, 4500, 100, 50,   2000, 2001, 10, 3000,  10, 20],
    correct=[True, True, False, False, True, False, False, False, True, True, True, True,
             False, False],
    ids=["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 2)


def test_dler_da_targets_and_rewards():
    r = build_reward("dler_da")
    b = mk(**DA_BATCH)
    # a: p = 2/4 = 0.5 -> easy side (2000); b: 1/4 -> 4000; c: 4/4 -> 2000; d: 0 -> 4000
    assert r.targets(b) == [2000] * 4 + [4000] * 4 + [2000] * 4 + [4000] * 2
    assert r(b) == [1.0, 0.0, 0.0, 0.0,  1.0, 0.0, 0.0, 0.0,  1.0, 0.0, 1.0, 0.0,  0.0, 0.0]


def test_dler_da_three_levels():
    r = build_reward("dler_da", ratio_thresholds=[0.25, 0.75], truncation_lengths=[300, 200, 100])
    b = mk(lengths=[200, 1, 1, 1, 100, 101, 150, 1, 150, 50, 1, 1],
           correct=[True, False, False, False, True, True, True, False] + [False] * 4,
           ids=["p"] * 4 + ["q"] * 4 + ["r"] * 4)
    # p: 1/4 = 0.25 -> level 1 (200); q: 3/4 -> level 2 (100); r: 0 -> level 0 (300)
    assert r.targets(b) == [200] * 4 + [100] * 4 + [300] * 4
    assert r(b) == [1.0, 0.0, 0.0, 0.0,  1.0, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0]
    b2 = mk(lengths=[200, 201, 1, 1], correct=[True, True, False, False], ids=["s"] * 4)
    assert r(b2) == [1.0, 0.0, 0.0, 0.0]  # p = 0.5 -> 200, inclusive


def test_dler_da_truncated_multiplier_and_yaml_lists():
    r = build_reward("dler_da", ratio_thresholds=[0.5], truncation_lengths=[4000, 2000])
    assert r.config.truncation_lengths == (4000, 2000)
    b = mk(lengths=[2000, 5], correct=[True, False], truncated=[True, False], max_length=2000)
    assert r(b) == pytest.approx([0.1, 0.0])


@pytest.mark.parametrize("name,config,match", [
    ("dler_da", dict(truncation_lengths=[4000]), "one more than ratio_thresholds"),
    ("dler_da", dict(ratio_thresholds=[0.6, 0.4], truncation_lengths=[1, 2, 3]), "strictly"),
    ("dler_da", dict(truncation_lengths=[4000, 0]), "truncation_lengths"),
    ("dler", dict(stop_penalty_coef=2), "stop_penalty_coef"),
    ("dler", dict(target_length=0), "target_length"),
])
def test_bad_config(name, config, match):
    with pytest.raises(ValueError, match=match):
        build_reward(name, **config)


def test_correct_never_below_wrong():
    b = mk(lengths=[10, 5000, 10, 4000], correct=[True, False, False, True])
    out = build_reward("dler")(b)
    assert out[0] >= max(out[1], out[2])
