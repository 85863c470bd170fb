"""PEAR: Phase Entropy Aware Reward (Huang, Lu & Zhang, "PEAR: Phase Entropy Aware Reward for Efficient
Reasoning", arXiv 2510.08026, ICLR 2026; code iNLP-Lab/PEAR, ``entropy.py`` on verl -- not reachable
from here, so this follows the paper as summarised in reference/methods-more.md §7e and the code's
README; re-check against ``entropy.py`` when it can be read).

What it rewards. A correct answer whose *thinking* was more uncertain than its *answer* loses reward in
proportion; no length is measured at all (the paper's point: thinking entropy tracks length, so
penalising it shortens the thinking without a length target). Per completion, with H_think and
H_answer the mean token entropy (nats, under the sampling policy, temperature included) of the
thinking and of the answer part:

    P = max(0, H_think - alpha * H_answer)
    correct (``correct and format_ok``):   r = min(1, score - P)
    wrong, an answer extracted:           r = format_score
    no answer at all:                     r = 0        (verl's gsm8k scorer, which PEAR extends)

Edge cases: no end-of-thinking tag -> everything is thinking and H_answer = 0 (the paper's k = T);
an empty part's mean entropy counts as 0. r is not clipped from below: a correct answer whose
thinking entropy exceeds 1 + alpha * H_answer scores below a wrong one, as the formula says.
Truncated completions are scored like any other.

Where this differs from the paper. The trainer splits a completion at the *last* end-of-thinking tag
and counts the tag's token in the thinking (``RolloutBatch.think_lengths``); the paper excludes the
tag token k from both phases. The entropies are the trainer's (``needs()`` asks for
``think_entropies`` / ``answer_entropies``: one extra forward pass of the policy over the
completions); the paper reads verl's old-policy entropies, the same quantity when each generation
batch feeds one optimizer step.

Config (paper default): alpha (1.0; the paper's ablation: -1, 0, 0.5, 2 are worse), score s (1.0),
format_score (0.0, the README's call). ``length_scope`` is refused: PEAR measures no length.
"""

from __future__ import annotations

from dataclasses import dataclass

from conciser.rewards._stats import mean
from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch

ENTROPIES = frozenset({"think_entropies", "answer_entropies"})


class Pear(LengthReward):
    """PEAR: correct answers lose the excess of thinking entropy over answer entropy."""

    name = "pear"

    @dataclass(frozen=True)
    class Config:
        alpha: float = 1.0
        score: float = 1.0
        format_score: float = 0.0

    def needs(self) -> frozenset[str]:
        return super().needs() | ENTROPIES

    def penalties(self, batch: RolloutBatch) -> list[float]:
        """P per completion (also for wrong ones, where it is not used)."""
        think = batch.require("think_entropies", self.name)
        answer = batch.require("answer_entropies", self.name)
        return [max(0.0, (t or 0.0) - self.config.alpha * (a or 0.0)) for t, a in zip(think, answer)]

    def reward(self, batch: RolloutBatch) -> list[float]:
        c = self.config
        return [min(1.0, c.score - p) if ok else (c.format_score if f else 0.0)
                for ok, f, p in zip(batch.correct_formatted, batch.format_ok, self.penalties(batch))]

    def metrics(self, batch: RolloutBatch) -> dict[str, float]:
        if batch.think_entropies is None:
            return {}
        penalties = [p for p, ok in zip(self.penalties(batch), batch.correct_formatted) if ok]
        out = {"think_entropy_mean": mean([t or 0.0 for t in batch.think_entropies]),
               "answer_entropy_mean": mean([a or 0.0 for a in batch.answer_entropies])}
        if penalties:
            out["penalty_mean"] = mean(penalties)
        return out
