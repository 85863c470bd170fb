"""A-DLP: r = solved - lam * L; lam <- max(0, lam + lr * (batch accuracy - A_ref)) after each batch."""

import json
from functools import partial

import pytest

from conciser.rewards import build_reward
from conciser.rewards.reference import ProblemStats, ReferenceStats

from batches import make_batch

mk = partial(make_batch, max_length=1000)


def test_table_and_controller():
    r = build_reward("a_dlp", lambda_init=0.01, lr=0.1, reference_accuracy=0.5)
    b = mk([10, 20, 30, 40], [True, True, False, True])
    assert r(b) == pytest.approx([0.9, 0.8, -0.3, 0.6])        # 1 - 0.01 L, or -0.01 L when wrong
    assert r(b) == r(b) and r.penalty == 0.01                   # reward() is pure
    r.observe(b)                                                # accuracy 0.75: lam = 0.01 + 0.1 * 0.25
    assert r.penalty == pytest.approx(0.035)
    assert r(b) == pytest.approx([0.65, 0.3, -1.05, -0.4])
    wrong = mk([10, 20], [False, False])                        # all wrong: lam = 0.035 - 0.1 * 0.5 < 0 -> 0
    r.observe(wrong)
    assert r.penalty == 0.0
    assert r(b) == [1.0, 1.0, 0.0, 1.0]                         # no penalty: correctness alone


@pytest.mark.parametrize("correct,expected", [
    ([True, True], 0.01 + 0.1 * 0.5),     # all right
    ([True, False], 0.01),                # at the reference: unchanged
    ([False, False], 0.0),                # all wrong: 0.01 - 0.05 clamps at 0
])
def test_one_update(correct, expected):
    r = build_reward("a_dlp", lambda_init=0.01, lr=0.1, reference_accuracy=0.5)
    r.observe(mk([5, 5], correct))
    assert r.penalty == pytest.approx(expected)


def test_accuracy_counts_solved_answers_only():
    r = build_reward("a_dlp", lambda_init=0.0, lr=1.0, reference_accuracy=0.0)
    r.observe(mk([5, 5, 5, 5], [True] * 4, truncated=[True, False, False, False], format_ok=[True, True, False, True]))
    assert r.penalty == 0.5
    assert r(mk([10, 10], [True, True], truncated=[True, False])) == [-5.0, -4.0]


def test_reference_accuracy_from_the_statistics():
    r = build_reward("a_dlp", lambda_init=0.0, lr=1.0, reference_stats="REF")
    assert r.reference_stats() == "REF"
    r.use_reference(ReferenceStats({"a": ProblemStats(9.0, 1.0, 4), "b": ProblemStats(9.0, 0.0, 4),
                                    "c": ProblemStats(9.0, 0.5, 4)}, "REF"))
    assert r.reference_accuracy == 0.5               # the mean over problems
    r.observe(mk([5, 5], [True, True]))
    assert r.penalty == 0.5
    assert r.metrics(mk([5, 5], [True, False])) == {"lambda": 0.5, "accuracy": 0.5, "reference_accuracy": 0.5,
                                                    "gap": 0.0}


def test_state_round_trips_exactly():
    r = build_reward("a_dlp", lambda_init=0.3, lr=0.07, reference_accuracy=0.62)
    for correct in ([True, False, True], [True, True, True], [False, False, True]):
        r.observe(mk([1, 2, 3], correct))
    state = json.loads(json.dumps(r.state_dict()))
    assert state["batches"] == 3
    fresh = build_reward("a_dlp", lambda_init=0.3, lr=0.07, reference_accuracy=0.62)
    fresh.load_state_dict(state)
    assert fresh.penalty.hex() == r.penalty.hex() and fresh.state_dict() == r.state_dict()
    with pytest.raises(ValueError, match="config"):
        build_reward("a_dlp", lambda_init=0.3, lr=0.08, reference_accuracy=0.62).load_state_dict(state)


def test_needs_a_reference_accuracy_from_one_place():
    assert build_reward("a_dlp", reference_accuracy=0.5).reference_stats() is None
    assert build_reward("a_dlp").reference_stats() == ""       # the trainer asks for a path or a number
    with pytest.raises(ValueError, match="not both"):
        build_reward("a_dlp", reference_accuracy=0.5, reference_stats="REF")
    with pytest.raises(ValueError, match="no reference statistics"):
        build_reward("a_dlp").observe(mk([1], [True]))
    for bad, message in (({"lambda_init": -1.0}, "lambda_init"), ({"lr": -0.1}, "lr="),
                         ({"reference_accuracy": 1.5}, "in \\[0, 1\\]")):
        with pytest.raises(ValueError, match=message):
            build_reward("a_dlp", **bad)
