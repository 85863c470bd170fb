"""AdaptThink: r = solved - A_ref + delta * 1[NoThinking], and the forced prefixes it declares."""

from functools import partial

import pytest

from conciser.rewards import build_reward
from conciser.rewards.adaptthink import is_nothinking
from conciser.rewards.reference import ProblemStats, ReferenceStats

from batches import make_batch

mk = partial(make_batch, max_length=1000)
NOTHINK, THINK = "</think>\\boxed{3}", "<think> a3:8=1.</think>\\boxed{3}"


def _reward(stats, **config):
    r = build_reward("adaptthink", **config)
    r.use_reference(ReferenceStats({pid: ProblemStats(50.0, acc, 16) for pid, acc in stats.items()}, "REF"))
    return r


@pytest.mark.parametrize("acc_ref,texts,correct,expected", [
    # A_ref 0.25: solved NoThinking 1 - 0.25 + 0.05; wrong NoThinking -0.25 + 0.05; solved thinking 0.75
    (0.25, [NOTHINK, "<think></think>\\boxed{4}", THINK], [True, False, True], [0.8, -0.2, 0.75]),
    # all right on a problem the reference always solves: only the bonus separates the modes
    (1.0, [NOTHINK, THINK, THINK], [True] * 3, [0.05, 0.0, 0.0]),
    # all wrong on a problem the reference never solves: the same
    (0.0, [NOTHINK, THINK], [False, False], [0.05, 0.0]),
    # a single correct answer among wrong ones
    (0.5, [THINK, THINK, THINK], [False, True, False], [-0.5, 0.5, -0.5]),
    # no thinking tag at all (thinking cut off, or never opened): thinking, no bonus
    (0.5, ["<think> a3:8=1. b9", "\\boxed{3}"], [False, False], [-0.5, -0.5]),
    # ties
    (0.5, [NOTHINK, NOTHINK], [True, True], [0.55, 0.55]),
])
def test_table(acc_ref, texts, correct, expected):
    r = _reward({"q": acc_ref})
    assert r(mk([10] * len(texts), correct, texts=texts)) == pytest.approx(expected)


@pytest.mark.parametrize("text,nothinking", [
    ("</think>x", True), ("  \n</think>x", True), ("<think></think>x", True), ("<think> \n </think>x", True),
    ("<think> a</think>x", False), ("Alright</think>x", False), ("x</think>", False), ("", False),
    ("<think>", False), ("</thinking>", False),
])
def test_nothinking_is_an_empty_thinking(text, nothinking):
    assert is_nothinking(text) is nothinking


def test_solved_and_delta():
    r = _reward({"q": 0.5}, delta=0.2)
    b = mk([10, 10], [True, True], truncated=[True, False], texts=[NOTHINK, THINK])
    assert r(b) == pytest.approx([-0.5 + 0.2, 0.5])


@pytest.mark.parametrize("config,group,expected", [
    ({}, 4, ["</think>", "</think>", "Alright", "Alright"]),
    ({"nothinking_ratio": 0.25}, 6, ["</think>"] * 2 + ["Alright"] * 4),   # round(1.5) = 2, as the code's round
    ({"nothinking_ratio": 0.0}, 2, ["Alright", "Alright"]),
    ({"nothinking_ratio": 1.0, "nothinking_prefix": "<think></think>"}, 2, ["<think></think>"] * 2),
    ({"thinking_prefix": None}, 4, ["</think>", "</think>", None, None]),
])
def test_completion_prefixes(config, group, expected):
    assert build_reward("adaptthink", **config).completion_prefixes(group) == expected


def test_declarations():
    r = build_reward("adaptthink", reference_stats="REF")
    assert r.needs() == {"texts"} and r.preferred_estimator == "raw" and r.reference_stats() == "REF"


@pytest.mark.parametrize("config,message", [
    ({"nothinking_prefix": "Alright"}, "must close the thinking"),
    ({"thinking_prefix": "</think>"}, "must start the thinking"),
    ({"thinking_prefix": " "}, "must start the thinking"),
    ({"nothinking_ratio": 1.5}, "in \\[0, 1\\]"),
    ({"delta": -0.1}, "delta=-0.1"),
])
def test_config_is_checked(config, message):
    with pytest.raises(ValueError, match=message):
        build_reward("adaptthink", **config)


def test_metrics():
    r = _reward({"q": 0.5})
    b = mk([4, 10, 30], [True, False, True], texts=[NOTHINK, THINK, THINK])
    assert r.metrics(b) == pytest.approx({"nothinking_frac": 1 / 3, "ref_accuracy_mean": 0.5,
                                          "nothinking_solved_frac": 1.0, "nothinking_length_mean": 4.0,
                                          "thinking_solved_frac": 0.5, "thinking_length_mean": 20.0})


def test_texts_and_reference_are_required():
    with pytest.raises(ValueError, match="needs RolloutBatch.texts"):
        _reward({"q": 0.5})(mk([10]))
    with pytest.raises(ValueError, match="no reference statistics"):
        build_reward("adaptthink")(mk([10], texts=[THINK]))
