"""ThinkPrune (arXiv 2504.01296): tables from methods-more §7a.

Run: .venv/bin/pytest tests/rewards/test_thinkprune.py
"""

from functools import partial

import pytest

from conciser.rewards import build_reward

from batches import make_batch


mk = partial(make_batch, max_length=8000)


def test_single_stage_default_cap_4000():
    r = build_reward("thinkprune")
    assert [r.budget_at(t) for t in (0, 10**6)] == [4000, 4000]
    b = mk(lengths=[100, 4000, 4001, 100, 100], correct=[True, True, True, False, True],
           format_ok=[True] * 4 + [False])
    assert r(b) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_truncated_means_no_answer():
    b = mk(lengths=[4000, 4000], correct=[True, False], truncated=[True, True], max_length=4000)
    assert build_reward("thinkprune")(b) == [0.0, 0.0]


def test_staged_caps():
    r = build_reward("thinkprune", stage_starts=[0, 100, 200])
    assert [r.budget_at(t) for t in (0, 99, 100, 199, 200, 10**6)] == \
        [4000, 4000, 3000, 3000, 2000, 2000]
    b = mk(lengths=[3000, 3001, 2000, 2001], correct=[True] * 4, step=150)
    assert r(b) == [1.0, 0.0, 1.0, 1.0]
    assert r(mk(lengths=[2000, 2001], correct=[True] * 2, step=200)) == [1.0, 0.0]
    assert r.budget_prompt(150) == "The output of the assistant should be within 3000 tokens."


@pytest.mark.parametrize("config,match", [
    (dict(stage_starts=[5, 100, 200]), "stage_starts"),
    (dict(stage_starts=[0, 100]), "one entry per cap"),
    (dict(caps=[]), "caps"),
])
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        build_reward("thinkprune", **config)
