"""Eval metrics against hand-computed cases: .venv/bin/pytest tests/eval/test_metrics.py"""

import math

import pytest

from conciser.eval.metrics import aes, majority_at_k, pass_at_k, percentile, summarize, token_stats


@pytest.mark.parametrize("n,c,k,expected", [
    (1, 0, 1, 0.0),
    (1, 1, 1, 1.0),
    (4, 2, 1, 0.5),                       # pass@1 = c/n
    (4, 1, 2, 1 - (3 * 2) / (4 * 3)),     # 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    (5, 2, 2, 1 - 3 / 10),                # 1 - C(3,2)/C(5,2) = 0.7
    (5, 2, 3, 1 - 1 / 10),                # 1 - C(3,3)/C(5,3) = 0.9
    (5, 2, 4, 1.0),                       # n - c = 3 < k = 4
    (16, 0, 8, 0.0),
    (16, 16, 16, 1.0),
    (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
])
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="needs at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_token_stats_and_percentile():
    # numpy's linear interpolation: p90 of 1..10 is 1 + 0.9 * 9 = 9.1
    assert percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert percentile([7], 90) == 7
    assert percentile([], 50) is None
    assert token_stats([10, 20, 30, 100]) == {"mean_tokens": 40.0, "median_tokens": 25.0, "p90_tokens": pytest.approx(79.0)}
    assert token_stats([], "correct") == {"mean_tokens_correct": None, "median_tokens_correct": None, "p90_tokens_correct": None}


@pytest.mark.parametrize("acc,tok,expected_sign", [
    (0.5, 500, 0),      # the baseline itself scores 0
    (0.5, 250, +1),     # shorter, same accuracy: alpha * 0.5
    (0.6, 500, +1),     # more accurate, same length: + beta * 0.2
    (0.4, 250, -1),     # half the tokens but -20% accuracy: 0.5 - 5 * 0.2 = -0.5
    (0.45, 250, 0),     # 0.5 - 5 * 0.1 = 0
])
def test_aes_signs(acc, tok, expected_sign):
    out = aes(accuracy=acc, tokens=tok, base_accuracy=0.5, base_tokens=500)
    assert (out["aes"] > 1e-9) - (out["aes"] < -1e-9) == expected_sign


def test_aes_values_and_constants():
    # O1-Pruner's worked example (methods-more §9a): dL = 0.432, dA = +0.05 -> 0.432 + 3 * 0.05 = 0.582
    out = aes(accuracy=0.525, tokens=568, base_accuracy=0.5, base_tokens=1000)
    assert out["aes"] == pytest.approx(0.432 + 3 * 0.05)
    assert out["aes_delta_length"] == pytest.approx(0.432)
    # accuracy loss is weighted by gamma, not beta (the published v1 tables used +3 by mistake)
    assert aes(accuracy=0.45, tokens=1000, base_accuracy=0.5, base_tokens=1000)["aes"] == pytest.approx(-0.5)
    assert aes(accuracy=0.45, tokens=1000, base_accuracy=0.5, base_tokens=1000, gamma=10)["aes"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="zero accuracy"):
        aes(accuracy=0.1, tokens=10, base_accuracy=0.0, base_tokens=10)


def _fake_equal(pairs):
    """Equivalence by numeric value of a tiny LaTeX subset (for clustering logic only)."""
    def val(s):
        s = s.replace("\\frac{1}{2}", "1/2").replace("\\dfrac{1}{2}", "1/2")
        return eval(s) if s.replace("/", "").replace(".", "").isdigit() else s  # noqa: S307
    return [val(a) == val(b) for a, b in pairs]


def test_majority_clusters_equivalent_strings():
    # "1/2", "\frac{1}{2}" and "0.5" are one answer (3 votes) and beat "7" (2 votes); string voting
    # would pick "7". The class's first member decides correctness.
    group = [("7", False), ("1/2", True), ("\\frac{1}{2}", True), ("7", False), ("0.5", True)]
    assert majority_at_k([group], [5], _fake_equal) == {5: 1.0}
    # over the first 4 samples: "7" x2 vs the half-class x2 -> tie goes to the class seen first ("7")
    assert majority_at_k([group], [4], _fake_equal) == {4: 0.0}
    # samples without an answer do not vote; a problem where nobody answered counts as wrong
    assert majority_at_k([[(None, False), (None, False), ("3", True)], [(None, False)] * 3], [3], _fake_equal) == {3: 0.5}


def test_majority_with_the_real_grader():
    from conciser.eval.scoring import equivalence

    group = [("7", False), ("\\frac{1}{2}", True), ("0.5", True), ("1/2", True), ("7", False)]
    assert majority_at_k([group], [5], equivalence("math", 5.0, None)) == {5: 1.0}


def _rec(pid, j, correct, tokens, reason="stop", extracted="1", **kw):
    return {"problem_id": pid, "sample": j, "correct": correct, "tokens": tokens, "finish_reason": reason,
            "extracted": extracted if correct or extracted else None, **kw}


def test_summarize_hand_computed():
    samples = [
        _rec("p1", 0, True, 10, level=1, minimal_tokens=5), _rec("p1", 1, False, 30, "length", None, level=1, minimal_tokens=5),
        _rec("p2", 0, True, 20, level=2, minimal_tokens=10), _rec("p2", 1, True, 40, level=2, minimal_tokens=10),
    ]
    s = summarize(samples, n=2, ks=[1, 2], equivalent=_fake_equal)
    assert s["n_problems"] == 2 and s["n_samples"] == 4
    assert s["accuracy"] == pytest.approx(0.75)                  # (1/2 + 2/2) / 2
    assert s["pass@1"] == pytest.approx(0.75)
    assert s["pass@2"] == pytest.approx(1.0)
    assert s["maj@2"] == pytest.approx(1.0)                      # p1: only "1" voted; p2: "1" x2
    assert s["mean_tokens"] == 25.0 and s["median_tokens"] == 25.0
    assert s["mean_tokens_correct"] == pytest.approx(70 / 3) and s["mean_tokens_incorrect"] == 30.0
    assert s["truncation_rate"] == 0.25 and s["no_answer_rate"] == 0.25
    assert s["accuracy_per_1k_tokens"] == pytest.approx(0.75 / 0.025)
    assert s["mean_minimal_tokens"] == 7.5 and s["tokens_over_minimal"] == pytest.approx(25 / 7.5)
    assert s["by_level"]["1"] == {"n_problems": 1, "accuracy": 0.5, "mean_tokens": 20.0, "truncation_rate": 0.5,
                                  "mean_minimal_tokens": 5.0}
    assert s["by_level"]["2"]["accuracy"] == 1.0
    assert s["accuracy_stderr"] == pytest.approx(math.sqrt(0.125 / 2))


@pytest.mark.parametrize("tokens,target,score", [
    (100, 100, 100.0),            # on target
    (200, 100, 100 * (1 - 1 / 3)),  # 2x too long: 66.7
    (400, 100, 0.0),              # 4x: 0
    (900, 100, 0.0),              # beyond: floored at 0 (the authors' eval_length.py)
    (50, 100, 50.0),              # half: 100 * (1 - (2 - 1) / 2)
    (34, 100, 100 * (1 - (100 / 34 - 1) / 2)),
    (20, 100, 0.0),               # a fifth: floored
    (0, 100, 0.0),
])
def test_length_score_is_longwriters(tokens, target, score):
    from conciser.eval.metrics import length_score

    assert length_score(tokens, target) == pytest.approx(score)


def test_length_adherence_overall_and_per_target():
    from conciser.eval.metrics import length_adherence

    rows = [{"tokens": 100, "target_length": 100, "correct": True}, {"tokens": 200, "target_length": 100, "correct": False},
            {"tokens": 25, "target_length": 50, "correct": True}]
    out = length_adherence(rows)
    assert out["length_deviation"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert out["length_score"] == pytest.approx((100 + 200 / 3 + 50) / 3, abs=1e-4)
    assert list(out["length_by_target"]) == ["50", "100"]
    assert out["length_by_target"]["100"] == {"n_samples": 2, "mean_target": 100.0, "mean_tokens": 150.0, "accuracy": 0.5,
                                              "length_deviation": 0.5, "length_score": pytest.approx(83.333333)}
    many = [{"tokens": t, "target_length": t, "correct": True} for t in range(100, 1000, 90)]   # 10 targets
    assert list(length_adherence(many)["length_by_target"]) == ["64-127", "128-255", "256-511", "512-1023"]
    assert length_adherence([{"tokens": 3, "correct": True}]) == {}
