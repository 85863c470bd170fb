"""O1-Pruner: R = clip(L_ref / L - 1 + lam * (solved - A_ref), -2, 4), hand-computed per row."""

from functools import partial

import pytest

from conciser.rewards import build_reward
from conciser.rewards.reference import ProblemStats, ReferenceStats

from batches import make_batch

mk = partial(make_batch, max_length=20000)


def _reward(stats, **config):
    r = build_reward("o1_pruner", **config)
    r.use_reference(ReferenceStats({pid: ProblemStats(length, acc, 16) for pid, (length, acc) in stats.items()}, "REF"))
    return r


@pytest.mark.parametrize("ref,lengths,correct,expected", [
    # L_ref 100, A_ref 0.5: solved half as long -> 2 - 1 + 2 * 0.5 = 2.0; twice as long -> 0.5 - 1 + 1 = 0.5
    ((100, 0.5), [50, 200], [True, True], [2.0, 0.5]),
    # wrong: as long -> 0 - 1.0 = -1.0; 4x as long -> 0.25 - 1 - 1 = -1.75
    ((100, 0.5), [100, 400], [False, False], [-1.0, -1.75]),
    # all wrong on a problem the reference never solves: only the length term, L_ref / L - 1
    ((100, 0.0), [50, 100, 400], [False] * 3, [1.0, 0.0, -0.75]),
    # all right on a problem the reference always solves: the same
    ((100, 1.0), [50, 100, 400], [True] * 3, [1.0, 0.0, -0.75]),
    # a single correct answer on a hard problem (A_ref 0.25) is worth 2 * 0.75 more than its wrong peers
    ((80, 0.25), [80, 80, 80], [False, True, False], [-0.5, 1.5, -0.5]),
    # ties: equal lengths and verdicts, equal rewards
    ((60, 0.5), [30, 30], [True, True], [2.0, 2.0]),
    # clipping as the code: a long wrong answer on an easy problem, 0.1 - 1 - 1.8 = -2.7 -> -2;
    # a tenfold shorter solve of a never-solved problem, 10 - 1 + 2 = 11 -> 4
    ((100, 0.9), [1000], [False], [-2.0]),
    ((100, 0.0), [10], [True], [4.0]),
])
def test_table(ref, lengths, correct, expected):
    r = _reward({"q": ref})
    assert r(mk(lengths, correct)) == pytest.approx(expected)


def test_unclipped_is_the_papers_reward():
    r = _reward({"q": (100, 0.0)}, clip_low=None, clip_high=None)
    assert r(mk([10, 1000], [True, False])) == pytest.approx([11.0, 0.1 - 1.0])


def test_lam_weighs_solving_against_the_reference():
    r = _reward({"q": (100, 0.25)}, lam=5.0)
    assert r(mk([100, 100], [True, False])) == pytest.approx([3.75, -1.25])


def test_unsolved_means_wrong_unformatted_or_truncated():
    r = _reward({"q": (100, 0.5)})
    b = mk([100, 100, 100], [True, True, True], truncated=[False, True, False], format_ok=[True, True, False])
    assert r(b) == pytest.approx([1.0, -1.0, -1.0])


def test_each_problem_against_its_own_reference():
    r = _reward({"easy": (40, 1.0), "hard": (80, 0.5)})
    b = mk([40, 40], [True, True], ids=["easy", "hard"])
    assert r(b) == pytest.approx([0.0, 2.0])  # easy: 40/40 - 1 + 2 * 0; hard: 80/40 - 1 + 2 * 0.5


def test_an_empty_completion_counts_one_token():
    assert _reward({"q": (3, 0.0)})(mk([0], [False])) == pytest.approx([2.0])


def test_metrics():
    r = _reward({"a": (100, 0.5), "b": (50, 1.0)})
    assert r.metrics(mk([50, 100], ids=["a", "b"])) == pytest.approx(
        {"ref_length_mean": 75.0, "ref_accuracy_mean": 0.75, "length_ratio_mean": 1.25})


def test_without_reference_statistics_it_says_how_to_get_them():
    with pytest.raises(ValueError, match="no reference statistics.*use_reference"):
        build_reward("o1_pruner")(mk([10]))
    with pytest.raises(ValueError, match="no samples of problem 'other'"):
        _reward({"q": (100, 0.5)})(mk([10], ids=["other"]))


def test_config_is_checked():
    with pytest.raises(ValueError, match="lam=-1"):
        build_reward("o1_pruner", lam=-1.0)
    with pytest.raises(ValueError, match="clip_low=4.0 must be below clip_high=4.0"):
        build_reward("o1_pruner", clip_low=4.0)
    assert build_reward("o1_pruner", reference_stats="REF").reference_stats() == "REF"
