"""Self-consistency: clusters, certaindex, early stopping, length-filtered vote (hand-computed tables).

Run: .venv/bin/pytest tests/eval/test_voting.py
"""

import math

import pytest

from conciser.eval.voting import (certaindex, clusters, early_stop, lfvote, lfvote_at_k, pair_verdicts,
                                  samples_needed, vote)


def same(a, b):
    """Toy equivalence: numbers equal as floats ("0.5" == "1/2" is left out on purpose: strings)."""
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def rec(answer, correct=False, tokens=10, sample=0):
    return {"problem_id": "p", "sample": sample, "extracted": answer, "correct": correct, "tokens": tokens}


def test_clusters_are_greedy_in_sample_order_and_skip_unanswered():
    assert clusters(["1", None, "2", "1.0", " ", "2", "3"], same) == [[0, 3], [2, 5], [6]]
    assert clusters([None, ""], same) == []


@pytest.mark.parametrize("answers,expected", [
    (["1", "1", "1", "1"], 1.0),                                  # all agree
    (["1", "2", "3", "4"], 0.0),                                  # all differ: H = ln 4
    (["1", "1", "1", "2"], 1 - (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / math.log(4)),   # 0.594
    (["1", "1", "2", "2"], 0.5),                                  # H = ln 2, / ln 4
    (["1", "1", None, None], 1.0),                                # unanswered samples do not count: m = 2
    (["1", None, None, None], 0.0),                               # m = 1: defined as 0
    ([None, None], 0.0),                                          # nothing answered: 0
    (["1", "1.0"], 1.0),                                          # clustered by equivalence, not by string
])
def test_certaindex(answers, expected):
    assert certaindex(answers, same) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("answers,tau,k,n,expected", [
    (["1", "1", "1", "1", "2", "2", "2", "2"], 1.0, 4, 8, 4),     # unanimous first round
    (["1", "1", "1", "2", "1", "1", "1", "1"], 0.7, 4, 8, 8),     # 0.594 < 0.7; then 7 vs 1: 0.819 >= 0.7
    (["1", "1", "1", "2", "1", "1", "1", "1"], 0.5, 4, 8, 4),     # 0.594 >= 0.5
    (["1", "1", "1", "2"], 0.9, 4, 8, None),                      # undecided: the next round is needed
    (["1", "2", "3", "4", "5", "6"], 0.9, 4, 6, 6),               # n not a multiple of k: last round of 2
    (["1", "2"], 0.9, 4, 2, 2),                                   # k > remaining: stops at n
    ([None] * 8, 0.1, 4, 8, 8),                                   # never certain: all n
])
def test_samples_needed(answers, tau, k, n, expected):
    assert samples_needed(answers, tau=tau, k=k, n=n, same=same) == expected


def test_vote_ties_go_to_the_first_cluster():
    assert vote(["1", "2", "2", "1"], [True, False, False, True], same) is True
    assert vote(["2", "1", "1"], [False, True, True], same) is True
    assert vote([None, None], [False, False], same) is False


def test_early_stop_simulation_on_saved_samples():
    groups = [
        [rec("1", True, 10, i) for i in range(4)] + [rec("2", False, 30, i) for i in range(4, 8)],   # stops at 4
        [rec(a, a == "7", 20, i) for i, a in enumerate(["7", "3", "7", "5", "7", "7", "7", "7"])],  # needs all 8
    ]
    out = early_stop(groups, tau=0.9, k=4, n=8, same=same)
    assert out == {"accuracy": 1.0, "samples_used": 6.0, "tokens_used": (40 + 160) / 2}
    with pytest.raises(ValueError, match="needs more than its 4 saved samples"):
        early_stop([groups[1][:4]], tau=0.9, k=4, n=8, same=same)


def test_lfvote_keeps_the_consistent_length_bins():
    # By length: 5 5 | 5 9 | 9 9 | 9 8. maj@8 picks "9" (4 votes to 3); the bins of entropy 0 are
    # {5, 5} and {9, 9}, a tie the first-seen cluster ("5", correct) wins.
    answers = ["5", "5", "5", "9", "9", "9", "9", "8"]
    samples = [rec(a, a == "5", 10 + i, i) for i, a in enumerate(answers)]
    assert vote(answers, [a == "5" for a in answers], same) is False
    assert lfvote(samples, bins=4, keep=2, same=same) is True
    # when the long samples agree more, they win
    flipped = [rec(a, a == "5", t, i) for i, (a, t) in enumerate(
        [("5", 10), ("6", 11), ("7", 12), ("5", 13), ("9", 50), ("9", 51), ("9", 52), ("9", 53)])]
    assert lfvote(flipped, bins=4, keep=2, same=same) is False
    # bins with nothing answered never vote; no answer at all -> wrong
    assert lfvote([rec(None, False, 5, 0), rec("5", True, 50, 1)], bins=2, keep=1, same=same) is True
    assert lfvote([rec(None, False, 5, 0)], bins=2, keep=1, same=same) is False
    assert lfvote_at_k([samples, flipped], [8], bins=4, keep=2, same=same) == {8: 0.5}


def test_pair_verdicts_batches_one_call():
    calls = []

    def equivalent(pairs):
        calls.append(list(pairs))
        return [same(a, b) for a, b in pairs]

    s = pair_verdicts([["1", "1.0", "2"], ["3", None, "3"]], equivalent)
    assert len(calls) == 1 and sorted(calls[0]) == [("1", "1.0"), ("1", "2"), ("1.0", "2")]
    assert s("1.0", "1") and not s("2", "1") and s("3", "3")
