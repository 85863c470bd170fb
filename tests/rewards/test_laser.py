"""LASER (arXiv 2505.15612): hand-computed tables from methods-core §1.2-1.3.

Run: .venv/bin/pytest tests/rewards/test_laser.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=16384)


# (case, config, batch kwargs, expected)
CASES = [
    ("single group, default reward mode", dict(target_length=4096),
     dict(lengths=[1000, 4096, 4097, 2000], correct=[True, True, True, False]),
     [1.5, 1.5, 1.0, -0.5]),
    ("bad format is -1 even when correct and short", dict(target_length=4096),
     dict(lengths=[100, 100], correct=[True, False], format_ok=[False, False]),
     [-1.0, -1.0]),
    ("all truncated -> -1 (format fail), no bonus", dict(target_length=100),
     dict(lengths=[200, 200, 200], correct=[True, False, True], truncated=[True] * 3,
          max_length=200),
     [-1.0, -1.0, -1.0]),
    ("all wrong: length never matters", dict(target_length=10),
     dict(lengths=[1, 10, 11, 500], correct=[False] * 4), [-0.5] * 4),
    ("all correct, several groups (groups do not matter for LASER)", dict(target_length=50),
     dict(lengths=[50, 51, 10, 60], correct=[True] * 4, ids=["a", "a", "b", "b"]),
     [1.5, 1.0, 1.5, 1.0]),
    ("single correct answer", dict(target_length=50),
     dict(lengths=[40, 30, 20], correct=[False, True, False]), [-0.5, 1.5, -0.5]),
    ("penalty mode: -alpha for correct & long", dict(target_length=50, mode="penalty"),
     dict(lengths=[50, 51, 51], correct=[True, True, False]), [1.0, 0.5, -0.5]),
    ("hybrid mode: +/- alpha", dict(target_length=50, mode="hybrid"),
     dict(lengths=[50, 51, 51], correct=[True, True, False]), [1.5, 0.5, -0.5]),
    ("custom alpha and base scores", dict(target_length=50, alpha=0.25, correct_reward=2.0,
                                          wrong_reward=0.0, format_reward=-2.0),
     dict(lengths=[10, 60, 10, 10], correct=[True, True, False, True],
          format_ok=[True, True, True, False]), [2.25, 2.0, 0.0, -2.0]),
    ("length 0 counts as short", dict(target_length=1),
     dict(lengths=[0, 1, 2], correct=[True] * 3), [1.5, 1.5, 1.0]),
]


@pytest.mark.parametrize("case,config,batch,expected", CASES, ids=[c[0] for c in CASES])
def test_laser_table(case, config, batch, expected):
    assert build_reward("laser", **config)(mk(**batch)) == pytest.approx(expected)


def test_defaults_match_paper():
    c = build_reward("laser").config
    assert (c.alpha, c.mode, c.correct_reward, c.wrong_reward, c.format_reward) == \
        (0.5, "reward", 1.0, -0.5, -1.0)


def test_correct_never_below_wrong_in_any_mode():
    batch = mk(lengths=[10, 5000, 10, 5000], correct=[True, True, False, False])
    for mode in ("reward", "penalty", "hybrid"):
        r = build_reward("laser", target_length=100, mode=mode)(batch)
        assert min(r[:2]) > max(r[2:])


def test_stateless_and_pure():
    reward = build_reward("laser")
    assert reward.stateful is False
    batch = mk(lengths=[10, 20], correct=[True, False])
    before = reward.state_dict()
    assert reward(batch) == reward(batch)
    assert reward.state_dict() == before


@pytest.mark.parametrize("config,match", [
    (dict(mode="bonus"), "laser.mode"),
    (dict(alpha=-0.5), "laser.alpha"),
    (dict(target_length=0), "laser.target_length"),
    (dict(target=4096), "unknown config key.*'target'.*target_length"),
])
def test_bad_config(config, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build_reward("laser", **config)
