"""Self-consistency over a problem's samples: answer clusters, majority vote, certaindex early
stopping (Dynasor, arXiv 2412.20993) and the length-filtered vote (arXiv 2502.07266).

Answers are clustered by the grader's equivalence ("1/2" and "\\frac{1}{2}" vote together), greedily
in sample order: an answer joins the first cluster whose first member it equals. Samples without an
answer do not vote. A vote is won by the largest cluster (ties: the cluster seen first), and is
correct if that cluster's first member was graded correct. `pair_verdicts` asks the grader once for
all pairs of distinct answers of all problems, so every function below clusters from one batch.

Certaindex (self-consistency form). After m answered samples in c clusters of sizes m_1..m_c,
    H = -sum_i (m_i/m) ln(m_i/m),      certaindex = 1 - H / ln(m)        (m >= 2)
1 when all answers agree, 0 when all differ. m = 1 gives 0/0; we define it as 0 (one answer has
nothing to agree with), and no answer at all as 0. A problem is sampled in rounds of K (the
samples of round r are samples rK..rK+K-1 of a full run: per-sample seeds make the early-stopped
run a prefix of the full one) and stops after the first round whose certaindex reaches tau, or
at n samples. Where we differ from the paper: it normalises the entropy of the answer
distribution by the log of the number of answers, as here, but counts every sample's answer; we
leave unanswered samples out (they neither support nor contradict an answer), and cluster by the
grader's equivalence rather than by exact string. The authors' repository (hao-ai-lab/Dynasor)
publishes only the single-trajectory Dynasor-CoT; its `item_entropy` helper counts an empty answer
as one more class and uses log base 2 without normalising.

Length-filtered vote (lfvote@k). The first k samples are sorted by token length and split into
`bins` groups of (near) equal size; each group's answer entropy is computed (no-answer samples as
one class of their own); the `keep` groups of lowest entropy vote (majority over their answered
samples). Groups of equal size, not equal width: with few samples an equal-width bin often holds
one sample, whose entropy 0 would always win. The paper groups by CoT length, keeps the groups
whose answers are most consistent and votes within them; sizes and counts are ours.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

Same = Callable[[str, str], bool]
Equivalent = Callable[[list[tuple[str, str]]], list[bool]]


def _norm(a: str | None) -> str | None:
    return a.strip() if a is not None and a.strip() else None


def pair_verdicts(groups: Sequence[Sequence[str | None]], equivalent: Equivalent) -> Same:
    """`same(a, b)` for answers of one group, from one batched `equivalent(pairs)` call (a as gold)."""
    pairs: list[tuple[str, str]] = []
    index: dict[tuple[str, str], int] = {}
    for group in groups:
        distinct = list(dict.fromkeys(a for a in map(_norm, group) if a is not None))
        for i, a in enumerate(distinct):
            for b in distinct[i + 1:]:
                if (a, b) not in index:
                    index[(a, b)] = len(pairs)
                    pairs.append((a, b))
    verdicts = equivalent(pairs) if pairs else []

    def same(a: str, b: str) -> bool:
        if a == b:
            return True
        key = (a, b) if (a, b) in index else (b, a)
        return bool(verdicts[index[key]])

    return same


def clusters(answers: Sequence[str | None], same: Same) -> list[list[int]]:
    """Indices of the answered samples, grouped greedily in sample order."""
    out: list[list[int]] = []
    for i, a in enumerate(map(_norm, answers)):
        if a is None:
            continue
        for c in out:
            if same(_norm(answers[c[0]]), a):
                c.append(i)
                break
        else:
            out.append([i])
    return out


def vote(answers: Sequence[str | None], correct: Sequence[bool], same: Same) -> bool:
    """Majority vote: is the largest cluster's answer correct (False when nothing was answered)."""
    cs = clusters(answers, same)
    if not cs:
        return False
    best = max(range(len(cs)), key=lambda i: (len(cs[i]), -i))
    return bool(correct[cs[best][0]])


def _entropy(sizes: Sequence[int]) -> float:
    m = sum(sizes)
    return -sum(c / m * math.log(c / m) for c in sizes if c)


def certaindex(answers: Sequence[str | None], same: Same) -> float:
    """1 - H/ln(m) over the m answered samples (0 when m < 2); see the module docstring."""
    sizes = [len(c) for c in clusters(answers, same)]
    m = sum(sizes)
    if m < 2:
        return 0.0
    return max(0.0, 1.0 - _entropy(sizes) / math.log(m))


def samples_needed(answers: Sequence[str | None], *, tau: float, k: int, n: int, same: Same) -> int | None:
    """Samples a problem uses under certaindex early stopping (rounds of k, at most n), or None when
    the answers so far do not decide it yet (the next round must be generated)."""
    used = 0
    while used < n:
        used = min(used + k, n)
        if len(answers) < used:
            return None
        if used == n or certaindex(answers[:used], same) >= tau:
            return used
    return n


def early_stop(groups: Sequence[Sequence[dict]], *, tau: float, k: int, n: int, same: Same) -> dict:
    """Certaindex early stopping simulated on saved samples (each group: one problem's records in
    sample order, with extracted, correct, tokens). Returns accuracy (majority over the samples used),
    samples_used and tokens_used (means per problem). Raises if a problem lacks samples it needs."""
    acc, used_n, used_tokens = [], [], []
    for g in groups:
        answers = [s.get("extracted") for s in g]
        used = samples_needed(answers, tau=tau, k=k, n=n, same=same)
        if used is None:
            raise ValueError(f"problem {g[0]['problem_id']}: certaindex needs more than its {len(g)} saved samples")
        acc.append(vote(answers[:used], [s["correct"] for s in g[:used]], same))
        used_n.append(used)
        used_tokens.append(sum(s["tokens"] for s in g[:used]))
    m = max(1, len(groups))
    return {"accuracy": sum(acc) / m, "samples_used": sum(used_n) / m, "tokens_used": sum(used_tokens) / m}


def lfvote(samples: Sequence[dict], *, bins: int, keep: int, same: Same) -> bool:
    """Length-filtered vote over `samples` (records with extracted, correct, tokens, in sample order)."""
    if not samples:
        return False
    order = sorted(range(len(samples)), key=lambda i: (samples[i]["tokens"], i))
    g = min(bins, len(samples))
    q, r = divmod(len(samples), g)
    groups, start = [], 0
    for b in range(g):
        size = q + (1 if b < r else 0)
        groups.append(order[start:start + size])
        start += size
    scored = []
    for b, idx in enumerate(groups):
        answers = [samples[i].get("extracted") for i in idx]
        sizes = [len(c) for c in clusters(answers, same)]
        if not sizes:
            continue   # nothing answered: nothing to vote with
        unanswered = len(idx) - sum(sizes)
        scored.append((_entropy(sizes + ([unanswered] if unanswered else [])), -len(idx), b))
    kept = sorted(i for *_, b in sorted(scored)[:keep] for i in groups[b])
    return vote([samples[i].get("extracted") for i in kept], [samples[i]["correct"] for i in kept], same)


def lfvote_at_k(groups: Sequence[Sequence[dict]], ks: Sequence[int], *, bins: int, keep: int, same: Same) -> dict[int, float]:
    return {k: sum(lfvote(g[:k], bins=bins, keep=keep, same=same) for g in groups) / max(1, len(groups)) for k in ks}
