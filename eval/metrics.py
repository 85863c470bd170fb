"""Metrics over graded samples: avg@n, unbiased pass@k, maj@k by equivalence, token stats, AES.

All functions are pure except `majority_at_k`, which asks the grader whether two answers are
mathematically equal (clustering by equivalence, not by string: "1/2" and "\\frac{1}{2}" vote
together). Conventions (reference/ecosystem.md §4, methods-more.md §9):

* accuracy (avg@n, what R1-style papers call pass@1): mean over problems of c_i / n_i.
* pass@k (Chen et al. 2021): mean over problems of 1 - C(n-c, k) / C(n, k), product form; 1 if n-c < k.
* maj@k: among the first k samples of a problem, the largest equivalence class of extracted answers
  (samples without an answer do not vote; ties go to the class seen first) is correct if its first
  member was graded correct.
* tokens: generated token ids per sample (EOS included when generated); mean, median, p90 (linear
  interpolation, numpy's default) over all / correct / incorrect samples.
* lfvote@k (arXiv 2502.07266): the majority vote of the k samples' lowest-entropy length bins (voting.py).
* length adherence (samples with a target_length): mean |L - T| / T and LongWriter's S_l (length_score).
* AES (O1-Pruner): dL = (L_base - L)/L_base, dA = (A - A_base)/A_base;
  AES = alpha*dL + beta*|dA| if dA >= 0 else alpha*dL - gamma*|dA|. Defaults alpha=1, beta=3, gamma=5.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Sequence

AES_DEFAULTS = {"alpha": 1.0, "beta": 3.0, "gamma": 5.0}
GRADER_FAILURES = ("worker_crashed", "gold_parse_error")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem with c correct out of n samples."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def token_stats(tokens: Sequence[int], prefix: str = "") -> dict:
    """{prefix}mean/median/p90 of token counts (None when there are none)."""
    suffix = f"_{prefix}" if prefix else ""
    mean = float(sum(tokens) / len(tokens)) if tokens else None
    return {
        f"mean_tokens{suffix}": _r(mean),
        f"median_tokens{suffix}": _r(percentile(tokens, 50)),
        f"p90_tokens{suffix}": _r(percentile(tokens, 90)),
    }


def aes(*, accuracy: float, tokens: float, base_accuracy: float, base_tokens: float,
        alpha: float = 1.0, beta: float = 3.0, gamma: float = 5.0) -> dict:
    """Accuracy-Efficiency Score against a baseline; returns aes, delta_length, delta_accuracy."""
    if base_tokens <= 0:
        raise ValueError("AES baseline has zero mean tokens")
    if base_accuracy <= 0:
        raise ValueError("AES baseline has zero accuracy, so the relative accuracy change is undefined")
    d_len = (base_tokens - tokens) / base_tokens
    d_acc = (accuracy - base_accuracy) / base_accuracy
    score = alpha * d_len + (beta * abs(d_acc) if d_acc >= 0 else -gamma * abs(d_acc))
    return {"aes": _r(score), "aes_delta_length": _r(d_len), "aes_delta_accuracy": _r(d_acc)}


def majority_at_k(
    groups: Sequence[Sequence[tuple[str | None, bool]]],
    ks: Sequence[int],
    equivalent: Callable[[list[tuple[str, str]]], list[bool]],
) -> dict[int, float]:
    """maj@k for each k: `groups` holds per problem the (extracted answer, correct) of its samples
    in sample order; `equivalent(pairs)` says for each (a, b) whether b is mathematically equal to a.
    One call of `equivalent` for all pairs of distinct answers of all problems (batched grading)."""
    from conciser.eval.voting import pair_verdicts, vote

    same = pair_verdicts([[a for a, _ in g] for g in groups], equivalent)
    return {k: sum(vote([a for a, _ in g[:k]], [c for _, c in g[:k]], same) for g in groups) / len(groups)
            if groups else 0.0 for k in ks}


def length_score(tokens: int, target: int) -> float:
    """LongWriter's length score S_l (arXiv 2408.07055, LongBench-Write), in [0, 100]: 100 at the
    target, falling linearly in L/T above it (0 at 4x) and in T/L below it (0 at 1/3). The paper
    states the two branches; the authors' evaluation/eval_length.py floors them at 0, as we do."""
    if tokens > target:
        return 100.0 * max(0.0, 1.0 - (tokens / target - 1.0) / 3.0)
    if tokens <= 0:
        return 0.0
    return 100.0 * max(0.0, 1.0 - (target / tokens - 1.0) / 2.0)


def _bucket(target: int, targets: set[int]) -> str:
    if len(targets) <= 8:
        return str(target)
    lo = 1 << (target.bit_length() - 1)
    return f"{lo}-{2 * lo - 1}"


def length_adherence(samples: Sequence[dict]) -> dict:
    """For samples with a `target_length`: the mean relative deviation |L - T| / T, the mean length
    score S_l, and both per target (per power-of-two bucket when there are more than 8 targets)."""
    rows = [s for s in samples if s.get("target_length")]
    if not rows:
        return {}
    targets = {int(s["target_length"]) for s in rows}

    def stats(sub: list[dict]) -> dict:
        return {"n_samples": len(sub),
                "mean_target": _r(sum(s["target_length"] for s in sub) / len(sub)),
                "mean_tokens": _r(sum(s["tokens"] for s in sub) / len(sub)),
                "accuracy": _r(sum(bool(s["correct"]) for s in sub) / len(sub)),
                "length_deviation": _r(sum(abs(s["tokens"] - s["target_length"]) / s["target_length"] for s in sub) / len(sub)),
                "length_score": _r(sum(length_score(s["tokens"], s["target_length"]) for s in sub) / len(sub))}

    by: dict[str, list[dict]] = defaultdict(list)
    for s in sorted(rows, key=lambda s: s["target_length"]):
        by[_bucket(int(s["target_length"]), targets)].append(s)
    overall = stats(rows)
    return {"length_deviation": overall["length_deviation"], "length_score": overall["length_score"],
            "length_by_target": {b: stats(sub) for b, sub in by.items()}}


def summarize(samples: Sequence[dict], *, n: int, ks: Sequence[int],
              equivalent: Callable[[list[tuple[str, str]]], list[bool]] | None = None,
              lfvote_bins: int = 4, lfvote_keep: int = 2) -> dict:
    """The flat metric block of a summary from graded sample records (see run.py for the fields).
    maj@k and lfvote@k for each k > 1 in `ks` when `equivalent` is given (one batched call)."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_problem[s["problem_id"]].append(s)
    for group in by_problem.values():
        group.sort(key=lambda s: s["sample"])
    groups = list(by_problem.values())
    n_problems = len(groups)
    per_problem_acc = [sum(s["correct"] for s in g) / len(g) for g in groups]
    accuracy = sum(per_problem_acc) / n_problems if n_problems else 0.0
    stderr = None
    if n_problems > 1:
        var = sum((a - accuracy) ** 2 for a in per_problem_acc) / (n_problems - 1)
        stderr = math.sqrt(var / n_problems)
    tokens = [s["tokens"] for s in samples]
    out: dict = {
        "n_problems": n_problems,
        "n_samples": len(samples),
        "accuracy": _r(accuracy),
        "accuracy_stderr": _r(stderr),
    }
    for k in ks:
        out[f"pass@{k}"] = _r(sum(pass_at_k(len(g), sum(s["correct"] for s in g), k) for g in groups) / n_problems) if n_problems else None
    maj_ks = [k for k in ks if k > 1]
    if maj_ks and equivalent is not None:
        from conciser.eval.voting import lfvote_at_k, pair_verdicts, vote

        same = pair_verdicts([[s.get("extracted") for s in g] for g in groups], equivalent)
        for k in maj_ks:
            out[f"maj@{k}"] = _r(sum(vote([s.get("extracted") for s in g[:k]], [s["correct"] for s in g[:k]], same)
                                     for g in groups) / n_problems)
        out.update({f"lfvote@{k}": _r(v) for k, v in
                    lfvote_at_k(groups, maj_ks, bins=lfvote_bins, keep=lfvote_keep, same=same).items()})
    out.update(token_stats(tokens))
    out.update(token_stats([s["tokens"] for s in samples if s["correct"]], "correct"))
    out.update(token_stats([s["tokens"] for s in samples if not s["correct"]], "incorrect"))
    out["max_tokens_seen"] = max(tokens) if tokens else None
    out["truncation_rate"] = _r(sum(s["finish_reason"] == "length" for s in samples) / len(samples)) if samples else None
    mean = out["mean_tokens"]
    out["accuracy_per_1k_tokens"] = _r(accuracy / (mean / 1000.0)) if mean else None
    out["no_answer_rate"] = _r(sum(s.get("extracted") is None for s in samples) / len(samples)) if samples else None
    out["grading_timeouts"] = sum(bool(s.get("timed_out")) for s in samples)
    # Grader failures, not model failures (no answer, unclosed thinking and unparsable answers are the model's).
    out["grading_errors"] = sum(s.get("grade_error") in GRADER_FAILURES for s in samples)
    out.update(length_adherence(samples))
    if any("probe_tokens" in s for s in samples):
        probe = [s.get("probe_tokens", 0) for s in samples]
        out["mean_probe_tokens"] = _r(sum(probe) / len(probe))
        out["mean_total_tokens"] = _r((sum(tokens) + sum(probe)) / len(samples))
        out["early_exit_rate"] = _r(sum(s["finish_reason"] == "early_exit" for s in samples) / len(samples))
    minimal = [s["minimal_tokens"] for s in samples if s.get("minimal_tokens") is not None]
    if minimal and len(minimal) == len(samples):
        out["mean_minimal_tokens"] = _r(sum(minimal) / len(minimal))
        out["tokens_over_minimal"] = _r(mean / out["mean_minimal_tokens"]) if mean else None
    levels = sorted({s["level"] for s in samples if s.get("level") is not None}, key=str)
    if levels and all(s.get("level") is not None for s in samples):
        by_level = {}
        for lv in levels:
            sub = [s for s in samples if s["level"] == lv]
            sub_groups = [g for g in groups if g[0]["level"] == lv]
            entry = {
                "n_problems": len(sub_groups),
                "accuracy": _r(sum(sum(s["correct"] for s in g) / len(g) for g in sub_groups) / len(sub_groups)),
                "mean_tokens": _r(sum(s["tokens"] for s in sub) / len(sub)),
                "truncation_rate": _r(sum(s["finish_reason"] == "length" for s in sub) / len(sub)),
            }
            if minimal:
                entry["mean_minimal_tokens"] = _r(sum(s["minimal_tokens"] for s in sub) / len(sub))
            by_level[str(lv)] = entry
        out["by_level"] = by_level
    return out


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)
