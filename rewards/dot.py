"""DOT: dynamic outlier truncation (Wu et al., "Anti-Length Shift: Dynamic Outlier Truncation for
Training Efficient Reasoning Models", arXiv 2601.03969, ACL 2026; code U-rara/DOT @ 9e6574b).

What it does. Against "length shift" on already-solved prompts: in every group whose success rate is
>= ``success_threshold`` (1.0: all rollouts correct), responses far in the length tail are cut:

    T(q) = floor(mean(L) + alpha * std(L))      over all of the group's responses, sample std
                                                (n-1; 0 for a single response), alpha = 3
    cut response i iff L_i - T(q) >= m          m = 32 tokens; 0 < m < 1 means m * L_i tokens,
                                                at least 16

The trainer then masks the tail beyond T(q) (no gradient there), re-runs the verifier on the cut
text (which has usually lost its boxed answer) and calls ``reward`` on the re-graded batch, all
*before* dynamic sampling, so the group stops being all-correct and pushes against the long prefix.
``cut_lengths(batch)`` gives T(q) for each response to cut and None for the others.

The reward itself is plain 0/1: 1 iff correct, well formed and finished (truncated = no answer).
The code's KL-Cov loss and predictive dynamic sampling belong to the trainer, not here.

Config (code default): success_threshold (1.0), alpha (3.0), margin m (32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conciser.rewards._stats import mean, std
from conciser.rewards.base import LengthReward
from conciser.rewards.batch import RolloutBatch


class Dot(LengthReward):
    """DOT: 0/1 reward plus the per-response cut lengths for all-correct groups' outliers."""

    name = "dot"

    @dataclass(frozen=True)
    class Config:
        success_threshold: float = 1.0
        alpha: float = 3.0
        margin: float = 32.0

        def __post_init__(self) -> None:
            if not 0 < self.success_threshold <= 1:
                raise ValueError(f"dot.success_threshold={self.success_threshold} must be in (0, 1]")
            if self.alpha < 0:
                raise ValueError(f"dot.alpha={self.alpha} must be >= 0")
            if not self.margin > 0:
                raise ValueError(f"dot.margin={self.margin} must be > 0 (tokens, or a fraction "
                                 f"of the length when < 1)")

    def reward(self, batch: RolloutBatch) -> list[float]:
        return [1.0 if ok else 0.0 for ok in batch.solved]

    def cut_lengths(self, batch: RolloutBatch) -> list[int | None]:
        c = self.config
        solved = batch.solved
        out: list[int | None] = [None] * len(batch)
        for idx in batch.groups().values():
            if sum(solved[i] for i in idx) / len(idx) < c.success_threshold:
                continue
            lengths = [batch.lengths[i] for i in idx]
            cutoff = math.floor(mean(lengths) + c.alpha * std(lengths, ddof=1))
            for i in idx:
                n = batch.lengths[i]
                m = c.margin if c.margin >= 1 else max(16.0, c.margin * n)
                if n - cutoff >= m:
                    out[i] = cutoff
        return out
