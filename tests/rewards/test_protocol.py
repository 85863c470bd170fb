"""What each reward declares to the trainer (rewards/base.py's table), and the RolloutBatch fields the
trainer fills on request: a table of every registered reward's declarations, the base defaults, and the
validation of think/answer lengths and entropies."""

import pytest

from conciser.rewards import REWARDS, LengthReward, build_reward
from conciser.rewards.batch import TRAINER_FIELDS

from batches import make_batch

# name -> (needs, keep_all_correct, preferred_estimator, budget_kind, target_prompt is set)
DECLARED = {
    "laser_de": ({"token_ids"}, False, None, None, False),
    "curriculum": ({"texts"}, False, None, "step", False),
    "thinkprune": (set(), False, None, "step", False),
    "palu": (set(), False, None, "question", False),
    "concise_r": (set(), True, None, None, False),
    "drpo": (set(), False, "drpo", None, False),
    "l1_exact": (set(), False, None, None, True),
    "l1_max": (set(), False, None, None, True),
    "pear": ({"think_entropies", "answer_entropies"}, False, None, None, False),
    "lc_r1": ({"texts", "think_lengths", "answer_lengths"}, False, None, None, False),
    "grpo_lead": (set(), False, "grpo_lead", None, False),
    "o1_pruner": (set(), False, "raw", None, False),
    "adaptthink": ({"texts"}, False, "raw", None, False),
}
# rewards scored against the starting model's reference statistics (rewards/reference.py)
REFERENCE = {"o1_pruner", "adaptthink", "a_dlp"}
PREFIXES = {"adaptthink"}


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_declarations(name):
    r = build_reward(name)
    needs, keep, estimator, budget, target = DECLARED.get(name, (set(), False, None, None, False))
    assert (set(r.needs()), r.keep_all_correct, r.preferred_estimator, r.budget_kind, r.target_prompt is not None) == \
        (needs, keep, estimator, budget, target)
    assert set(r.needs()) <= set(TRAINER_FIELDS)
    assert (r.reference_stats() is not None, r.completion_prefixes(4) is not None) == (name in REFERENCE,
                                                                                      name in PREFIXES)


def test_declarations_that_follow_the_config():
    assert build_reward("laser_de", repetition_filter=False).needs() == frozenset()
    assert build_reward("curriculum", format_weight=0.0).needs() == frozenset()
    assert build_reward("laser_d", coverage_source="training").monitor_due(0) is False
    assert build_reward("laser_d").monitor_due(0) is True


def test_the_base_asks_for_nothing():
    class Mine(LengthReward):
        name = "mine"

    r = Mine.__new__(Mine)
    b = make_batch([3, 5], correct=[True, False], max_length=10)
    assert r.needs() == frozenset() and not r.keep_all_correct and r.budget_kind is None
    assert r.budget_prompt(0) is None and r.cut_lengths(b) is None and r.monitor_due(0) is False
    assert r.sampling_scores(b, [1.0, 0.5]) == [1.0, 0.5] and r.metrics(b) == {}
    assert r.reference_stats() is None and r.completion_prefixes(4) is None
    with pytest.raises(TypeError, match="declares no reference statistics"):
        r.use_reference(object())
    with pytest.raises(TypeError, match="no per-step budget"):
        r.budget_at(0)


@pytest.mark.parametrize("name,batch,expected", [
    ("laser_d", dict(lengths=[10, 30], ids=["a", "a"]), {"target_easy": 40.0, "target_medium": 40.0,
                                                         "target_hard": 40.0}),
    ("dler", dict(lengths=[10, 30]), {"target_mean": 4000.0}),
    ("palu", dict(lengths=[10, 30]), {"budget_mean": 40.0}),
    ("hapo", dict(lengths=[10, 30]), {"history_known_frac": 0.0}),
    ("kimi", dict(lengths=[10, 30]), {}),
])
def test_metrics(name, batch, expected):
    r = build_reward(name, **({"target_length": 40} if name == "laser_d" else {}))
    assert r.metrics(make_batch(max_length=40, **batch)) == expected


def test_dler_filters_on_the_unmodified_score():
    r = build_reward("dler", target_length=10)
    b = make_batch([5, 20, 8], correct=[True, True, False], truncated=[True, False, False], max_length=40)
    assert r(b) == [0.1, 0.0, 0.0]
    assert r.sampling_scores(b, r(b)) == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("fields,message", [
    (dict(think_lengths=[2, 3]), "come together"),
    (dict(think_lengths=[2, 3], answer_lengths=[1, 1]), "think_lengths\\[1\\] \\+ answer_lengths\\[1\\] = 4"),
    (dict(think_lengths=[2, 3], answer_lengths=[1, 2], think_entropies=[0.5, -1.0]), "think_entropies\\[1\\]"),
    (dict(answer_entropies=[0.5, float("nan")]), "answer_entropies\\[1\\]"),
])
def test_phase_fields_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        make_batch([3, 5], max_length=10, **fields)


def test_phase_fields_round_trip():
    b = make_batch([3, 5], max_length=10, think_lengths=[2, 5], answer_lengths=[1, 0],
                   think_entropies=[0.5, 1], answer_entropies=[0.25, None])
    assert b.think_lengths == [2, 5] and b.answer_entropies == [0.25, None] and b.think_entropies == [0.5, 1.0]


def test_a_field_read_without_being_declared_says_how_to_declare_it():
    with pytest.raises(ValueError, match="declares it in needs\\(\\)"):
        make_batch([3], max_length=10).require("texts", "mine")
