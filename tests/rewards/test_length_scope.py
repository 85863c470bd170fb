"""length_scope (total | think | answer): which tokens a reward's lengths count. Hand-computed tables on LASER
and DLER, the fields a scope asks the trainer for, every reward's acceptance or refusal, and a property: a
reward scoped to the thinking scores a batch exactly as it scores the same batch cut down to its thinking.

Run: .venv/bin/pytest tests/rewards/test_length_scope.py
"""

import json
import random
from dataclasses import replace
from functools import partial

import pytest

from conciser.errors import UserError
from conciser.rewards import REWARDS, build_reward
from conciser.rewards.base import LENGTH_SCOPES, PHASE_LENGTHS

from batches import make_batch

mk = partial(make_batch, max_length=100)
# two correct completions of 14 tokens: thinking 8 + answer 6, thinking 12 + answer 2
SPLIT = dict(lengths=[14, 14], think_lengths=[8, 12], answer_lengths=[6, 2])

# the rewards whose lengths can be scoped; the others' lengths are generation caps (palu, thinkprune), cut
# positions (dot), an overlong window below the cap (soft_overlong), or there is no length (pear)
SCOPED = {"laser", "laser_d", "laser_de", "dler", "dler_da", "drpo", "hapo", "curriculum", "kimi", "cosine",
          "l1_exact", "l1_max", "shorterbetter", "grpo_lambda", "concise_r", "efficient_reasoning", "grpo_lead",
          "lc_r1"}


@pytest.mark.parametrize("name,config,scope,expected", [
    ("laser", dict(target_length=10), "total", [1.0, 1.0]),    # 14 > 10: no bonus
    ("laser", dict(target_length=10), "think", [1.5, 1.0]),    # 8 <= 10 gets the bonus, 12 does not
    ("laser", dict(target_length=10), "answer", [1.5, 1.5]),   # 6 and 2
    ("dler", dict(target_length=10), "total", [0.0, 0.0]),     # both past L_T
    ("dler", dict(target_length=10), "think", [1.0, 0.0]),
    ("dler", dict(target_length=10), "answer", [1.0, 1.0]),
])
def test_scope_changes_which_tokens_are_counted(name, config, scope, expected):
    assert build_reward(name, length_scope=scope, **config)(mk(**SPLIT)) == expected


def test_a_scope_declares_the_phase_lengths_on_top_of_the_reward_own_needs():
    assert build_reward("laser").needs() == frozenset()
    assert build_reward("laser", length_scope="think").needs() == PHASE_LENGTHS
    assert build_reward("dler", length_scope="answer").needs() == PHASE_LENGTHS
    assert build_reward("laser_de", length_scope="think").needs() == PHASE_LENGTHS | {"token_ids"}
    assert build_reward("curriculum", length_scope="think").needs() == PHASE_LENGTHS | {"texts"}


def test_a_scoped_reward_without_phase_lengths_says_how_to_get_them():
    with pytest.raises(ValueError, match="laser.*think_lengths.*needs\\(\\)"):
        build_reward("laser", length_scope="think")(mk(lengths=[3]))


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_reward_accepts_or_refuses_a_scope_when_built(name):
    assert build_reward(name, length_scope="total").length_scope == "total"
    if name in SCOPED:
        assert REWARDS[name].length_scopes == LENGTH_SCOPES
        assert build_reward(name, length_scope="think").needs() >= PHASE_LENGTHS
    else:
        assert REWARDS[name].length_scopes == ("total",)
        with pytest.raises(UserError, match=f"{name}.length_scope='think': reward '{name}' supports length_scope "
                                            f"total only"):
            build_reward(name, length_scope="think")


def test_an_unknown_scope_lists_the_valid_ones():
    with pytest.raises(UserError, match="laser.length_scope='thinking' is not one of \\['total', 'think', 'answer'\\]"):
        build_reward("laser", length_scope="thinking")


def test_the_scope_is_part_of_the_saved_config():
    hapo = build_reward("hapo", length_scope="think")
    state = json.loads(json.dumps(hapo.state_dict()))
    assert state["config"]["length_scope"] == "think"
    with pytest.raises(ValueError, match="config"):
        build_reward("hapo").load_state_dict(state)
    assert "length_scope" not in build_reward("hapo").state_dict()["config"]  # total: as before scopes existed
    build_reward("hapo", length_scope="think").load_state_dict(state)


def _batch(rng):
    n_groups, g = rng.randint(1, 4), rng.randint(1, 6)
    n = n_groups * g
    lengths = [rng.randint(1, 80) for _ in range(n)]
    think = [rng.randint(0, x) for x in lengths]
    return mk(lengths=lengths, think_lengths=think, answer_lengths=[x - t for x, t in zip(lengths, think)],
              ids=[f"p{i // g}" for i in range(n)], correct=[rng.random() < 0.6 for _ in range(n)],
              targets=[rng.randint(1, 80) for _ in range(n)],
              texts=["<think> a=1.</think>\\boxed{1}"] * n)


# cosine keeps its cap check on the whole completion, lc_r1 takes invalid thinking out of it: both differ
# from a batch cut to the thinking by design, and have their own tables
PLAIN = sorted(SCOPED - {"cosine", "lc_r1"})


@pytest.mark.parametrize("name", PLAIN)
def test_think_scope_scores_like_a_batch_cut_down_to_its_thinking(name):
    rng = random.Random(7)
    scoped, plain = build_reward(name, length_scope="think"), build_reward(name)
    for _ in range(20):
        b = _batch(rng)
        thinking_only = replace(b, lengths=b.think_lengths, answer_lengths=[0] * len(b))
        assert scoped(b) == pytest.approx(plain(thinking_only))
        scoped.observe(b)
        plain.observe(thinking_only)
